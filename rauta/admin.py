"""The admin server (aiohttp): health, readiness, metrics and the applied config.

Role: the operator's window into a running rauta, on its own address (loopback by default).

Rules:
- ``/healthz`` answers 200 while the process runs; ``/readyz`` answers 200 only once the
  first configuration is applied, every source is connected and no listener failed to
  bind (503 with the reason otherwise: a port in use); ``/metrics`` is the prometheus text format of rauta's own registry;
  ``/config`` is the applied RouterConfig as JSON with its generation; ``/status`` is the
  statuses rauta wrote (standalone sinks).
- It never blocks the data plane: every handler only reads in-memory state (with
  ``--workers N``, ``/metrics`` first fetches the workers' metrics: ``refresh``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from rauta.model.render import config_document
from rauta.reconcile.reconciler import Reconciler


def admin_app(reconciler: Reconciler, registry: CollectorRegistry, *,
              not_ready: Callable[[], str | None] = lambda: None,
              status: Callable[[], Any] | None = None,
              refresh: Callable[[], Awaitable[None]] | None = None) -> web.Application:
    app = web.Application()

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if not reconciler.ready.is_set():
            return web.Response(status=503, text="not ready: no configuration applied yet\n")
        why = not_ready() or bind_failures(reconciler)
        if why:
            return web.Response(status=503, text=f"not ready: {why}\n")
        return web.Response(text="ready\n")

    async def metrics(_: web.Request) -> web.Response:
        if refresh is not None:
            await refresh()
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def config(_: web.Request) -> web.Response:
        return web.json_response({
            "generation": reconciler.stats.applies,
            "config": config_document(reconciler.config),
        })

    async def status_handler(_: web.Request) -> web.Response:
        return web.json_response(status() if status else [])

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/config", config)
    app.router.add_get("/status", status_handler)
    return app


def bind_failures(reconciler: Reconciler) -> str | None:
    """The listeners the proxy could not bind at its last apply (a port in use), or None.
    (Other failed ports, e.g. an HTTPS port without a usable certificate, are a Gateway's
    problem reported in its status, not the process's readiness.)"""
    applied = reconciler.applied
    if applied is None:
        return None
    texts = [w for _, w in applied.failed] + [w for _, _, w in applied.failed_at]
    bad = sorted(w for w in texts if w.startswith("cannot listen on"))
    return "; ".join(bad) or None


async def start_admin(app: web.Application, address: str) -> web.AppRunner:
    """Serve ``app`` on ``host:port``; returns the runner (``await runner.cleanup()``).
    An address that cannot be bound raises ``OSError`` with nothing left running."""
    host, _, port = address.rpartition(":")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host.strip("[]") or "127.0.0.1", int(port)).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
