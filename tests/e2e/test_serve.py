"""``python -m rauta.cli serve`` as a real process: readiness, live file edits, an invalid
edit, and a graceful SIGTERM with a request in flight.

Backends are echo servers on 127.0.0.2-4 in the test's own event loop; rauta listens on
127.0.0.1. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml

from rauta.echo import EchoBackend
from rauta.scenario import free_port

REPO = Path(__file__).resolve().parents[2]
BACKENDS = {"v1": "127.0.0.2", "v2": "127.0.0.3", "slow": "127.0.0.4"}
SLOW_MS = 1500
GRACE = 5.0


def write(path: Path, *objs: Any) -> None:
    """Replace ``path`` atomically (the watcher never sees a half-written file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump_all(objs, sort_keys=False))
    os.replace(tmp, path)


def route(default_svc: str, drop_name: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": default_svc, "port": 80}
    if drop_name:
        del ref["name"]
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "gw"}],
                     "rules": [
                         {"matches": [{"path": {"type": "PathPrefix", "value": "/slow"}}],
                          "backendRefs": [{"name": "slow", "port": 80}]},
                         {"backendRefs": [ref]}]}}


def static_objects(listen: int, backend_port: int) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
         "metadata": {"name": "rauta"}, "spec": {"controllerName": "rauta.io/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "gw", "namespace": "default"},
         "spec": {"gatewayClassName": "rauta",
                  "listeners": [{"name": "http", "port": listen, "protocol": "HTTP"}]}},
    ]
    for name, addr in BACKENDS.items():
        objs.append({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": name, "namespace": "default"},
                     "spec": {"ports": [{"name": "http", "port": 80}]}})
        objs.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": f"{name}-1", "namespace": "default",
                                  "labels": {"kubernetes.io/service-name": name}},
                     "addressType": "IPv4", "ports": [{"name": "http", "port": backend_port}],
                     "endpoints": [{"addresses": [addr], "conditions": {"ready": True}}]})
    return objs


async def until(pred: Callable[[], Awaitable[bool]], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await pred():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {what}")
        await asyncio.sleep(0.05)


class Serve:
    def __init__(self, proc: asyncio.subprocess.Process, listen: int, admin: int,
                 config: Path, session: aiohttp.ClientSession) -> None:
        self.proc, self.listen, self.admin, self.config = proc, listen, admin, config
        self.session = session
        self.stderr: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.stderr.append(raw.decode(errors="replace").rstrip("\n"))

    async def get(self, path: str = "/") -> tuple[int, str | None]:
        async with self.session.get(f"http://127.0.0.1:{self.listen}{path}",
                                    headers={"Host": "serve.test"}) as r:
            await r.read()
            return r.status, r.headers.get("x-backend")

    async def admin_status(self, path: str) -> int:
        try:
            async with self.session.get(f"http://127.0.0.1:{self.admin}{path}") as r:
                return r.status
        except aiohttp.ClientError:
            return 0

    async def backend_is(self, name: str) -> bool:
        with contextlib.suppress(aiohttp.ClientError):
            return await self.get("/") == (200, name)
        return False

    def errors_naming(self, needle: str) -> list[str]:
        return [line for line in self.stderr if " ERROR " in line and needle in line]


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (a ``--workers`` control plane's workers)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
    return sorted(out)


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, *args: str) -> AsyncIterator[Serve]:
    """``rauta serve ARGS`` on a config directory of static objects and route v1, with
    its echo backends; on exit it and any process it started are killed."""
    backend_port, listen, admin = free_port(), free_port(), free_port()
    backends = [EchoBackend(n, a, backend_port, delay_ms=SLOW_MS if n == "slow" else 0)
                for n, a in BACKENDS.items()]
    for b in backends:
        await b.start()
    config = tmp_path / "config"
    config.mkdir()
    write(config / "base.yaml", *static_objects(listen, backend_port))
    write(config / "route.yaml", route("v1"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rauta.cli", "serve", "--config", str(config),
        "--admin", f"127.0.0.1:{admin}", *args,
        cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True),
        timeout=aiohttp.ClientTimeout(total=10))
    s = Serve(proc, listen, admin, config, session)
    try:
        yield s
    finally:
        kids = children(proc.pid)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for pid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(s._reader, 5)
        await session.close()
        for b in backends:
            await b.stop()


@pytest_asyncio.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    async with serving(tmp_path, "--grace", str(GRACE)) as s:
        yield s


@pytest.mark.timeout(90)
async def test_serve_edits_invalid_edit_and_graceful_sigterm(serve: Serve) -> None:
    # Ready, and serving from the files.
    await until(lambda: _is(serve.admin_status("/healthz"), 200), "/healthz", 20)
    await until(lambda: _is(serve.admin_status("/readyz"), 200), "/readyz", 20)
    assert await serve.get("/") == (200, "v1")

    # An edit of the route file: traffic follows.
    write(serve.config / "route.yaml", route("v2"))
    await until(lambda: serve.backend_is("v2"), "traffic follows the edit to v2", 10)

    # An invalid edit: one clear error line naming file and field; traffic unchanged.
    write(serve.config / "route.yaml", route("v1", drop_name=True))

    async def logged() -> bool:
        return bool(serve.errors_naming("route.yaml"))

    await until(logged, "an error line naming route.yaml", 10)
    await asyncio.sleep(0.5)  # let any repeated reload happen
    lines = serve.errors_naming("route.yaml")
    assert len(lines) == 1, lines
    assert "spec.rules[1].backendRefs[0].name" in lines[0], lines[0]
    assert "HTTPRoute default/web" in lines[0], lines[0]
    for _ in range(5):
        assert await serve.get("/") == (200, "v2")
    assert await serve.admin_status("/readyz") == 200

    # SIGTERM while a slow request is in flight: it completes, the process exits 0.
    in_flight = asyncio.create_task(serve.get("/slow"))
    await asyncio.sleep(0.4)  # the request has reached the slow backend
    assert not in_flight.done()
    started = time.monotonic()
    serve.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(in_flight, SLOW_MS / 1000 + GRACE) == (200, "slow")
    code = await asyncio.wait_for(serve.proc.wait(), GRACE + 5)
    elapsed = time.monotonic() - started
    assert code == 0, "\n".join(serve.stderr[-20:])
    assert elapsed < GRACE + 2, f"exit took {elapsed:.1f}s"
    await asyncio.wait_for(serve._reader, 5)
    assert not any("Traceback" in line for line in serve.stderr), "\n".join(serve.stderr)
    with pytest.raises(aiohttp.ClientError):
        await serve.get("/")  # the listener is gone


async def _is(coro: Awaitable[int], want: int) -> bool:
    return await coro == want


@pytest.mark.timeout(30)
def test_python_dash_m_rauta_cli_runs() -> None:
    import subprocess

    out = subprocess.run([sys.executable, "-m", "rauta.cli", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    for cmd in ("serve", "replay", "translate"):
        assert cmd in out.stdout
