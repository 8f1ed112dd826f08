"""Prometheus metrics of the data plane.

Role: the proxy's counters, gauges and histograms, all named ``rauta_*`` and registered in
a ``CollectorRegistry`` passed in by the caller (a fresh private one when none is given),
never in the process-global registry, so tests and several proxies in one process stay
isolated.

Rules:
- Labels are bounded by the configuration, never by traffic: listener ``port``, ``route``
  ("namespace/name", "" when no route matched), ``rule`` (the rule's ``name`` when it has
  one, else its index; "" when none),
  ``backend`` (the backend name "namespace/service:port", "" when none) and ``code``
  (the status class "1xx".."5xx"). No path, host, client address or raw status code.
- Series per route stay at 10 or fewer, histogram buckets included, so thousands of
  routes do not blow up a Prometheus (``bench/bench_footprint.py`` counts them): a route
  has ``rauta_requests_total`` per (rule, backend, code class) it served, and one
  ``rauta_request_duration_seconds`` histogram of ``ROUTE_BUCKETS`` (5 bounds: 6 bucket
  series + sum + count). The fine-grained latency histogram (``PORT_BUCKETS``) is per
  listener port, ``rauta_port_request_duration_seconds``. No ``_created`` series
  (``disable_created_metrics``: they double every counter for a timestamp nobody graphs).
- The hot path costs two dictionary look-ups and three child updates: labelled children
  are cached per label tuple (dropped when the rule names change).
- ``rauta_build_info{version, python}`` is 1: which rauta a Prometheus is scraping.
"""

from __future__ import annotations

import platform
from importlib import metadata

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

prometheus_client.disable_created_metrics()

PORT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0, 10.0, 30.0)
ROUTE_BUCKETS = (0.005, 0.025, 0.1, 0.5, 2.5)
_BUCKETS = PORT_BUCKETS
_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


def version() -> str:
    """rauta's installed version ("unknown" when run from a tree without metadata)."""
    try:
        return metadata.version("rauta")
    except metadata.PackageNotFoundError:
        return "unknown"


def code_class(status: int) -> str:
    """"2xx" for 200..299 and so on; anything outside 100..599 counts as "5xx"."""
    return _CLASSES.get(status // 100, "5xx")


class ProxyMetrics:
    """All data-plane metrics, bound to one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "rauta_requests", "HTTP requests answered by the proxy",
            ["port", "route", "rule", "backend", "code"], registry=r)
        self.duration = Histogram(
            "rauta_request_duration_seconds",
            "Time from a request's headers to the end of its response, per route "
            "(coarse buckets; rauta_port_request_duration_seconds has fine ones)",
            ["port", "route"], buckets=ROUTE_BUCKETS, registry=r)
        self.port_duration = Histogram(
            "rauta_port_request_duration_seconds",
            "Time from a request's headers to the end of its response, per listener port",
            ["port", "code"], buckets=PORT_BUCKETS, registry=r)
        self.connect_errors = Counter(
            "rauta_upstream_connect_errors",
            "Failed connection attempts to backend endpoints", ["backend"], registry=r)
        self.upstream_connections = Counter(
            "rauta_upstream_connections_opened",
            "Connections opened to backend endpoints", ["backend"], registry=r)
        self.active = Gauge(
            "rauta_active_connections", "Open client connections", ["port"], registry=r)
        self.generation = Gauge(
            "rauta_config_generation", "Number of configurations applied", registry=r)
        self.apply_duration = Histogram(
            "rauta_config_apply_duration_seconds", "Time to apply one configuration",
            buckets=_BUCKETS, registry=r)
        self.mirrors = Counter(
            "rauta_mirror_requests", "Mirrored requests by outcome",
            ["outcome"], registry=r)
        self.build_info = Gauge(
            "rauta_build_info", "The running rauta: version and Python version (always 1)",
            ["version", "python"], registry=r)
        self.build_info.labels(version(), platform.python_version()).set(1)
        self._rule_names: dict[tuple[str, int], str] = {}
        self._req_children: dict[tuple[int, str, int, str, int],
                                 tuple[Counter, Histogram, Histogram]] = {}
        self._backend_children: dict[tuple[str, str], Counter] = {}
        self._active_children: dict[int, Gauge] = {}

    def observe_request(self, port: int, route: str, rule: int, backend: str, status: int,
                        seconds: float) -> None:
        """Count one answered request and record its duration."""
        cls = status // 100
        key = (port, route, rule, backend, cls)
        children = self._req_children.get(key)
        if children is None:
            code = code_class(status)
            rule_label = (self._rule_names.get((route, rule)) or str(rule)) if rule >= 0 else ""
            children = (
                self.requests.labels(str(port), route, rule_label, backend, code),
                self.duration.labels(str(port), route),
                self.port_duration.labels(str(port), code),
            )
            if len(self._req_children) > 10_000:
                self._req_children.clear()
            self._req_children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        children[2].observe(seconds)

    def set_rule_names(self, names: dict[tuple[str, int], str]) -> None:
        """The ``name`` of each named rule, by (route, rule index), of the applied config."""
        if names != self._rule_names:
            self._rule_names = names
            self._req_children.clear()

    def connect_error(self, backend: str) -> None:
        self._backend(self.connect_errors, "err", backend).inc()

    def connection_opened(self, backend: str) -> None:
        self._backend(self.upstream_connections, "open", backend).inc()

    def _backend(self, metric: Counter, kind: str, backend: str) -> Counter:
        child = self._backend_children.get((kind, backend))
        if child is None:
            child = metric.labels(backend)
            self._backend_children[(kind, backend)] = child
        return child

    def active_connections(self, port: int) -> Gauge:
        child = self._active_children.get(port)
        if child is None:
            child = self.active.labels(str(port))
            self._active_children[port] = child
        return child

    def mirror(self, outcome: str) -> None:
        """Count one mirror attempt: "sent", "dropped" (too many in flight) or "failed"."""
        self.mirrors.labels(outcome).inc()
