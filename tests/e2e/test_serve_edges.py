"""``rauta serve`` as a real process, the rough edges of issue 11: a config rewritten in
place (``cmd > file``) drops no request; a rejected reload is counted in
``rauta_config_reload_errors_total`` and shown at ``/status``; a listener port that is
taken is a warning, keeps ``/readyz`` at 503 and is bound once free, with no traceback.

Bounded: 40 requests over a 0.6 s rewrite; every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

from rauta.echo import EchoBackend
from rauta.scenario import free_port

from .test_serve import (
    BACKENDS,
    REPO,
    Serve,
    route,
    serve,  # noqa: F401  (the fixture)
    static_objects,
    until,
    write,
)

pytestmark = pytest.mark.timeout(90)


async def _metric(s: Serve, name: str) -> float | None:
    async with s.session.get(f"http://127.0.0.1:{s.admin}/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


async def test_a_config_rewritten_in_place_drops_no_request(serve: Serve) -> None:  # noqa: F811
    await until(lambda: serve.backend_is("v1"), "serving v1", 20)
    text = yaml.safe_dump(route("v2"), sort_keys=False)
    results: list[tuple[int, str | None]] = []

    async def load() -> None:
        for _ in range(40):
            try:
                results.append(await serve.get("/"))
            except aiohttp.ClientError as exc:
                results.append((0, type(exc).__name__))
            await asyncio.sleep(0.02)

    async def rewrite() -> None:
        with open(serve.config / "route.yaml", "w") as f:  # `cmd > route.yaml`: truncated
            f.flush()
            await asyncio.sleep(0.6)  # ... while the command thinks
            f.write(text)

    await asyncio.gather(load(), rewrite())
    bad = [r for r in results if r[0] != 200]
    assert bad == [], f"{len(bad)} of {len(results)} requests failed: {bad[:5]}"
    await until(lambda: serve.backend_is("v2"), "the rewrite applied", 10)


async def test_a_rejected_reload_is_counted_and_shown_at_status(serve: Serve) -> None:  # noqa: F811
    await until(lambda: serve.backend_is("v1"), "serving v1", 20)
    assert await _metric(serve, "rauta_config_reload_errors_total") == 0
    write(serve.config / "route.yaml", route("v1", drop_name=True))
    await until(lambda: _is_at_least(serve, 1), "the reload error counted", 10)
    async with serve.session.get(f"http://127.0.0.1:{serve.admin}/status") as r:
        doc = await r.json()
    (files,) = [d for d in doc if d["kind"] == "rauta/ConfigFiles"]
    assert files["status"]["reloadErrors"] == 1
    (bad,) = files["status"]["invalidFiles"]
    assert bad["file"].endswith("route.yaml") and "backendRefs[0].name" in bad["error"]
    assert await serve.get("/") == (200, "v1")  # still the last good version


async def _is_at_least(s: Serve, n: float) -> bool:
    v = await _metric(s, "rauta_config_reload_errors_total")
    return v is not None and v >= n


async def test_a_taken_listener_port_is_a_warning_and_not_ready(tmp_path: Path) -> None:
    backend_port, listen, admin = free_port(), free_port(), free_port()
    backends = [EchoBackend(n, a, backend_port) for n, a in BACKENDS.items()]
    for b in backends:
        await b.start()
    holder = socket.socket()
    holder.bind(("127.0.0.1", listen))
    holder.listen()
    config = tmp_path / "config"
    config.mkdir()
    write(config / "base.yaml", *static_objects(listen, backend_port))
    write(config / "route.yaml", route("v1"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rauta.cli", "serve", "--config", str(config),
        "--admin", f"127.0.0.1:{admin}", "--grace", "1", cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                    timeout=aiohttp.ClientTimeout(total=5))
    s = Serve(proc, listen, admin, config, session)
    try:
        await until(lambda: _warned(s, f"127.0.0.1:{listen}"), "a bind warning", 20)
        async with session.get(f"http://127.0.0.1:{admin}/readyz") as r:
            assert r.status == 503
            assert f"127.0.0.1:{listen}" in await r.text()
        holder.close()
        started = time.monotonic()
        await until(lambda: _ready(s), "ready once the port is free", 20)
        print(f"bound {time.monotonic() - started:.1f}s after the port was freed")
        assert await s.get("/") == (200, "v1")
        assert not any("Traceback" in line for line in s.stderr), "\n".join(s.stderr)
    finally:
        holder.close()
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(s._reader, 5)
        await session.close()
        for b in backends:
            await b.stop()


async def _warned(s: Serve, needle: str) -> bool:
    return any(" WARNING " in line and needle in line for line in s.stderr)


async def _ready(s: Serve) -> bool:
    return await s.admin_status("/readyz") == 200
