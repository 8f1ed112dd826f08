"""rauta is never less strict than nginx: the same corpus through ``rauta serve`` and
through nginx (Debian's nginx-light, ``/usr/sbin/nginx``) on an equivalent config.

The config on both sides: Host ``h.test`` + ``/public`` (element-wise prefix: nginx
``location = /public`` and ``location /public/``) -> backend A; Host ``other.test`` -> B;
everything else 404 (nginx: a ``default_server`` that returns 404). nginx speaks HTTP/1.1
to pooled upstream keep-alive connections, like rauta. Each side has its own pair of h11
recording backends (``tests/e2e/hostile.py``).

The corpus: every family's base cases plus a fixed-seed sample of mutations. Per case, the
number of requests each backend received (as h11 parses it) on each side. For every case:
``rauta_forwarded <= nginx_forwarded`` and, when both forwarded, the same set of backends.
A summary line per family (cases, rauta stricter, same, less strict) is printed and
written as JSON under the pytest tmp dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import hostile as hz

REPO = str(Path(__file__).resolve().parents[2])
NGINX = "/usr/sbin/nginx"
SEED, MUTATIONS = 20261202, 250

pytestmark = pytest.mark.timeout(900)


def nginx_conf(d: Path, listen: int, a_port: int, b_port: int) -> str:
    temps = "\n".join(f"    {k}_temp_path {d}/{k};" for k in
                      ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
{temps}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    upstream a {{ server 127.0.0.1:{a_port}; keepalive 16; }}
    upstream b {{ server 127.0.0.1:{b_port}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{listen} default_server;
        server_name _;
        return 404;
    }}
    server {{
        listen 127.0.0.1:{listen};
        server_name h.test;
        location = /public {{ proxy_pass http://a; }}
        location /public/ {{ proxy_pass http://a; }}
        location / {{ return 404; }}
    }}
    server {{
        listen 127.0.0.1:{listen};
        server_name other.test;
        location / {{ proxy_pass http://b; }}
    }}
}}
"""


class Nginx:
    def __init__(self, d: Path, a_port: int, b_port: int) -> None:
        self.dir = d
        self.port = hz.free_port()
        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
            (d / k).mkdir(exist_ok=True)
        (d / "nginx.conf").write_text(nginx_conf(d, self.port, a_port, b_port))
        self.log = open(d / "nginx.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(d), "-c", str(d / "nginx.conf"), "-e", "stderr"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=hz._die_with_parent)  # noqa: PLW1509
        probe = b"GET /ready HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {(d / 'nginx.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                data, _ = hz.exchange(self.port, probe, quiet=0.5, limit=2)
                if b"X-Backend: B" in data:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"nginx not ready: {(d / 'nginx.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    if not os.access(NGINX, os.X_OK):
        print(f"\nskipping: {NGINX} is not installed (make system installs nginx-light)")
        pytest.skip(f"{NGINX} is not installed")
    ra, rb = hz.RecordingBackend("A").start(), hz.RecordingBackend("B").start()
    na, nb = hz.RecordingBackend("A").start(), hz.RecordingBackend("B").start()
    rauta = nginx = None
    try:
        rauta = hz.RautaServe(REPO, str(tmp_path_factory.mktemp("rauta")), ra.port,
                              rb.port).start()
        nginx = Nginx(tmp_path_factory.mktemp("nginx"), na.port, nb.port)
        yield {"rauta": (rauta.port, [ra, rb]), "nginx": (nginx.port, [na, nb])}
    finally:
        if rauta is not None:
            rauta.stop()
        if nginx is not None:
            nginx.stop()
        for b in (ra, rb, na, nb):
            b.stop()


def test_rauta_never_less_strict_than_nginx(sides: dict, tmp_path: Path) -> None:
    corpus = hz.sample(SEED, MUTATIONS)
    families: dict[str, dict[str, int]] = {}
    cases: list[dict] = []
    less: list[str] = []
    for m in corpus:
        raw = m.raw
        res = {side: hz.run_case(port, raw, backends) for side, (port, backends) in sides.items()}
        r, n = res["rauta"], res["nginx"]
        verdict = ("less strict" if r.forwarded > n.forwarded
                   or (r.forwarded and n.forwarded and r.backends != n.backends)
                   else "stricter" if r.forwarded < n.forwarded else "same")
        fam = families.setdefault(m.family, {"cases": 0, "stricter": 0, "same": 0,
                                             "less strict": 0})
        fam["cases"] += 1
        fam[verdict] += 1
        row = {"family": m.family, "case": m.name, "point": m.base.point, "verdict": verdict,
               "raw": raw.decode("latin-1"),
               "rauta": {"forwarded": r.forwarded, "backends": sorted(r.backends),
                         "statuses": r.statuses, "closed": r.closed},
               "nginx": {"forwarded": n.forwarded, "backends": sorted(n.backends),
                         "statuses": n.statuses, "closed": n.closed}}
        cases.append(row)
        if verdict == "less strict":
            less.append(f"{m.family}:{m.name} (point {m.base.point or '-'}): rauta forwarded "
                        f"{r.forwarded} to {sorted(r.backends)} (statuses {r.statuses}), nginx "
                        f"{n.forwarded} to {sorted(n.backends)} (statuses {n.statuses}); "
                        f"request {raw[:300]!r}")
    out = tmp_path / "nginx_strictness.json"
    out.write_text(json.dumps({"seed": SEED, "mutations": MUTATIONS, "families": families,
                               "cases": cases}, indent=1))
    print()
    for fam, c in families.items():
        print(f"[nginx-strictness] {fam}: cases {c['cases']}, rauta stricter {c['stricter']}, "
              f"same {c['same']}, less strict {c['less strict']}")
    print(f"[nginx-strictness] details: {out}")
    assert not less, f"{len(less)} cases where rauta is less strict than nginx:\n" + \
        "\n".join(less)
