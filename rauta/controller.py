"""``rauta controller`` and ``rauta record``: rauta against a real Kubernetes API server.

Role: wire one ``Watcher`` per kind into the same Reconciler and Proxy that ``rauta serve``
uses, with the Kubernetes status sink and leader election, on the runtime every mode
shares (``rauta.app.App``: proxy, admin server, signals, shutdown); and record watch
events into the scenario format.

Rules:
- Nothing is reconciled until every watch has listed once, so the first statuses are
  computed from a complete picture (no BackendNotFound flash before Services arrive).
- Every replica serves traffic from its own watches; only the Lease holder writes status
  and, with ``gateway_services``, the generated per-Gateway Services
  (``rauta.reconcile.servicesink``; the Service watch that feeds backends feeds them too).
- ``strict`` and the settings' ``access_log`` mean what they mean for ``rauta serve``: unknown fields
  of watched objects are warnings (errors under ``strict``: the last good version is
  kept, ``rauta.fieldcheck`` in the store), and the proxy writes its JSON access log.
- Fail static: when the API server is unreachable the proxy keeps the last applied config;
  ``/readyz`` and ``rauta_apiserver_connected`` show the disconnection; watches resume (or
  re-list) on their own when it returns.
- ``record`` redacts Secret data and writes events exactly as the watches delivered them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, Gauge

from rauta.admin import admin_app
from rauta.app import App, StartupError
from rauta.model.graph import DEFAULT_CONTROLLER
from rauta.model.services import ServiceMode
from rauta.proxy.manager import Proxy
from rauta.reconcile.kube import GW, KINDS, ApiError, Kind, KubeClient, Watcher
from rauta.reconcile.kubesink import KubeStatusSink
from rauta.reconcile.leader import LeaderElector
from rauta.reconcile.reconciler import Reconciler
from rauta.reconcile.servicesink import KubeServiceSink
from rauta.reconcile.store import Event
from rauta.settings import ProxySettings

log = logging.getLogger("rauta.controller")


async def served_kinds(client: KubeClient) -> dict[str, Kind]:
    """The kinds to watch, with ReferenceGrant at v1 when served, else v1beta1."""
    kinds = dict(KINDS)
    try:
        group = await client.request("GET", f"/apis/{GW}")
        versions = {v.get("version") for v in group.get("versions") or ()}
        if "v1" in versions:
            res = await client.request("GET", f"/apis/{GW}/v1")
            if any(r.get("name") == "referencegrants" for r in res.get("resources") or ()):
                kinds["ReferenceGrant"] = Kind("ReferenceGrant", f"{GW}/v1", "referencegrants")
    except ApiError as exc:
        log.warning("discovery of %s failed (%s); using defaults", GW, exc)
    return kinds


class Controller:
    def __init__(self, client: KubeClient, *, proxy: Proxy | None = None,
                 registry: CollectorRegistry | None = None, namespace: str | None = None,
                 controller_name: str = DEFAULT_CONTROLLER,
                 addresses: list[str] | None = None, lease_namespace: str = "default",
                 lease_name: str = "rauta-controller", identity: str | None = None,
                 lease_duration: float = 15.0, address_pool: str | None = None,
                 gateway_services: ServiceMode | None = None, strict: bool = False) -> None:
        """``proxy``: built by ``App`` from the mode's settings, with ``registry`` (one
        with the default settings when None)."""
        self.client = client
        self.namespace = namespace
        self.registry = registry if registry is not None else CollectorRegistry()
        self.proxy = proxy if proxy is not None else ProxySettings().build(self.registry)
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}"
        self.elector = LeaderElector(client, namespace=lease_namespace, name=lease_name,
                                     identity=self.identity, lease_duration=lease_duration,
                                     renew_deadline=lease_duration * 2 / 3,
                                     retry_period=max(0.2, lease_duration / 7.5),
                                     on_started_leading=self._on_leading)
        self.sink = KubeStatusSink(
            client, controller_name=controller_name, is_leader=self.elector.is_leader,
            addresses=[{"type": "IPAddress", "value": a} for a in addresses or []],
            registry=self.registry, cached=lambda key: self.reconciler.store.latest.get(key))
        self.services: KubeServiceSink | None = None
        if gateway_services is not None:
            self.services = KubeServiceSink(
                client, controller_name=controller_name, is_leader=self.elector.is_leader,
                existing=lambda: [obj for key, obj in self.reconciler.store.raw.items()
                                  if key[0] == "Service"],
                registry=self.registry)
        self.reconciler = Reconciler(self.proxy, self.sink, controller_name=controller_name,
                                     address_pool=address_pool,
                                     gateway_services=gateway_services,
                                     service_sink=self.services, check_fields=True,
                                     strict=strict)
        self.watchers: list[Watcher] = []
        self.connected = Gauge("rauta_apiserver_connected",
                               "1 when every watch is connected to the API server",
                               registry=self.registry)
        Gauge("rauta_leader", "1 while this replica holds the leader Lease",
              registry=self.registry).set_function(lambda: 1 if self.elector.is_leader() else 0)
        self.synced = asyncio.Event()

    async def _on_leading(self) -> None:
        await self.synced.wait()
        await self.sink.resync()
        if self.services is not None:
            await self.services.resync()

    def not_ready(self) -> str | None:
        down = [w.kind.kind for w in self.watchers if not w.connected]
        self.connected.set(0 if down else 1)
        if not self.synced.is_set():
            return "initial list of the API server not complete"
        return f"disconnected from the API server ({', '.join(down)})" if down else None

    async def run(self, stop: asyncio.Event) -> None:
        kinds = await served_kinds(self.client)
        for kind in kinds.values():
            ns = None if not kind.namespaced else self.namespace
            w = Watcher(self.client, kind, namespace=ns,
                        on_event=lambda ev: self.reconciler.submit([ev]),
                        on_relist=lambda items, k=kind.kind: self.reconciler.replace_all(
                            items, kinds=[k]))
            self.watchers.append(w)
        tasks = [asyncio.create_task(w.run(), name=f"watch-{w.kind.kind}")
                 for w in self.watchers]
        tasks.append(asyncio.create_task(self.elector.run(), name="leader-election"))
        tasks.append(asyncio.create_task(self._gauge(), name="connected-gauge"))
        try:
            while not all(w.relists for w in self.watchers):
                if stop.is_set():
                    break
                await asyncio.sleep(0.02)
            self.synced.set()
            tasks.append(asyncio.create_task(self.reconciler.run(), name="reconciler"))
            self.reconciler._mark_dirty()  # reconcile the initial picture even if empty
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _gauge(self) -> None:
        while True:
            self.not_ready()
            await asyncio.sleep(1)


async def run_controller(*, kubeconfig: str | None, admin: str,
                         settings: ProxySettings | None = None, observe: str | None = None,
                         observe_out: str = "-", observe_window: float = 10.0,
                         **kwargs: Any) -> int:
    """The controller on the shared runtime (``rauta.app.App``): the watches and the
    elector stop first, then the status and Service sinks and the API client close, then
    the proxy drains for ``settings.drain`` seconds."""
    client = await KubeClient.connect(kubeconfig)
    app = App(settings or ProxySettings(host="0.0.0.0"))
    ctl = Controller(client, proxy=app.proxy, registry=app.registry, **kwargs)
    app.report_rebinds(ctl.reconciler.proxy_changed)
    app.on_close(ctl.sink.close)
    if ctl.services is not None:
        app.on_close(ctl.services.close)
    app.on_close(client.close)
    try:
        await app.start_admin(admin_app(ctl.reconciler, ctl.registry,
                                        not_ready=lambda: app.not_ready() or ctl.not_ready(),
                                        refresh=app.refresh_metrics), admin)
        await app.start()
    except StartupError:
        await client.close()
        raise
    if observe:
        from rauta.observe.serving import open_out, proxy_pipeline, run_observer

        pipe = proxy_pipeline(ctl.proxy, ctl.registry, open_out(observe_out), observe_window)
        app.spawn(run_observer(ctl.proxy, pipe, app.stop), "observer", until_stop=True)
    app.spawn(ctl.run(app.stop), "controller", until_stop=True, essential=True)
    return await app.run()


def redact(obj: dict[str, Any]) -> dict[str, Any]:
    if obj.get("kind") != "Secret":
        return obj
    out = dict(obj)
    for field in ("data", "stringData"):
        if isinstance(out.get(field), dict):
            out[field] = {k: "UkVEQUNURUQ=" for k in out[field]}  # base64("REDACTED")
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    out["metadata"] = meta
    return out


def _clean(obj: dict[str, Any]) -> dict[str, Any]:
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    return redact({**obj, "metadata": meta})


async def record(*, kubeconfig: str | None, out: Path, namespace: str | None = None,
                 duration: float | None = None, batch_seconds: float = 0.5) -> int:
    """Record watch events as a scenario: the initial listing, then one step per batch."""
    client = await KubeClient.connect(kubeconfig)
    steps: list[dict[str, Any]] = []
    pending: list[Event] = []
    initial: list[dict[str, Any]] = []

    def write() -> None:
        doc = {"name": f"recorded from the API server ({out.name})",
               "description": "Recorded by rauta record; Secret data redacted.",
               "steps": steps}
        out.write_text(yaml.safe_dump(doc, sort_keys=False))

    kinds = await served_kinds(client)
    watchers = [Watcher(client, k, namespace=None if not k.namespaced else namespace,
                        on_event=pending.append, on_relist=initial.extend)
                for k in kinds.values()]
    tasks = [asyncio.create_task(w.run()) for w in watchers]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    while not all(w.relists for w in watchers) and not stop.is_set():
        await asyncio.sleep(0.02)
    steps.append({"name": "initial listing",
                  "events": [{"type": "ADDED", "object": _clean(o)} for o in initial]})
    initial.clear()
    write()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), batch_seconds)
        batch, pending[:] = list(pending), []
        if initial:  # a re-list happened: record it as a full state step
            batch = [Event("ADDED", o) for o in initial] + batch
            initial.clear()
        if batch:
            steps.append({"name": f"events {len(steps)}",
                          "events": [{"type": e.type, "object": _clean(dict(e.object))}
                                     for e in batch]})
            write()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await client.close()
    write()
    return 0
