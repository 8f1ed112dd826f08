"""``make bench``: every benchmark of ``bench/`` in one bounded run, one results file.

Role: run each benchmark as a child process (each runs its anchors side by side itself:
nginx for the proxy, the 1-route figure for routing cost, pure Python for the Maglev
accelerator), keep its whole output, pick out the headline figures with the regexes
below, and write ``bench/results/<UTC date>-<time>.json`` plus a Markdown table next to
it (``.md``), which the README's performance section copies.

Rules:
- Bounded: every child has a timeout (``STEPS``); a child that fails or times out is
  recorded as such (with its output tail) and the run goes on; the exit code is 1 when
  any step failed.
- Loopback only, as each benchmark is. The lab steps (API propagation, status at scale)
  run only when the lab binaries are built and we are root; otherwise their status says
  why they were skipped (a skip is not a failure).
- Figures are never invented: a headline whose regex does not match is reported as
  missing, with the output kept in the JSON for a human to read.
- The machine's description (CPU model, cores, load average before and after) goes into
  the results, since absolute figures on a shared 2-core machine move by ±25 %.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Step:
    name: str
    goal: str
    argv: tuple[str, ...]
    timeout: float
    # headline name -> regex with one group (a number), searched in the output
    figures: tuple[tuple[str, str], ...]
    needs_lab: bool = False  # the real-API-server lab: built binaries, and root


def lab_missing() -> str | None:
    """Why the lab steps cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "not root"
    sys.path.insert(0, str(ROOT))
    try:
        from tests.e2e.lab import _lab_dir_complete, default_cache_dir
    finally:
        sys.path.remove(str(ROOT))
    where = default_cache_dir()
    return None if _lab_dir_complete(where) else f"lab not built in {where} (make lab)"


STEPS: tuple[Step, ...] = (
    Step("maglev", "build <= 10 ms at N=1000, M=65537; loop stall <= 5 ms",
         ("bench/bench_maglev.py",), 300,
         (("build_ms_c", r"N= 1000 equal weights\s+([\d.]+) ms /"),
          ("build_ms_pure", r"N= 1000 equal weights\s+[\d.]+ ms /\s+([\d.]+) ms"),
          ("stall_worst_ms_c", r"C\s+worst\s+([\d.]+) ms"))),
    Step("routing cost", "5,000 routes within 10 % of 1 route (CPU per request)",
         ("bench/bench_hotpath.py", "--routes", "1,5000", "--rounds", "3",
          "--requests", "20000"), 900,
         (("cpu_us_1_route", r"^\s+1 routes\s+median\s+([\d.]+)"),
          ("cpu_us_5000_routes", r"^\s+5000 routes\s+median\s+([\d.]+)"),
          ("ratio", r"5000 / 1 routes: ([\d.]+)"))),
    Step("throughput, 64 connections", "rauta/nginx >= 0.8 req/s, p99 <= 1.5x nginx",
         ("bench/bench_proxy.py", "--duration", "5", "--rounds", "3", "--connections", "64",
          "--floor"),
         900,
         (("rauta_rps", r"^rauta proxy\s+(\d+)"), ("nginx_rps", r"^nginx proxy \(1 worker\)\s+(\d+)"),
          ("rauta_per_nginx", r"^rauta proxy\s+\d+\s+\S+\s+[\d.]+\s+([\d.]+)"),
          ("rauta_cpu_us", r"^rauta proxy\s+\d+\s+\S+\s+[\d.]+\s+[\d.]+\s+(\d+)"),
          ("nginx_cpu_us", r"^nginx proxy \(1 worker\)\s+\d+\s+\S+\s+[\d.]+\s+[\d.]+\s+(\d+)"),
          # bench/floor: what a Python data plane starts from (no HTTP work / the least)
          ("floor_bare_per_nginx", r"^floor: bare forwarder\s+\d+\s+\S+\s+[\d.]+\s+([\d.]+)"),
          ("floor_lean_per_nginx", r"^floor: lean forwarder\s+\d+\s+\S+\s+[\d.]+\s+([\d.]+)"),
          ("floor_bare_cpu_us",
           r"^floor: bare forwarder\s+\d+\s+\S+\s+[\d.]+\s+[\d.]+\s+(\d+)"),
          ("floor_lean_cpu_us",
           r"^floor: lean forwarder\s+\d+\s+\S+\s+[\d.]+\s+[\d.]+\s+(\d+)"))),
    Step("throughput, 256 connections", "rauta/nginx >= 0.8 req/s, p99 <= 1.5x nginx",
         ("bench/bench_proxy.py", "--duration", "5", "--rounds", "3", "--connections", "256"),
         900,
         (("rauta_rps", r"^rauta proxy\s+(\d+)"), ("nginx_rps", r"^nginx proxy \(1 worker\)\s+(\d+)"),
          ("rauta_per_nginx", r"^rauta proxy\s+\d+\s+\S+\s+[\d.]+\s+([\d.]+)"),
          ("rauta_cpu_us", r"^rauta proxy\s+\d+\s+\S+\s+[\d.]+\s+[\d.]+\s+(\d+)"))),
    Step("throughput, 2 workers", "rauta --workers 2 / nginx worker_processes 2 >= 0.8 req/s",
         ("bench/bench_proxy.py", "--duration", "5", "--rounds", "3", "--connections", "64",
          "--workers", "2"), 900,
         (("rauta_rps", r"^rauta \(2 workers\)\s+(\d+)"),
          ("nginx_rps", r"^nginx proxy \(2 workers\)\s+(\d+)"),
          ("rauta_per_nginx", r"^rauta \(2 workers\)\s+\d+\s+\S+\s+[\d.]+\s+([\d.]+)"),
          ("rauta_cpu_us", r"^rauta \(2 workers\)\s+\d+\s+\S+\s+[\d.]+\s+[\d.]+\s+(\d+)"),
          ("nginx_cpu_us",
           r"^nginx proxy \(2 workers\)\s+\d+\s+\S+\s+[\d.]+\s+[\d.]+\s+(\d+)"))),
    Step("streaming", "1 GiB each way: rauta >= 0.5x nginx's throughput, RSS growth < 20 MB",
         ("bench/bench_stream.py", "--mib", "1024", "--rounds", "3"), 900,
         (("down_per_nginx", r"^rauta / nginx: down ([\d.]+)"),
          ("up_per_nginx", r"^rauta / nginx: down [\d.]+, up ([\d.]+)"),
          ("rauta_down_mb_s", r"^rauta: down (\d+) MB/s"),
          ("rauta_up_mb_s", r"^rauta: down \d+ MB/s, up (\d+) MB/s"),
          ("rss_growth_mib", r"^rauta RSS growth: ([\d.]+) MiB"))),
    Step("footprint", "5,000 routes in 50 namespaces: RSS <= 250 MB, <= 10 series per route",
         ("bench/bench_footprint.py",), 600,
         (("peak_rss_mib", r"peak RSS ([\d.]+) MiB"),
          ("series_per_route_max", r"series per route: max (\d+)"))),
    Step("churn", "50 changes/s for 60 s under load: 0 non-2xx, 0 connection errors",
         ("bench/bench_churn.py",), 300,
         (("requests", r"^requests (\d+)"), ("non_2xx", r"non-2xx (\d+)"),
          ("connection_errors", r"connection errors (\d+)"),
          ("changes", r"changes written (\d+)"))),
    Step("observer", "compile+load+attach <= 3 s; >= 100k events/s, 0 lost (perf, 5 s); "
         "histogram = requests; attached/none >= 0.95 ping-pong, >= 0.75 bulk (root + BPF)",
         ("bench/bench_observer.py",), 600,
         (("startup_ring_s", r"startup \(compile\+load\+attach\): ring ([\d.]+) s"),
          ("startup_perf_s", r"startup \(compile\+load\+attach\): ring [\d.]+ s, perf ([\d.]+) s"),
          ("ring_events_per_s", r"^ring: (\d+) events/s"),
          ("ring_lost", r"^ring: .*?lost (\d+)/"),
          ("perf_events_per_s", r"^perf: (\d+) events/s"),
          ("perf_lost", r"^perf: .*?lost (\d+)/"),
          ("perf_histogram", r"^perf: .*?histogram (\d+) = paired"),
          ("perf_paired", r"^perf: .*?= paired (\d+)"),
          ("floor_pp_ratio", r"^floor: ping-pong ratio ([\d.]+)"),
          ("floor_bulk_ratio", r"^floor: .*?bulk ratio ([\d.]+)"),
          ("hook_pp_ratio", r"^hook: ping-pong ratio ([\d.]+)"),
          ("hook_us_added_per_round_trip", r"^hook: ping-pong ratio [\d.]+ \(\+([\d.]+) us"),
          ("hook_bulk_ratio", r"^hook: .*?bulk ratio ([\d.]+)"),
          ("series_at_1000_routes", r"series at 1,000 routes: (\d+)"))),
    Step("file propagation", "3,000 routes: file write -> traffic p99 <= 30 ms over 200 "
         "changes; serving loop p99 within 5 ms of idle",
         ("bench/bench_routes.py", "--routes", "3000", "--changes", "200", "--layout",
          "per-route"), 600,
         (("p50_ms", r"file write -> traffic over .*?p50 ([\d.]+) ms"),
          ("p99_ms", r"file write -> traffic over .*?p99 ([\d.]+) ms"),
          ("loop_idle_p99_ms", r"proxy round trip: idle p50 [\d.]+ p99 ([\d.]+)"),
          ("loop_changing_p99_ms", r"while changes propagate p50 [\d.]+ p99 ([\d.]+)"),
          ("peak_rss_mib", r"peak_rss=([\d.]+)MiB"))),
    Step("API propagation", "3,000 routes in the lab: API write -> traffic p99 <= 30 ms over "
         "200 changes; serving loop p99 within 5 ms of idle (root + lab)",
         ("bench/bench_propagation.py", "--routes", "3000", "--changes", "200"), 900,
         (("p50_ms", r"\(b\) .*?first new response p50 ([\d.]+) ms"),
          ("p99_ms", r"\(b\) .*?first new response p50 [\d.]+ ms, p99 ([\d.]+) ms"),
          ("loop_idle_p99_ms", r"round trip .*?idle p50 [\d.]+ p99 ([\d.]+)"),
          ("loop_changing_p99_ms", r"while changes propagate p50 [\d.]+ p99 ([\d.]+)"),
          ("accepted_after_last_create_s", r"\(a\) all .*?, ([\d.]+)s after the last create"),
          ("peak_rss_mib", r"\(c\) controller peak RSS \(VmHWM\) (\d+) MiB")), needs_lab=True),
    Step("status at scale", "1,000 routes created in the lab: all Accepted <= 1 s after the "
         "last create, one status write each (root + lab)",
         ("bench/bench_propagation.py", "--routes", "1000", "--changes", "5"), 600,
         (("created_s", r"\(a\) \d+ HTTPRoutes created in ([\d.]+)s"),
          ("accepted_after_last_create_s", r"\(a\) all .*?, ([\d.]+)s after the last create"),
          ("route_status_writes", r"HTTPRoute/written=(\d+)")), needs_lab=True),
)


def machine() -> dict[str, object]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def run_step(step: Step) -> dict[str, object]:
    t0 = time.monotonic()
    why = lab_missing() if step.needs_lab else None
    if why is not None:
        return {"name": step.name, "goal": step.goal, "argv": list(step.argv),
                "status": f"skipped: {why}", "seconds": 0.0,
                "figures": {name: None for name, _ in step.figures}, "output": ""}
    try:
        proc = subprocess.run([sys.executable, *step.argv], cwd=ROOT, capture_output=True,
                              text=True, timeout=step.timeout)
        out, status = proc.stdout + proc.stderr, ("ok" if proc.returncode == 0
                                                  else f"exit {proc.returncode}")
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        status = f"timeout after {step.timeout:.0f} s"
    figures: dict[str, float | None] = {}
    for name, pattern in step.figures:
        m = re.search(pattern, out, re.MULTILINE)
        figures[name] = float(m.group(1)) if m else None
    return {"name": step.name, "goal": step.goal, "argv": list(step.argv), "status": status,
            "seconds": round(time.monotonic() - t0, 1), "figures": figures, "output": out}


def markdown(results: dict[str, object]) -> str:
    mach = results["machine"]
    assert isinstance(mach, dict)
    lines = [f"Benchmarks of {results['date']} on {mach['cores']} cores ({mach['cpu']}), "
             f"Python {mach['python']}, load average before {mach['loadavg']}:", "",
             "| benchmark | goal | status | figures |", "|---|---|---|---|"]
    for step in results["steps"]:  # type: ignore[attr-defined]
        figs = ", ".join(f"{k} {'missing' if v is None else f'{v:g}'}"
                         for k, v in step["figures"].items())
        lines.append(f"| {step['name']} | {step['goal']} | {step['status']} | {figs} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated step names (default: all)")
    args = ap.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%MZ")
    results: dict[str, object] = {"date": stamp, "machine": machine(), "steps": []}
    failed = False
    for step in STEPS:
        if only and step.name not in only:
            continue
        print(f"bench: {step.name} ...", flush=True)
        got = run_step(step)
        failed |= not (got["status"] == "ok" or str(got["status"]).startswith("skipped"))
        results["steps"].append(got)  # type: ignore[attr-defined]
        print(f"bench: {step.name}: {got['status']} in {got['seconds']} s: {got['figures']}",
              flush=True)
    results["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stamp}.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / f"{stamp}.md").write_text(markdown(results))
    print(markdown(results))
    print(f"bench: wrote {RESULTS.relative_to(ROOT)}/{stamp}.json and .md")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
