"""The observer pipeline: sources → attribution → detectors → outputs.

Role: wires a kernel source (anything with the ``KernelSource`` shape, i.e.
``rauta.observe.kernel.KernelObserver``) and/or the proxy hook's queue to the
``Attributor``, the ``Detector`` and the outputs (JSON lines, Prometheus). ``mode`` is
``proxy`` (proxy events only), ``xdp`` (kernel events only) or ``both`` (kernel events
for latency, status and connects; the proxy's join table for attribution; the proxy's
own events are not counted, so an exchange or a failed connect is counted once; the
proxy's exchange only gives ``proxy_lag``, its parse time minus the kernel's).

Rules:
- Off the proxy's hot path: ``run`` polls in a worker thread (``asyncio.to_thread``) for
  the kernel and drains the hook's queue on the loop every ``interval_ms``.
- Events are processed in ``end_ns`` order within a batch (the detector's clock), in
  batches of at most ``batch`` events with a yield to the loop in between.
- Lost events are counted per transport: ``proxy`` (hook queue full) and whatever the
  kernel's counters report under ``lost_*`` names.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

from rauta.model.config import RouterConfig
from rauta.observe.attribute import Attributor, JoinTable, RouteIds
from rauta.observe.decode import ROUTE_FROM_WATCH
from rauta.observe.detect import Anomaly, Detector, DetectorSettings, breakdown
from rauta.observe.events import ConnectEvent, Endpoint, Event, HttpEvent
from rauta.observe.output import JsonLines, KernelCollector, Metrics
from rauta.observe.proxyhook import ProxyHook

Mode = Literal["proxy", "xdp", "both"]
LAG_SLACK_NS = 1_000_000


class KernelSource(Protocol):
    """What the pipeline needs from ``rauta.observe.kernel.KernelObserver``."""

    def watch(self, endpoints: Mapping[Endpoint, int]) -> None: ...
    def set_flow_route(self, client: Endpoint, server: Endpoint, route_id: int) -> None: ...
    def poll(self, timeout_ms: int) -> list[HttpEvent | ConnectEvent]: ...
    def counters(self) -> dict[str, int]: ...
    def histograms(self) -> dict[tuple[int, int], list[int]]: ...
    def close(self) -> None: ...


class Pipeline:
    """One observer instance (see the module doc)."""

    def __init__(self, mode: Mode, *, config: RouterConfig | None = None,
                 kernel: KernelSource | None = None, json_out: JsonLines | None = None,
                 metrics: Metrics | None = None, settings: DetectorSettings | None = None,
                 bucket_bounds: Sequence[float] = (), pods: Mapping[str, str] | None = None,
                 hook_maxlen: int = 65536) -> None:
        if mode in ("xdp", "both") and kernel is None:
            raise ValueError(f"mode {mode!r} needs a kernel source")
        self.mode = mode
        self.kernel = kernel
        self.ids = RouteIds()
        self.table = JoinTable()
        self.pods = dict(pods or {})
        self.attributor = Attributor(config or RouterConfig(), self.table, self.pods)
        self.detector = Detector(settings)
        self.json_out = json_out
        self.metrics = metrics or Metrics()
        self._lost_seen: dict[str, int] = {}
        self.hook: ProxyHook | None = None
        if mode in ("proxy", "both"):
            self.hook = ProxyHook(
                maxlen=hook_maxlen, table=self.table, ids=self.ids,
                set_flow_route=kernel.set_flow_route if kernel is not None else None)
        if kernel is not None:
            self.metrics.add_kernel(KernelCollector(
                kernel.histograms, bucket_bounds, kernel.counters,
                lambda rid: self.ids.name(rid & ~ROUTE_FROM_WATCH)[0]))
        self.anomalies: list[Anomaly] = []  # the last batch's (for tests and the CLI)
        self._pending_kernel: dict[tuple[Endpoint, Endpoint], tuple[int, str]] = {}
        self._pending_proxy: dict[tuple[Endpoint, Endpoint], tuple[int, int]] = {}

    def update_config(self, config: RouterConfig, pods: Mapping[str, str] | None = None) -> None:
        """A new RouterConfig: re-index endpoints and (kernel) re-watch the backends.

        Each watched endpoint's id is the route id of the one (route, rule) that sends
        to it, 0 when several do: the kernel keys its histograms by it for connections
        the proxy did not name (``set_flow_route``).
        """
        if pods is not None:
            self.pods = dict(pods)
        self.attributor.update(config, self.pods)
        if self.kernel is not None:
            eps: dict[Endpoint, int] = {}
            for port in config.ports:
                for lr in port.listeners:
                    for rule in lr.rules:
                        rid = self.ids.id(rule.route, rule.rule_name or str(rule.rule_index))
                        for b in rule.backends:
                            for e in b.endpoints:
                                ep = Endpoint(e.address, e.port)
                                eps[ep] = rid if eps.get(ep, rid) == rid else 0
            self.kernel.watch(dict(sorted(eps.items(), key=lambda kv: (kv[0].ip, kv[0].port))))

    def process(self, events: Sequence[Event]) -> list[Anomaly]:
        """Attribute, detect and output one batch; returns its anomalies."""
        out: list[Anomaly] = []
        m = self.metrics
        for ev in sorted(events, key=lambda e: e.end_ns):
            if self.mode == "both" and _from_proxy(ev):
                # The kernel's view of exchanges and connects counts; the proxy's own
                # exchange only gives the event loop's lag behind the kernel.
                if isinstance(ev, HttpEvent):
                    self._lag_proxy(ev)
                continue
            if isinstance(ev, HttpEvent):
                ev = self.attributor.attribute(ev)
                m.record_breakdown(ev.route, breakdown(ev))
                if self.mode == "both" and ev.leg == "upstream":
                    self._lag_kernel(ev)
            elif not ev.service:
                svc, pod = self.attributor.index.service(ev.server)
                ev = dataclasses.replace(ev, service=svc, pod=ev.pod or pod)
            m.record_event(ev)
            out.extend(self.detector.observe(ev))
        m.record_anomalies(out)
        if self.json_out is not None:
            self.json_out.write(out)
        self._count_lost()
        self.anomalies = out
        return out

    # proxy_lag in both mode: the proxy's exchange and the kernel's, matched per 4-tuple.
    # An exchange on a connection ends before the next one starts (no pipelining), so the
    # kernel saw the response (end_ns) between the proxy's request stamp (start_ns, less a
    # millisecond of slack: the proxy stamps just after its write) and its parse (end_ns).
    # Whichever side comes second completes the pair; one pending side per 4-tuple.

    def _lag_kernel(self, ev: HttpEvent) -> None:
        flow = (ev.client, ev.server)
        p = self._pending_proxy.pop(flow, None)
        if p is not None and p[0] - LAG_SLACK_NS <= ev.end_ns <= p[1]:
            self.metrics.record_breakdown(ev.route, {"proxy_lag": (p[1] - ev.end_ns) / 1e9})
            return
        self._pending_kernel[flow] = (ev.end_ns, ev.route)
        _bound(self._pending_kernel)

    def _lag_proxy(self, ev: HttpEvent) -> None:
        flow = (ev.client, ev.server)
        k = self._pending_kernel.pop(flow, None)
        if k is not None and ev.start_ns - LAG_SLACK_NS <= k[0] <= ev.end_ns:
            self.metrics.record_breakdown(k[1], {"proxy_lag": (ev.end_ns - k[0]) / 1e9})
            return
        self._pending_proxy[flow] = (ev.start_ns, ev.end_ns)
        _bound(self._pending_proxy)

    def _count_lost(self) -> None:
        totals: dict[str, int] = {}
        if self.hook is not None:
            totals["proxy"] = self.hook.lost
        if self.kernel is not None:
            for k, v in self.kernel.counters().items():
                if k.startswith("lost"):
                    totals[k.removeprefix("lost").strip("_") or "ringbuf"] = v
        for transport, total in totals.items():
            seen = self._lost_seen.get(transport, 0)
            if total > seen:
                self.metrics.lost.labels(transport).inc(total - seen)
                self._lost_seen[transport] = total

    def step(self, timeout_ms: int = 0) -> list[Anomaly]:
        """One synchronous round: poll the kernel, drain the hook, process."""
        events: list[Event] = []
        if self.kernel is not None and self.mode in ("xdp", "both"):
            events.extend(self.kernel.poll(timeout_ms))
        if self.hook is not None:
            events.extend(self.hook.drain())
        return self.process(events)

    async def run(self, stop: asyncio.Event, interval_ms: int = 5, batch: int = 2048) -> None:
        """Poll until ``stop`` is set: the kernel in a worker thread, the hook on the loop.

        Events are processed ``batch`` at a time, yielding to the loop in between, so a
        burst never holds the proxy's event loop for long.
        """
        while not stop.is_set():
            events: list[Event] = []
            if self.kernel is not None and self.mode in ("xdp", "both"):
                events.extend(await asyncio.to_thread(self.kernel.poll, interval_ms))
            else:
                try:
                    await asyncio.wait_for(stop.wait(), interval_ms / 1000)
                except TimeoutError:
                    pass
            if self.hook is not None:
                events.extend(self.hook.drain())
            for i in range(0, len(events), batch):
                self.process(events[i:i + batch])
                if i + batch < len(events):
                    await asyncio.sleep(0)
        self.process(self.hook.drain() if self.hook is not None else [])


def _bound(pending: dict[Any, Any], most: int = 65536) -> None:
    while len(pending) > most:
        pending.pop(next(iter(pending)))


def _from_proxy(ev: Event) -> bool:
    """An event the proxy hook made (not the kernel)."""
    return ev.source == "proxy"
