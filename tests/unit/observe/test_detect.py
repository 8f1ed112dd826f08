"""Detector tests: stationary traffic is quiet; steps fire exactly once and resolve once."""

from __future__ import annotations

import math
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rauta.observe.detect import Detector, DetectorSettings
from rauta.observe.events import ConnectEvent, Endpoint, HttpEvent

W = 10_000_000_000
C = Endpoint("10.0.0.1", 40000)
S = Endpoint("10.0.1.5", 8080)


def ev(t: int, lat_s: float, status: int = 200) -> HttpEvent:
    return HttpEvent(
        source="proxy", leg="upstream", client=C, server=S, method="GET", path="/",
        path_hash=0, path_truncated=False, status=status, start_ns=t - int(lat_s * 1e9),
        end_ns=t, route="ns/r", rule="0", backend="ns/svc:80", service="ns/svc",
    )


def traffic(rng: random.Random, windows: int, per: int, median: float, sigma: float,
            err_every: int, scale=lambda w: 1.0, err=lambda w: None):
    out = []
    k = 0
    for w in range(windows):
        for i in range(per):
            t = w * W + (i + 1) * (W // (per + 1))
            lat = median * scale(w) * math.exp(rng.gauss(0.0, sigma))
            every = err(w) or err_every
            k += 1
            out.append(ev(t, lat, 503 if every and k % every == 0 else 200))
    return out


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    median=st.floats(0.0005, 0.5),
    sigma=st.floats(0.0, 0.3),
    err_every=st.sampled_from([0, 10, 20, 50, 100]),
)
def test_stationary_traffic_is_quiet(seed, median, sigma, err_every):
    d = Detector(DetectorSettings(min_window=50, min_samples=100))
    out = d.observe_all(traffic(random.Random(seed), 8, 60, median, sigma, err_every))
    out += d.flush()
    assert out == []


def test_latency_step_fires_once_and_resolves_once():
    d = Detector()
    rng = random.Random(1)
    step = traffic(rng, 12, 100, 0.01, 0.1, 0, scale=lambda w: 3.0 if 5 <= w < 8 else 1.0)
    out = d.observe_all(step) + d.flush()
    assert [(a.type, a.condition) for a in out] == [("slow_response", ""), ("resolved", "slow_response")]
    slow, res = out
    assert slow.window_start_ns == 5 * W  # within the first anomalous window
    assert res.window_start_ns == 8 * W
    assert slow.observed > 2 * slow.baseline and slow.service == "ns/svc"


def test_error_step_fires_once_and_resolves_once():
    d = Detector()
    step = traffic(random.Random(2), 12, 100, 0.01, 0.1, 100, err=lambda w: 5 if 5 <= w < 7 else None)
    out = d.observe_all(step) + d.flush()
    assert [(a.type, a.condition) for a in out] == [("error_spike", ""), ("resolved", "error_spike")]
    assert out[0].window_start_ns == 5 * W and out[1].window_start_ns == 7 * W
    assert out[0].observed >= 0.2 and out[0].baseline <= 0.011


def test_zero_to_one_error_does_not_fire():
    d = Detector()
    evs = traffic(random.Random(3), 6, 100, 0.01, 0.1, 0)
    evs.append(ev(6 * W + 5, 0.01, 500))
    evs += [ev(6 * W + 10 + i, 0.01) for i in range(100)]
    assert d.observe_all(evs) + d.flush() == []


def test_warmup_suppresses_early_windows():
    d = Detector()
    evs = traffic(random.Random(4), 2, 100, 0.01, 0.1, 0, scale=lambda w: 5.0 if w == 1 else 1.0)
    assert d.observe_all(evs) + d.flush() == []


def test_connect_failure_names_service_and_endpoint():
    d = Detector()
    out = d.observe(ConnectEvent(C, S, "refused", 100, 200, service="ns/svc", pod="ns/p-1"))
    out += d.observe(ConnectEvent(C, S, "timeout", 300, 300 + 10**9, service="ns/svc"))
    out += d.observe(ConnectEvent(C, S, "established", 400, 500))
    assert [(a.type, a.condition, a.service, a.endpoint) for a in out] == [
        ("connect_failure", "refused", "ns/svc", "10.0.1.5:8080"),
        ("connect_failure", "timeout", "ns/svc", "10.0.1.5:8080"),
    ]
    assert out[0].pod == "ns/p-1"
