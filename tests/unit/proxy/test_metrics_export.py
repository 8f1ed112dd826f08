"""The data plane's scrape text is what prometheus-client's own metrics would export.

Role: ``rauta.proxy.metrics`` keeps the per-request series (``rauta_requests_total`` and
the two request-duration histograms) in plain local cells and folds them into
prometheus-client families only when scraped. These tests feed the same observations to
``ProxyMetrics`` and to a reference built here from prometheus-client's ``Counter`` and
``Histogram`` alone (the metric layout rauta always had: names, help texts, labels,
buckets, registration order), then compare the whole ``generate_latest`` text, line for
line: same families, same series in the same order, same values.

Rules: the reference never imports ``rauta.proxy.metrics`` beyond the class under test
and its bucket constants are written out here, not imported; observations include
values exactly on bucket bounds, above the last bound, zero, unnamed and named rules,
a rule-name change mid-way, no route (rule -1) and out-of-range status codes.
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from rauta.proxy.metrics import ProxyMetrics, version

PORT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0, 10.0, 30.0)
ROUTE_BUCKETS = (0.005, 0.025, 0.1, 0.5, 2.5)
CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


class Reference:
    """The metrics as prometheus-client Counter/Histogram objects, updated per request."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("rauta_requests", "HTTP requests answered by the proxy",
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
        Counter("rauta_upstream_connections_opened",
                "Connections opened to backend endpoints", ["backend"], registry=r)
        self.active = Gauge("rauta_active_connections", "Open client connections", ["port"],
                            registry=r)
        Gauge("rauta_config_generation", "Number of configurations applied", registry=r)
        Histogram("rauta_config_apply_duration_seconds", "Time to apply one configuration",
                  buckets=PORT_BUCKETS, registry=r)
        Counter("rauta_mirror_requests", "Mirrored requests by outcome", ["outcome"],
                registry=r)
        Gauge("rauta_build_info", "The running rauta: version and Python version (always 1)",
              ["version", "python"], registry=r).labels(version(),
                                                        platform.python_version()).set(1)
        self.names: dict[tuple[str, int], str] = {}

    def observe(self, port: int, route: str, rule: int, backend: str, status: int,
                seconds: float) -> None:
        code = CLASSES.get(status // 100, "5xx")
        label = (self.names.get((route, rule)) or str(rule)) if rule >= 0 else ""
        self.requests.labels(str(port), route, label, backend, code).inc()
        self.duration.labels(str(port), route).observe(seconds)
        self.port_duration.labels(str(port), code).observe(seconds)


OBSERVATIONS = [
    (8080, "default/a", 0, "default/svc:80", 200, 0.0003),
    (8080, "default/a", 0, "default/svc:80", 200, 0.005),  # exactly on a bound of both
    (8080, "default/a", 0, "default/svc:80", 204, 0.0005),
    (8080, "default/a", 1, "default/svc:80", 503, 0.025),
    (8080, "default/b", 0, "default/other:8080", 404, 31.0),  # above every bound
    (8080, "", -1, "", 404, 0.0),  # no route matched
    (8443, "default/a", 0, "default/svc:80", 301, 2.5),
    (8443, "default/a", 0, "default/svc:80", 600, 0.1),  # out of range: 5xx
    (8443, "default/a", 0, "default/svc:80", 99, 0.25),
    (8080, "default/a", 0, "default/svc:80", 200, 1e-7),
]


def feed(metrics: ProxyMetrics, ref: Reference, rows: list[tuple]) -> None:  # type: ignore[type-arg]
    for row in rows:
        metrics.observe_request(*row)
        ref.observe(*row)


def text(registry: CollectorRegistry) -> list[str]:
    return generate_latest(registry).decode().splitlines()


def test_scrape_text_equals_prometheus_client_metrics() -> None:
    metrics, ref = ProxyMetrics(), Reference()
    assert text(metrics.registry) == text(ref.registry)  # nothing observed yet
    feed(metrics, ref, OBSERVATIONS * 3)
    metrics.connect_error("default/svc:80")
    ref.connect_errors.labels("default/svc:80").inc()
    metrics.active_connections(8080).inc()
    ref.active.labels("8080").inc()
    got, want = text(metrics.registry), text(ref.registry)
    assert [line for line in got if line not in want] == []
    assert got == want
    assert sum(1 for line in got if line.startswith("rauta_requests_total{")) == 6


def test_rule_names_change_keeps_series_and_labels_new_ones() -> None:
    metrics, ref = ProxyMetrics(), Reference()
    feed(metrics, ref, OBSERVATIONS[:4])
    names = {("default/a", 1): "checkout"}
    metrics.set_rule_names(names)
    ref.names = names
    feed(metrics, ref, OBSERVATIONS)
    got = text(metrics.registry)
    assert got == text(ref.registry)
    assert any('rule="checkout"' in line for line in got)
    assert any('rule="1"' in line for line in got)  # the series counted before the rename


def test_sample_values_are_read_by_registry_lookups() -> None:
    metrics = ProxyMetrics()
    metrics.observe_request(80, "ns/r", 2, "ns/s:80", 200, 0.003)
    metrics.observe_request(80, "ns/r", 2, "ns/s:80", 201, 0.2)
    reg = metrics.registry
    labels = {"port": "80", "route": "ns/r", "rule": "2", "backend": "ns/s:80", "code": "2xx"}
    assert reg.get_sample_value("rauta_requests_total", labels) == 2.0
    hist = {"port": "80", "route": "ns/r"}
    assert reg.get_sample_value("rauta_request_duration_seconds_count", hist) == 2.0
    assert reg.get_sample_value("rauta_request_duration_seconds_bucket",
                                {**hist, "le": "0.005"}) == 1.0
    assert reg.get_sample_value("rauta_request_duration_seconds_bucket",
                                {**hist, "le": "0.5"}) == 2.0
    assert reg.get_sample_value("rauta_request_duration_seconds_sum", hist) == 0.003 + 0.2


def test_a_second_collector_of_the_same_names_is_refused() -> None:
    reg = CollectorRegistry()
    ProxyMetrics(reg)
    try:
        Counter("rauta_requests", "again", registry=reg)
    except ValueError as exc:
        assert "rauta_requests" in str(exc)
    else:
        raise AssertionError("a duplicate rauta_requests was registered")
