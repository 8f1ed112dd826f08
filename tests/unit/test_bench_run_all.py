"""bench/run_all.py: every headline regex finds its figure in the benchmark's own output.

The samples are lines the benchmarks printed on this machine (2026-12-03); a benchmark
whose output format changes without its Step here would report "missing" figures.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import run_all  # noqa: E402

sys.path.remove(str(ROOT / "bench"))

SAMPLES = {
    "file propagation": """\
routes=3000 layout=per-route ready_after_start=4.01s peak_rss=162.6MiB
file write -> traffic over 200 changes (0 timed out after 20s): p50 13.7 ms, p99 23.0 ms, max 24.1 ms
proxy round trip: idle p50 0.57 p99 0.67 ms; while changes propagate p50 0.60 p99 3.82 max 6.8 ms
""",
    "API propagation": """\
[06:22:39] (a) 3000 HTTPRoutes created in 8.00s (375/s, 16 concurrent POSTs)
[06:22:48] (a) all 3000 Accepted (observedGeneration current) 15.76s after the first POST, 7.76s after the last create; Gateway attachedRoutes=3000 at 16.11s
[06:22:50] (a) rauta_status_writes_total delta: Gateway/conflict=1, Gateway/written=5, HTTPRoute/written=3000
[06:22:52] (b) 200 changes propagated (0 timed out after 10.0s): PATCH returned -> first new response p50 6.1 ms, p99 17.5 ms, max 19.4 ms, min 4.0 ms (median 8 proxy polls per change)
[06:22:52] (b) proxy request round trip (the poll itself): idle p50 0.27 p99 0.34 max 0.4 ms; while changes propagate p50 0.42 p99 3.5 max 9.2 ms
[06:22:52] (c) controller peak RSS (VmHWM) 198 MiB with 3000 routes, now 198 MiB
""",
    "streaming": """\
1024 MiB each way, 3 interleaved rounds; proxies on CPU 0, curl and the nginx backend on CPU 1
  rounds of nginx: down MB/s [642, 1357, 1578], up MB/s [570, 703, 1185]
  rounds of rauta: down MB/s [1404, 1777, 1674], up MB/s [627, 574, 724]
nginx: down 1357 MB/s, up 703 MB/s (medians)
rauta: down 1674 MB/s, up 627 MB/s (medians)
rauta / nginx: down 1.23, up 0.89
rauta RSS growth: 0.5 MiB (before 64.1 MiB, peak 64.5 MiB)
""",
    "observer": """\
XDP program: 545 ns/packet on real TCP traffic
floor: ping-pong ratio 0.952 (+1.18 us per round trip), bulk ratio 1.004
hook: ping-pong ratio 0.911 (+2.27 us per round trip), bulk ratio 0.995
hook+consumer: ping-pong ratio 0.886 (+2.85 us per round trip), bulk ratio 0.981
""",
    "throughput, 64 connections": """\
target                       req/s       p99  /direct  /nginx  proxy CPU us/req
direct (baseline)           192369  315.00us     1.00    1.96                 -
nginx proxy (1 worker)       98285    1.10ms     0.51    1.00                10
rauta proxy                  19688    5.75ms     0.10    0.20                51
floor: bare forwarder       101033    0.99ms     0.53    1.03                10
floor: lean forwarder        68136    1.45ms     0.35    0.69                15
""",
    "throughput, 2 workers": """\
target                       req/s       p99  /direct  /nginx  proxy CPU us/req
direct (baseline)            94535    4.29ms     1.00    1.89                 -
nginx proxy (2 workers)      50127    4.45ms     0.53    1.00                20
rauta (2 workers)            12635   16.32ms     0.13    0.25               113
""",
}
SAMPLES["status at scale"] = SAMPLES["API propagation"]
WANT = {
    "file propagation": {"p50_ms": 13.7, "p99_ms": 23.0, "loop_idle_p99_ms": 0.67,
                         "loop_changing_p99_ms": 3.82, "peak_rss_mib": 162.6},
    "API propagation": {"p50_ms": 6.1, "p99_ms": 17.5, "loop_idle_p99_ms": 0.34,
                        "loop_changing_p99_ms": 3.5, "accepted_after_last_create_s": 7.76,
                        "peak_rss_mib": 198.0},
    "streaming": {"down_per_nginx": 1.23, "up_per_nginx": 0.89, "rauta_down_mb_s": 1674.0,
                  "rauta_up_mb_s": 627.0, "rss_growth_mib": 0.5},
    "observer": {"floor_pp_ratio": 0.952, "floor_bulk_ratio": 1.004, "hook_pp_ratio": 0.911,
                 "hook_us_added_per_round_trip": 2.27, "hook_bulk_ratio": 0.995},
    "throughput, 64 connections": {"rauta_rps": 19688.0, "nginx_rps": 98285.0,
                                   "rauta_per_nginx": 0.2, "rauta_cpu_us": 51.0,
                                   "nginx_cpu_us": 10.0, "floor_bare_per_nginx": 1.03,
                                   "floor_lean_per_nginx": 0.69, "floor_bare_cpu_us": 10.0,
                                   "floor_lean_cpu_us": 15.0},
    "throughput, 2 workers": {"rauta_rps": 12635.0, "nginx_rps": 50127.0,
                              "rauta_per_nginx": 0.25, "rauta_cpu_us": 113.0,
                              "nginx_cpu_us": 20.0},
    "status at scale": {"created_s": 8.0, "accepted_after_last_create_s": 7.76,
                        "route_status_writes": 3000.0},
}


@pytest.mark.parametrize("name", sorted(WANT))
def test_each_headline_is_found_in_the_benchmarks_output(name: str) -> None:
    (step,) = [s for s in run_all.STEPS if s.name == name]
    got = {}
    for figure, pattern in step.figures:
        m = re.search(pattern, SAMPLES[name], re.MULTILINE)
        got[figure] = float(m.group(1)) if m else None
    assert {k: got[k] for k in WANT[name]} == WANT[name]
    if name != "observer":  # its sample holds the overhead part only
        assert got == WANT[name]


def test_lab_steps_say_why_they_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_all, "lab_missing", lambda: "not root")
    (step,) = [s for s in run_all.STEPS if s.name == "status at scale"]
    got = run_all.run_step(step)
    assert got["status"] == "skipped: not root"
    assert set(got["figures"].values()) == {None}  # type: ignore[union-attr]
