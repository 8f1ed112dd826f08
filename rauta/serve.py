"""``rauta serve``: the whole product on one machine, driven by YAML files.

Role: the file source, the reconciler and a standalone status sink, on the runtime every
mode shares (``rauta.app.App``: the proxy, the admin server, signals and shutdown).

Rules:
- Startup order: admin server, reconciler loop, then the source (so /readyz is answerable
  before the first config). Shutdown is ``App``'s: stop the source, drain the proxy for
  ``settings.drain`` seconds (``--grace``), stop the admin server, exit 0.
- An invalid edit of a config file keeps the last good config serving (see FileSource);
  each rejected read counts in ``rauta_config_reload_errors_total`` and ``/status`` shows
  the count and the files invalid now (an entry of kind ``rauta/ConfigFiles``).
- A start-up failure (the admin address taken or not assignable) is a ``StartupError``
  whose text is one line; the CLI prints it, never a traceback. A listener that cannot be
  bound is logged (warning) and keeps ``/readyz`` at 503 until it is bound.
- ``settings.access_log``: a JSON line per request to that file ("-": stdout), written
  off the request path (``rauta.proxy.accesslog``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from rauta.admin import admin_app
from rauta.app import App, StartupError
from rauta.model.graph import DEFAULT_CONTROLLER
from rauta.reconcile.filesource import FileSource
from rauta.reconcile.reconciler import Reconciler
from rauta.reconcile.sinks import MemorySink
from rauta.settings import ProxySettings

log = logging.getLogger("rauta.serve")

SETTLE = 0.1  # seconds a file written in place must be unchanged before it is read
EMPTY_HOLD = 2.0  # seconds an emptied file must stay empty before its objects go

__all__ = ["StartupError", "files_status", "serve"]


def files_status(source: FileSource) -> dict[str, Any]:
    """The ``/status`` entry of the file source: rejected reloads and invalid files."""
    return {"kind": "rauta/ConfigFiles", "namespace": "", "name": "files",
            "status": {"reloadErrors": source.rejected,
                       "invalidFiles": [{"file": str(f), "error": e}
                                        for f, e in sorted(source.errors.items())]}}


async def serve(paths: list[str], *, admin: str = "127.0.0.1:9901",
                settings: ProxySettings | None = None, status_file: Path | None = None,
                controller_name: str = DEFAULT_CONTROLLER, address_pool: str | None = None,
                strict: bool = False, observe: str | None = None, observe_out: str = "-",
                observe_window: float = 10.0) -> int:
    app = App(settings or ProxySettings())
    sink = MemorySink(controller_name=controller_name, path=status_file)
    reconciler = Reconciler(app.proxy, sink, controller_name=controller_name,
                            address_pool=address_pool)
    app.report_rebinds(reconciler.proxy_changed)
    reload_errors = Counter("rauta_config_reload_errors",
                            "Config file reads rejected (invalid; the last good version kept)",
                            registry=app.registry)
    source = FileSource(list(paths), reconciler, strict=strict, settle=SETTLE,
                        empty_hold=EMPTY_HOLD, on_reject=reload_errors.inc)
    await app.start_admin(admin_app(reconciler, app.registry, not_ready=app.not_ready,
                                    refresh=app.refresh_metrics,
                                    status=lambda: [*sink.document(), files_status(source)]),
                          admin)
    await app.start()
    app.spawn(reconciler.run(), "reconciler")
    app.spawn(source.run(), "file-source")
    if observe:
        from rauta.observe.serving import open_out, proxy_pipeline, run_observer

        pipe = proxy_pipeline(app.proxy, app.registry, open_out(observe_out), observe_window)
        # stop is set at shutdown: it processes what is still queued, then returns
        app.spawn(run_observer(app.proxy, pipe, app.stop), "observer", until_stop=True)
        log.info("observer on (%s mode): anomalies as JSON lines to %s", observe,
                 "stdout" if observe_out == "-" else observe_out)
    return await app.run()
