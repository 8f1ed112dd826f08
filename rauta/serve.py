"""``rauta serve``: the whole product on one machine, driven by YAML files.

Role: wire the file source, the reconciler, the proxy, a standalone status sink and the
admin server together, and run them until SIGTERM/SIGINT.

Rules:
- Startup order: admin server, reconciler loop, then the source (so /readyz is answerable
  before the first config). Shutdown: stop the source, drain the proxy (bounded grace
  period), stop the admin server, exit 0.
- An invalid edit of a config file keeps the last good config serving (see FileSource);
  each rejected read counts in ``rauta_config_reload_errors_total`` and ``/status`` shows
  the count and the files invalid now (an entry of kind ``rauta/ConfigFiles``).
- A start-up failure (the admin address taken or not assignable) is a ``StartupError``
  whose text is one line; the CLI prints it, never a traceback. A listener that cannot be
  bound is logged (warning) and keeps ``/readyz`` at 503 until it is bound.
- ``access_log``: a JSON line per request to that file ("-": stdout), written off the
  request path (``rauta.proxy.accesslog``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from rauta.admin import admin_app, start_admin
from rauta.model.graph import DEFAULT_CONTROLLER
from rauta.proxy.manager import Proxy
from rauta.reconcile.filesource import FileSource
from rauta.reconcile.reconciler import Reconciler
from rauta.reconcile.sinks import MemorySink

log = logging.getLogger("rauta.serve")

SETTLE = 0.1  # seconds a file written in place must be unchanged before it is read
EMPTY_HOLD = 2.0  # seconds an emptied file must stay empty before its objects go


class StartupError(Exception):
    """rauta cannot start (a taken admin port, an unusable directory); one line."""


def _report_crash(task: asyncio.Task[Any]) -> None:
    """A background task that ended with an error: say so (config no longer follows)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped: %s; restart rauta to follow config changes again",
                  task.get_name(), task.exception())


def files_status(source: FileSource) -> dict[str, Any]:
    """The ``/status`` entry of the file source: rejected reloads and invalid files."""
    return {"kind": "rauta/ConfigFiles", "namespace": "", "name": "files",
            "status": {"reloadErrors": source.rejected,
                       "invalidFiles": [{"file": str(f), "error": e}
                                        for f, e in sorted(source.errors.items())]}}


async def serve(paths: list[str], *, admin: str = "127.0.0.1:9901", host: str = "127.0.0.1",
                status_file: Path | None = None, controller_name: str = DEFAULT_CONTROLLER,
                grace: float = 10.0, hash_on: str = "flow",
                proxy_settings: Mapping[str, Any] | None = None,
                address_pool: str | None = None, strict: bool = False,
                access_log: str | None = None, observe: str | None = None,
                observe_out: str = "-", observe_window: float = 10.0) -> int:
    registry = CollectorRegistry()
    proxy = Proxy(host=host, registry=registry, hash_on=hash_on, drain_seconds=grace,
                  access_log=access_log, **(proxy_settings or {}))
    sink = MemorySink(controller_name=controller_name, path=status_file)
    reconciler = Reconciler(proxy, sink, controller_name=controller_name,
                            address_pool=address_pool)
    reload_errors = Counter("rauta_config_reload_errors",
                            "Config file reads rejected (invalid; the last good version kept)",
                            registry=registry)
    source = FileSource(list(paths), reconciler, strict=strict, settle=SETTLE,
                        empty_hold=EMPTY_HOLD, on_reject=reload_errors.inc)
    app = admin_app(reconciler, registry,
                    status=lambda: [*sink.document(), files_status(source)])
    try:
        runner = await start_admin(app, admin)
    except OSError as exc:
        await proxy.close()
        raise StartupError(f"cannot serve the admin API on {admin}: "
                           f"{exc.strerror or exc} (choose another with --admin)") from None
    log.info("admin server on http://%s (/healthz /readyz /metrics /config /status)", admin)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    tasks = [asyncio.create_task(reconciler.run(), name="reconciler"),
             asyncio.create_task(source.run(), name="file-source")]
    for task in tasks:
        task.add_done_callback(_report_crash)
    observer = None
    if observe:
        from rauta.observe.serving import open_out, proxy_pipeline, run_observer

        pipe = proxy_pipeline(proxy, registry, open_out(observe_out), observe_window)
        observer = asyncio.create_task(run_observer(proxy, pipe, stop), name="observer")
        log.info("observer on (%s mode): anomalies as JSON lines to %s", observe,
                 "stdout" if observe_out == "-" else observe_out)
    await stop.wait()
    log.info("stopping: draining in-flight requests (up to %.0fs)", grace)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if observer is not None:
        await observer  # stop is set: it processes what is still queued, then returns
    await proxy.close(grace)
    await runner.cleanup()
    return 0
