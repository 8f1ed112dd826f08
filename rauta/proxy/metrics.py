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
- The per-request series (``rauta_requests_total`` and both duration histograms) are
  plain local counters, folded into prometheus-client families only when the registry is
  scraped (``_RequestCollector``, a custom Collector): the hot path is one dictionary
  look-up, one increment and two bucket increments, with no lock and no prometheus-client
  call. The exported names, types, labels, buckets, series order and values are exactly
  those the prometheus-client ``Counter``/``Histogram`` gave (a test compares the two).
  The cells of a label tuple are cached per (port, route, rule index, backend, code
  class), and the cache is dropped when the rule names change; the series stay.
- Everything else (connections, connect errors, gauges, config applies, mirrors) is
  rare and stays a prometheus-client metric.
- ``rauta_build_info{version, python}`` is 1: which rauta a Prometheus is scraping.
"""

from __future__ import annotations

import platform
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from importlib import metadata

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


_REQUESTS = ("rauta_requests", "HTTP requests answered by the proxy",
             ("port", "route", "rule", "backend", "code"))
_DURATION = ("rauta_request_duration_seconds",
             "Time from a request's headers to the end of its response, per route "
             "(coarse buckets; rauta_port_request_duration_seconds has fine ones)",
             ("port", "route"))
_PORT_DURATION = ("rauta_port_request_duration_seconds",
                  "Time from a request's headers to the end of its response, per listener port",
                  ("port", "code"))

# One histogram's cell: a count per bucket of ``bounds`` (the last one +Inf), then the sum.
Cell = list[float]


class _HistogramCells:
    """The plain counters of one labelled histogram, exported as prometheus-client does."""

    def __init__(self, name: str, doc: str, labels: tuple[str, ...],
                 bounds: tuple[float, ...]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.bounds = bounds  # finite upper bounds; a value above all goes to +Inf
        self.les = [*(floatToGoString(b) for b in bounds), "+Inf"]  # type: ignore[no-untyped-call]
        self.cells: dict[tuple[str, ...], Cell] = {}

    def cell(self, key: tuple[str, ...]) -> Cell:
        cell = self.cells.get(key)
        if cell is None:
            cell = [0.0] * (len(self.bounds) + 2)
            self.cells[key] = cell
        return cell

    def family(self) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, cell in list(self.cells.items()):  # a snapshot: the loop may add series
            acc = 0.0
            buckets: list[tuple[str, float]] = []
            for le, n in zip(self.les, cell[:-1], strict=True):
                acc += n
                buckets.append((le, acc))
            fam.add_metric(key, buckets, cell[-1])
        return fam


class _RequestCollector(Collector):
    """``rauta_requests_total`` and the two request-duration histograms, from plain cells."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, ...], list[float]] = {}
        self.duration = _HistogramCells(*_DURATION, ROUTE_BUCKETS)
        self.port_duration = _HistogramCells(*_PORT_DURATION, PORT_BUCKETS)

    def count_cell(self, key: tuple[str, ...]) -> list[float]:
        cell = self.requests.get(key)
        if cell is None:
            cell = [0.0]
            self.requests[key] = cell
        return cell

    def _families(self, samples: bool) -> Iterator[Metric]:
        name, doc, labels = _REQUESTS
        fam = CounterMetricFamily(name, doc, labels=labels)
        if samples:
            for key, cell in list(self.requests.items()):
                fam.add_metric(key, cell[0])
        yield fam
        if samples:
            yield self.duration.family()
            yield self.port_duration.family()
        else:
            for h in (self.duration, self.port_duration):
                yield HistogramMetricFamily(h.name, h.doc, labels=h.labels)

    def collect(self) -> Iterable[Metric]:
        return list(self._families(True))

    def describe(self) -> Iterable[Metric]:
        """The family names, so the registry refuses a second collector of them."""
        return list(self._families(False))


class ProxyMetrics:
    """All data-plane metrics, bound to one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.request_cells = _RequestCollector()
        r.register(self.request_cells)  # first, where the three metrics always were
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
        self._req_cells: dict[tuple[int, str, int, str, int],
                              tuple[list[float], Cell, Cell]] = {}
        self._backend_children: dict[tuple[str, str], Counter] = {}
        self._active_children: dict[int, Gauge] = {}

    def observe_request(self, port: int, route: str, rule: int, backend: str, status: int,
                        seconds: float) -> None:
        """Count one answered request and record its duration."""
        key = (port, route, rule, backend, status // 100)
        cells = self._req_cells.get(key)
        if cells is None:
            cells = self._cells(key, status)
        cells[0][0] += 1.0
        route_cell = cells[1]
        route_cell[bisect_left(ROUTE_BUCKETS, seconds)] += 1
        route_cell[-1] += seconds
        port_cell = cells[2]
        port_cell[bisect_left(PORT_BUCKETS, seconds)] += 1
        port_cell[-1] += seconds

    def _cells(self, key: tuple[int, str, int, str, int],
               status: int) -> tuple[list[float], Cell, Cell]:
        port, route, rule, backend, _ = key
        code = code_class(status)
        rule_label = (self._rule_names.get((route, rule)) or str(rule)) if rule >= 0 else ""
        rc = self.request_cells
        cells = (rc.count_cell((str(port), route, rule_label, backend, code)),
                 rc.duration.cell((str(port), route)),
                 rc.port_duration.cell((str(port), code)))
        if len(self._req_cells) > 10_000:
            self._req_cells.clear()
        self._req_cells[key] = cells
        return cells

    def set_rule_names(self, names: dict[tuple[str, int], str]) -> None:
        """The ``name`` of each named rule, by (route, rule index), of the applied config."""
        if names != self._rule_names:
            self._rule_names = names
            self._req_cells.clear()

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
