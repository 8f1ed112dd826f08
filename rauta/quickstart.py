"""``rauta quickstart``: demo backends plus ``rauta serve`` on an embedded example.

Role: the README's first command. It renders ``rauta/examples/quickstart.yaml`` into a
directory the user can edit (the file source reloads it), starts one echo backend per
endpoint on loopback, runs the same ``serve`` as ``rauta serve``, and prints curl lines.

Rules:
- Loopback only: the listener and admin server on 127.0.0.1, backends on 127.0.0.x.
- The listener port defaults to 8080 and falls back to a free port when 8080 is taken.
- Runs until Ctrl-C/SIGTERM, then drains and exits 0.
- A directory that cannot be created or written is one line (``StartupError``), as is a
  taken admin port; ``--render-only`` writes the example and exits (for ``translate``).
"""

from __future__ import annotations

import socket
import tempfile
from importlib import resources
from pathlib import Path

from rauta import runloop
from rauta.echo import EchoBackend
from rauta.scenario import Placeholders, free_port
from rauta.serve import StartupError, serve
from rauta.settings import ProxySettings


def _port_or_free(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def render(directory: Path, listener_port: int, admin_port: int) -> Placeholders:
    ph = Placeholders()
    ph.ports["listener"] = listener_port
    ph.ports["admin"] = admin_port
    text = resources.files("rauta.examples").joinpath("quickstart.yaml").read_text()
    (directory / "quickstart.yaml").write_text(ph.expand(text))
    return ph


def curl_lines(port: int, admin: int) -> list[str]:
    base = f"curl -s -H 'Host: shop.example.com' http://127.0.0.1:{port}"
    return [
        f"{base}/                      # web (two endpoints, Maglev by flow)",
        f"{base}/api/items             # api-v1 90% / api-v2 10%",
        f"{base}/api/items -H 'x-canary: yes'   # always api-v2",
        f"{base}/old/page -i           # 301 to /new/page",
        f"curl -s -H 'Host: other.example.com' http://127.0.0.1:{port}/ -i   # 404",
        f"curl -s http://127.0.0.1:{admin}/config     # applied config",
        f"curl -s http://127.0.0.1:{admin}/status     # Gateway API statuses",
        f"curl -s http://127.0.0.1:{admin}/metrics | grep ^rauta_",
    ]


def prepare_dir(directory: Path | None) -> Path:
    """The directory for the example config, created (a temp dir when None)."""
    try:
        if directory is None:
            return Path(tempfile.mkdtemp(prefix="rauta-quickstart-"))
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".rauta-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise StartupError(f"cannot use --dir {directory}: {exc.strerror or exc}") from None
    return directory


def write_example(directory: Path, listener_port: int = 8080, admin_port: int = 9901) -> str:
    """Render the example into ``directory``; the path of the rendered file."""
    render(directory, listener_port, admin_port)
    return str(directory / "quickstart.yaml")


async def quickstart(directory: Path | None = None, listener_port: int = 8080,
                     admin_port: int = 9901) -> int:
    workdir = prepare_dir(directory)
    port, admin = _port_or_free(listener_port), _port_or_free(admin_port)
    ph = render(workdir, port, admin)
    backends = [EchoBackend(name, addr, ph.port("backends")) for name, addr in ph.addrs.items()]
    for b in backends:
        await b.start()
    print(f"rauta quickstart: config in {workdir}/quickstart.yaml (edit it: rauta reloads)")
    print(f"demo backends: {', '.join(f'{b.name}@{b.host}:{b.port}' for b in backends)}")
    print("try:")
    for line in curl_lines(port, admin):
        print("  " + line)
    print("Ctrl-C to stop.", flush=True)
    try:
        return await serve([str(workdir)], admin=f"127.0.0.1:{admin}",
                           settings=ProxySettings(drain=2.0))
    finally:
        for b in backends:
            await b.stop()


def main() -> int:
    return runloop.run(quickstart())
