"""The runtime every long-running mode runs on: one proxy, one admin server, one shutdown.

Role: ``rauta serve`` and ``rauta controller`` differ only in their sources (YAML files or
API-server watches) and status sinks. ``App`` builds the data plane from one
``ProxySettings`` (``rauta.settings``), serves the admin API, installs SIGTERM/SIGINT,
runs the mode's tasks and shuts them all down in one order.

Rules:
- ``settings.workers`` > 1: the proxy is a ``rauta.workers.WorkerPool`` (N data-plane
  processes; this one is the control plane), started by ``start``; its ``not_ready`` and
  ``refresh_metrics`` go to the admin server.
- ``start_admin`` failing (the address taken or not assignable) closes the proxy and is a
  ``StartupError`` whose text is one line (the CLI prints it, never a traceback).
- Tasks: ``spawn(coro, name)`` runs a source (cancelled at shutdown); ``until_stop=True``
  marks one that watches ``App.stop`` itself and finishes its own work (the observer
  flushing its queue, the controller stopping its watches): it is awaited, not cancelled.
- A task that ends with an error is reported once (an error line naming it). A source's
  crash leaves the proxy serving the last applied config (fail static); an ``essential``
  task's crash stops the process with exit code 1.
- Shutdown order, the same for every mode: stop the sources (cancel, then await the
  ``until_stop`` tasks), run the ``on_close`` callbacks (status sinks, API clients), drain
  the proxy for ``settings.drain`` seconds, close the admin server. ``run`` returns the
  exit code: 0 after a signal, 1 after an essential task failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from rauta.admin import start_admin
from rauta.model.status import Applied
from rauta.proxy.manager import Proxy
from rauta.settings import ProxySettings
from rauta.workers import WorkerGone, WorkerPool

log = logging.getLogger("rauta.app")


class StartupError(Exception):
    """rauta cannot start (a taken admin port, an unusable directory); one line."""


class App:
    """One process's runtime (see the module doc)."""

    def __init__(self, settings: ProxySettings, *,
                 registry: CollectorRegistry | None = None,
                 proxy: Proxy | None = None) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.pool: WorkerPool | None = None
        if proxy is None and settings.workers > 1:
            self.pool = WorkerPool(settings, self.registry)
            # the same apply/close as a Proxy; the observer is refused with workers
            proxy = self.pool  # type: ignore[assignment]
        self.proxy = proxy if proxy is not None else settings.build(self.registry)
        self.stop = asyncio.Event()
        self.code = 0
        self.crashed: list[str] = []  # names of the tasks that ended with an error
        self._sources: list[asyncio.Task[Any]] = []
        self._stoppers: list[asyncio.Task[Any]] = []
        self._closers: list[Callable[[], Awaitable[object]]] = []
        self._admin: web.AppRunner | None = None
        self._stopping = False

    async def start(self) -> None:
        """Start the data-plane workers (``settings.workers`` > 1); nothing otherwise."""
        if self.pool is not None:
            try:
                await self.pool.start()
            except (WorkerGone, OSError) as exc:
                if self._admin is not None:
                    await self._admin.cleanup()
                raise StartupError(f"cannot start the data-plane workers: {exc}") from None

    def report_rebinds(self, on_change: Callable[[Applied], None]) -> None:
        """Have a restarted worker's changed bind results reach ``on_change`` (the
        reconciler's ``proxy_changed``); nothing to report with one process."""
        if self.pool is not None:
            self.pool.on_change = on_change

    def not_ready(self) -> str | None:
        """Why the data plane is not ready (a worker down), or None."""
        return self.pool.not_ready() if self.pool is not None else None

    @property
    def refresh_metrics(self) -> Callable[[], Awaitable[None]] | None:
        """For ``admin_app(refresh=...)``: fetch the workers' metrics first."""
        return self.pool.refresh_metrics if self.pool is not None else None

    async def start_admin(self, app: web.Application, address: str) -> None:
        try:
            self._admin = await start_admin(app, address)
        except OSError as exc:
            await self.proxy.close()
            raise StartupError(f"cannot serve the admin API on {address}: "
                               f"{exc.strerror or exc} (choose another with --admin)") from None
        log.info("admin server on http://%s (/healthz /readyz /metrics /config /status)",
                 address)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str, *, until_stop: bool = False,
              essential: bool = False) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        (self._stoppers if until_stop else self._sources).append(task)
        task.add_done_callback(lambda t: self._ended(t, essential))
        return task

    def on_close(self, callback: Callable[[], Awaitable[object]]) -> None:
        """Await ``callback()`` at shutdown, after the tasks and before the drain."""
        self._closers.append(callback)

    def _ended(self, task: asyncio.Task[Any], essential: bool) -> None:
        if task.cancelled() or task.exception() is None:
            return
        self.crashed.append(task.get_name())
        if essential:
            log.error("%s failed: %s; stopping", task.get_name(), task.exception())
            self.code = 1
            self.stop.set()
        elif not self._stopping:
            log.error("%s stopped: %s; restart rauta to follow config changes again",
                      task.get_name(), task.exception())

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self.stop.set)

    async def run(self) -> int:
        """Until SIGTERM/SIGINT (or an essential task's failure), then ``shutdown``."""
        self.install_signals()
        await self.stop.wait()
        return await self.shutdown()

    async def shutdown(self) -> int:
        self._stopping = True
        self.stop.set()
        log.info("stopping: draining in-flight requests (up to %.0fs)", self.settings.drain)
        for task in self._sources:
            task.cancel()
        await asyncio.gather(*self._sources, return_exceptions=True)
        await asyncio.gather(*self._stoppers, return_exceptions=True)
        for close in self._closers:
            try:
                await close()
            except Exception as exc:  # one failing closer must not skip the drain
                log.error("closing: %s", exc)
        await self.proxy.close(self.settings.drain)
        if self._admin is not None:
            await self._admin.cleanup()
        return self.code
