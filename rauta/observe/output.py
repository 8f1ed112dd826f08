"""Observer outputs: JSON lines for anomalies, Prometheus metrics for everything.

Role: turns ``Anomaly`` values and attributed events into a JSON-lines stream and
prometheus-client series. The names are the ones deploy/prometheus/rauta-alerts.yaml
and its promtool tests use: ``rauta_observer_anomalies_total{type}``,
``rauta_observer_connect_failures_total{reason}``,
``rauta_observer_events_lost_total{transport}``, ``rauta_observer_kernel_latency_seconds``
(histogram, ``route`` label) and ``rauta_observer_kernel_total{counter}``.

Rules:
- Labels are bounded: route × rule × status class at most; never a path, a client
  address or anything a request chooses (unattributed traffic is route ``""``).
- Kernel histograms and counters are read at scrape time by a custom collector from the
  source's ``histograms()`` / ``counters()`` (no copying on the hot path).
- One JSON object per line, keys in a fixed order, flushed per line. Anomalies
  (``anomaly_json``) and, for ``rauta observe``, the captured events themselves
  (``event_json``: ``type`` ``http`` or ``connect``) share the stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from rauta.observe.detect import Anomaly
from rauta.observe.events import ConnectEvent, Event, HttpEvent, status_class

ANOMALY_TYPES = ("slow_response", "error_spike", "connect_failure", "resolved")
CONNECT_REASONS = ("refused", "timeout", "failed")


def anomaly_json(a: Anomaly) -> str:
    """One JSON line (no newline) for an anomaly; times in seconds on CLOCK_MONOTONIC."""
    return json.dumps(
        {
            "type": a.type,
            "condition": a.condition,
            "route": a.route,
            "rule": a.rule,
            "backend": a.backend,
            "service": a.service,
            "pod": a.pod,
            "endpoint": a.endpoint,
            "observed": a.observed,
            "baseline": a.baseline,
            "window_start": a.window_start_ns / 1e9,
            "window_end": a.window_end_ns / 1e9,
            "ts": a.ts_ns / 1e9,
        },
        separators=(",", ":"),
    )


def event_json(ev: Event) -> str:
    """One JSON line (no newline) for a captured event; times in seconds on CLOCK_MONOTONIC.

    ``http``: one request paired with its response's status line (``latency`` is from the
    request's first packet to the status line, at the points the source saw them).
    ``connect``: a TCP connect to a watched endpoint (``outcome`` established, refused,
    timeout or failed; ``duration`` from SYN to that outcome).
    """
    if isinstance(ev, ConnectEvent):
        d: dict[str, object] = {
            "type": "connect", "outcome": ev.outcome,
            "client_ip": ev.client.ip, "client_port": ev.client.port,
            "server_ip": ev.server.ip, "server_port": ev.server.port,
            "duration": ev.duration_ns / 1e9, "start": ev.start_ns / 1e9,
            "end": ev.end_ns / 1e9, "service": ev.service, "pod": ev.pod,
        }
    else:
        d = {
            "type": "http", "source": ev.source, "leg": ev.leg,
            "method": ev.method, "path": ev.path, "path_hash": ev.path_hash,
            "path_truncated": ev.path_truncated, "host": ev.host, "status": ev.status,
            "client_ip": ev.client.ip, "client_port": ev.client.port,
            "server_ip": ev.server.ip, "server_port": ev.server.port,
            "latency": ev.latency_ns / 1e9, "start": ev.start_ns / 1e9,
            "end": ev.end_ns / 1e9, "tcp_seq": ev.tcp_seq,
            "route": ev.route, "rule": ev.rule, "backend": ev.backend,
            "service": ev.service, "pod": ev.pod,
        }
    return json.dumps(d, separators=(",", ":"))


class JsonLines:
    """Writes anomalies to a text stream (stdout or an opened file)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, anomalies: Iterable[Anomaly]) -> None:
        for a in anomalies:
            self.stream.write(anomaly_json(a) + "\n")
            self.stream.flush()

    def write_events(self, events: Iterable[Event]) -> None:
        lines = [event_json(e) + "\n" for e in events]
        if lines:
            self.stream.write("".join(lines))
            self.stream.flush()


def export_buckets(bounds: Sequence[float], lo: float = 16e-6, hi: float = 70.0,
                   step: int = 2) -> tuple[int, ...]:
    """Indices of the kernel's bucket bounds exported: every ``step``-th bound within
    [lo, hi] seconds, then the last (+Inf). Cumulative counts at a subset of the bounds
    are exact (no interpolation), and the series per route drop from 33 to 14 for the
    kernel's 32 log2 buckets. Sets of at most 16 bounds are exported whole."""
    if len(bounds) <= 16:
        return tuple(range(len(bounds) + (0 if bounds and bounds[-1] == float("inf") else 1)))
    inner = [i for i, b in enumerate(bounds) if lo <= b <= hi and b != float("inf")][::step]
    return (*inner, len(bounds) - 1 if bounds and bounds[-1] == float("inf") else len(bounds))


class KernelCollector(Collector):
    """Scrape-time view of the kernel source's histograms and per-CPU counters.

    ``histograms()`` maps (route_id, status_class) to bucket counts over ``bounds``
    (upper bounds in seconds, the kernel's log buckets; the last bound may be +Inf, else
    one more count is +Inf). Only the ``export_buckets`` bounds are exposed.
    """

    def __init__(self, histograms: Callable[[], Mapping[tuple[int, int], Sequence[int]]],
                 bounds: Sequence[float], counters: Callable[[], Mapping[str, int]],
                 route_name: Callable[[int], str]) -> None:
        self._hist, self._bounds, self._counters, self._name = (
            histograms, tuple(bounds), counters, route_name)
        self._keep = export_buckets(self._bounds)

    def collect(self):  # type: ignore[no-untyped-def]
        h = HistogramMetricFamily("rauta_observer_kernel_latency_seconds",
                                  "Request latency seen in the kernel, per route",
                                  labels=["route"])
        per_route: dict[str, list[int]] = {}
        for (rid, _sc), counts in self._hist().items():
            acc = per_route.setdefault(self._name(rid), [0] * (len(self._bounds) + 1))
            for i, c in enumerate(counts[: len(acc)]):
                acc[i] += c
        labels = (*("+Inf" if b == float("inf") else str(b) for b in self._bounds), "+Inf")
        for name in sorted(per_route):
            counts = per_route[name]
            cum, cums = 0, []
            for c in counts:
                cum += c
                cums.append(cum)
            buckets = [(labels[i], cums[i]) for i in self._keep if i < len(cums)]
            if buckets[-1][0] != "+Inf":
                buckets.append(("+Inf", cums[-1]))
            h.add_metric([name], buckets, sum_value=None)
        yield h
        cf = CounterMetricFamily("rauta_observer_kernel", "The kernel program's counters",
                                labels=["counter"])
        for k, v in sorted(self._counters().items()):
            cf.add_metric([k], v)
        yield cf


class Metrics:
    """The observer's prometheus-client series in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.anomalies = Counter("rauta_observer_anomalies", "Anomaly events by type",
                                 ["type"], registry=r)
        self.connect_failures = Counter("rauta_observer_connect_failures",
                                        "Failed upstream connects by reason", ["reason"],
                                        registry=r)
        self.lost = Counter("rauta_observer_events_lost", "Events lost by transport",
                            ["transport"], registry=r)
        self.events = Counter("rauta_observer_events", "Events processed by source",
                              ["source"], registry=r)
        self.http = Counter("rauta_observer_http_requests",
                            "Observed HTTP exchanges per route, rule and status class",
                            ["leg", "route", "rule", "status_class"], registry=r)
        self.breakdown = Counter("rauta_observer_latency_breakdown_seconds",
                                 "Summed latency components per route (backend, network, "
                                 "proxy_lag)", ["route", "component"], registry=r)
        for t in ANOMALY_TYPES:
            self.anomalies.labels(t)
        for reason in CONNECT_REASONS:
            self.connect_failures.labels(reason)

    def add_kernel(self, collector: KernelCollector) -> None:
        self.registry.register(collector)

    def record_anomalies(self, anomalies: Iterable[Anomaly]) -> None:
        for a in anomalies:
            self.anomalies.labels(a.type).inc()
            if a.type == "connect_failure":
                reason = a.condition if a.condition in CONNECT_REASONS else "failed"
                self.connect_failures.labels(reason).inc()

    def record_event(self, ev: Event) -> None:
        if isinstance(ev, HttpEvent):
            self.events.labels(ev.source).inc()
            self.http.labels(ev.leg, ev.route, ev.rule, str(status_class(ev.status))).inc()
        else:
            self.events.labels("connect").inc()

    def record_breakdown(self, route: str, parts: Mapping[str, float]) -> None:
        for k, v in parts.items():
            if v > 0:
                self.breakdown.labels(route, k).inc(v)
