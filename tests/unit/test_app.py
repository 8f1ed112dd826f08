"""``rauta.app.App``, the runtime of serve and controller: one shutdown order (sources,
then the tasks that watch ``stop``, then the closers, then the drain, then the admin
server), the one drain setting given to the proxy, SIGTERM, crashes reported, and a taken
admin port as a one-line ``StartupError``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket

import pytest
from aiohttp import web

from rauta.app import App, StartupError
from rauta.settings import ProxySettings

pytestmark = pytest.mark.timeout(20)


class FakeProxy:
    def __init__(self, order: list[str]) -> None:
        self.order = order

    async def close(self, grace: float = 0.0) -> None:
        self.order.append(f"drain {grace}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_shutdown_runs_in_one_order_and_drains_with_the_drain_setting() -> None:
    order: list[str] = []
    app = App(ProxySettings(drain=3.5), proxy=FakeProxy(order))  # type: ignore[arg-type]
    admin = web.Application()

    async def admin_closed(_: web.Application) -> None:
        order.append("admin closed")

    admin.on_cleanup.append(admin_closed)
    await app.start_admin(admin, f"127.0.0.1:{_free_port()}")

    async def source() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            order.append("source cancelled")
            raise

    async def watcher(stop: asyncio.Event) -> None:
        await stop.wait()
        await asyncio.sleep(0.05)  # its own last work (an observer's queue)
        order.append("watcher done")

    async def closer() -> None:
        order.append("sink closed")

    app.spawn(source(), "source")
    app.spawn(watcher(app.stop), "watcher", until_stop=True)
    app.on_close(closer)
    asyncio.get_running_loop().call_later(0.05, app.stop.set)
    assert await app.run() == 0
    assert order == ["source cancelled", "watcher done", "sink closed", "drain 3.5",
                     "admin closed"]


async def test_sigterm_stops_the_app_with_exit_code_0() -> None:
    order: list[str] = []
    app = App(ProxySettings(drain=0.0), proxy=FakeProxy(order))  # type: ignore[arg-type]
    asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
    try:
        assert await asyncio.wait_for(app.run(), 5) == 0
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
    assert order == ["drain 0.0"]


async def test_the_real_proxy_gets_the_drain_setting_for_removed_ports_too() -> None:
    app = App(ProxySettings(drain=1.25))
    try:
        assert app.proxy.drain_seconds == 1.25
    finally:
        await app.shutdown()


async def test_a_crashed_source_is_reported_and_the_app_keeps_running(
        caplog: pytest.LogCaptureFixture) -> None:
    app = App(ProxySettings(), proxy=FakeProxy([]))  # type: ignore[arg-type]

    async def broken() -> None:
        raise RuntimeError("disk on fire")

    caplog.set_level(logging.ERROR, logger="rauta.app")
    app.spawn(broken(), "file-source")
    await asyncio.sleep(0.05)
    assert not app.stop.is_set() and app.crashed == ["file-source"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "file-source stopped: disk on fire" in lines[0], lines
    assert await app.shutdown() == 0


async def test_an_essential_task_failing_stops_the_app_with_exit_code_1(
        caplog: pytest.LogCaptureFixture) -> None:
    order: list[str] = []
    app = App(ProxySettings(drain=0.5), proxy=FakeProxy(order))  # type: ignore[arg-type]

    async def controller(stop: asyncio.Event) -> None:
        raise ConnectionError("API server said no")

    caplog.set_level(logging.ERROR, logger="rauta.app")
    app.spawn(controller(app.stop), "controller", until_stop=True, essential=True)
    assert await asyncio.wait_for(app.run(), 5) == 1
    assert order == ["drain 0.5"]
    assert any("controller failed: API server said no" in r.getMessage()
               for r in caplog.records)


async def test_a_taken_admin_port_is_a_startup_error_and_closes_the_proxy() -> None:
    order: list[str] = []
    app = App(ProxySettings(), proxy=FakeProxy(order))  # type: ignore[arg-type]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match=f"127.0.0.1:{port}.*--admin"):
            await app.start_admin(web.Application(), f"127.0.0.1:{port}")
    assert order == ["drain 0.0"]


async def test_workers_that_cannot_start_are_a_startup_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``--workers 2`` where the worker processes exit at once: one line, nothing left."""
    import rauta.workers

    monkeypatch.setattr(rauta.workers.sys, "executable", "/bin/false")
    app = App(ProxySettings(workers=2))
    assert app.pool is not None and app.proxy is app.pool  # type: ignore[comparison-overlap]
    with pytest.raises(StartupError, match="cannot start the data-plane workers: worker"):
        await app.start()
    assert all(w.proc is not None and w.proc.returncode is not None
               for w in app.pool.workers)
