"""Outputs: JSON-line fields, bounded Prometheus series, the kernel collector, the pipeline."""

from __future__ import annotations

import io
import json
import random

from prometheus_client import generate_latest

from rauta.model.config import (
    Backend,
    ListenerRoutes,
    Match,
    PathMatch,
    PortConfig,
    RouterConfig,
    Rule,
)
from rauta.model.config import (
    Endpoint as MEndpoint,
)
from rauta.observe.detect import Anomaly
from rauta.observe.events import ConnectEvent, Endpoint, HttpEvent
from rauta.observe.output import JsonLines, Metrics
from rauta.observe.pipeline import Pipeline

FIELDS = {"type", "condition", "route", "rule", "backend", "service", "pod", "endpoint",
          "observed", "baseline", "window_start", "window_end", "ts"}


def series(text: bytes, name: str) -> list[str]:
    return [ln for ln in text.decode().splitlines() if ln.startswith(name + "{")]


def test_json_lines_carry_every_field():
    buf = io.StringIO()
    a = Anomaly("slow_response", "ns/r", "0", "ns/s:80", "ns/s", "ns/p", 0.3, 0.1,
                10_000_000_000, 20_000_000_000, 20_000_000_000)
    JsonLines(buf).write([a, a])
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    obj = json.loads(lines[0])
    assert set(obj) == FIELDS
    assert (obj["type"], obj["route"], obj["observed"], obj["baseline"], obj["window_start"],
            obj["window_end"]) == ("slow_response", "ns/r", 0.3, 0.1, 10.0, 20.0)


class FakeKernel:
    def __init__(self) -> None:
        self.watched: dict = {}
        self.flows: list = []
        self.queue: list = []
        self.lost = 0

    def watch(self, endpoints):
        self.watched = dict(endpoints)

    def set_flow_route(self, c, s, rid):
        self.flows.append((c, s, rid))

    def poll(self, timeout_ms):
        q, self.queue = self.queue, []
        return q

    def counters(self):
        return {"requests": 7, "lost_ringbuf": self.lost}

    def histograms(self):
        return {(1, 2): [1, 2, 0, 1], (1, 5): [0, 1, 0, 0], (2, 2): [3, 0, 0, 0]}

    def close(self):
        pass


def cfg(n_rules: int) -> RouterConfig:
    rules = tuple(Rule(route=f"ns/r{i}", rule_index=0, match_index=0, hostname="",
                       match=Match(path=PathMatch(type="PathPrefix", value=f"/p{i}")),
                       backends=(Backend(name=f"ns/s{i}:80", weight=1,
                                         endpoints=(MEndpoint(address=f"10.1.0.{i}", port=80),)),))
                  for i in range(n_rules))
    lr = ListenerRoutes(gateway="gw/gw", listener="l", hostname="", rules=rules)
    return RouterConfig(ports=(PortConfig(port=80, protocol="HTTP", listeners=(lr,)),))


def test_series_bounded_by_rules_and_status_classes_with_10000_paths():
    rng = random.Random(5)
    k = FakeKernel()
    pipe = Pipeline("xdp", config=cfg(4), kernel=k, bucket_bounds=(0.001, 0.01, 0.1))
    pipe.update_config(cfg(4))
    assert set(k.watched) == {Endpoint(f"10.1.0.{i}", 80) for i in range(4)}
    evs = []
    for j in range(10_000):
        i = rng.randrange(4)
        path = f"/p{i}/{j}/{rng.random()}"
        evs.append(HttpEvent(source="xdp", leg="downstream", client=Endpoint("1.2.3.4", 1000 + j),
                             server=Endpoint("10.0.0.1", 80), method="GET", path=path,
                             path_hash=0, path_truncated=False,
                             status=rng.choice([200, 404, 503]), start_ns=j, end_ns=j + 10))
    k.queue = evs
    pipe.step()
    text = generate_latest(pipe.metrics.registry)
    http = series(text, "rauta_observer_http_requests_total")
    assert 0 < len(http) <= 4 * 5
    assert b"/p0/" not in text
    buckets = series(text, "rauta_observer_kernel_latency_seconds_bucket")
    assert len(buckets) == 2 * 4  # two routes × (3 bounds + Inf), status classes summed
    assert 'rauta_observer_kernel_latency_seconds_bucket{le="+Inf",route="ns/r0"} 5.0' in text.decode()
    assert 'rauta_observer_kernel_total{counter="requests"} 7.0' in text.decode()


def test_pipeline_counts_lost_events_and_connect_failures():
    k = FakeKernel()
    pipe = Pipeline("both", config=cfg(2), kernel=k)
    k.lost = 3
    k.queue = [ConnectEvent(Endpoint("10.0.0.1", 5), Endpoint("10.1.0.1", 80), "refused", 1, 2)]
    out = pipe.step()
    assert [(a.type, a.condition, a.service) for a in out] == [("connect_failure", "refused", "ns/s1")]
    k.lost = 5
    pipe.step()
    text = generate_latest(pipe.metrics.registry).decode()
    assert 'rauta_observer_events_lost_total{transport="ringbuf"} 5.0' in text
    assert 'rauta_observer_connect_failures_total{reason="refused"} 1.0' in text
    assert 'rauta_observer_anomalies_total{type="connect_failure"} 1.0' in text
    assert 'rauta_observer_anomalies_total{type="slow_response"} 0.0' in text


def test_metrics_names_match_the_alert_rules():
    text = generate_latest(Metrics().registry).decode()
    for name in ("rauta_observer_anomalies_total", "rauta_observer_connect_failures_total"):
        assert name in text


def test_kernel_histogram_exports_a_subset_of_its_bounds_exactly():
    from rauta.observe.decode import NBUCKETS, bucket_bounds
    from rauta.observe.output import KernelCollector, export_buckets

    counts = [i % 3 for i in range(NBUCKETS)]  # bucket i holds i % 3 exchanges
    kc = KernelCollector(lambda: {(1, 2): counts}, bucket_bounds(), lambda: {}, lambda r: "ns/r")
    (h, _c) = list(kc.collect())
    got = {s.labels["le"]: s.value for s in h.samples if s.name.endswith("_bucket")}
    keep = export_buckets(bucket_bounds())
    assert len(got) == len(keep) == 13
    assert got["+Inf"] == sum(counts)
    for i in keep[:-1]:
        assert got[str(bucket_bounds()[i])] == sum(counts[: i + 1])
