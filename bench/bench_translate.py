"""Translation time per change: full ``translate`` against ``incremental.update``.

Builds N HTTPRoutes (default 1,000 and 3,000; each with its own hostname, two rules and
its own Service + EndpointSlice, all on one Gateway listener), then makes M changes
(default 200), each one of: a route edited (its backend flipped), a Service port edited,
an EndpointSlice's endpoints edited. For each change it times ``incremental.update`` (from
the previous state) and, for the first ``--full`` changes, a full ``translate`` of the
same snapshot, and checks both give the same Translation. Prints p50/p99 per kind.
In-process and pure: no sockets, no files.

    python bench/bench_translate.py [--routes 1000 3000] [--changes 200] [--full 20]
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rauta.model import incremental  # noqa: E402
from rauta.model.resources import parse_object  # noqa: E402
from rauta.model.snapshot import Snapshot, key_of  # noqa: E402
from rauta.model.translate import translate  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


def service(i: int, port: int = 80) -> dict[str, Any]:
    return {"kind": "Service", "metadata": {"name": f"svc{i}", "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": port, "targetPort": 8080}]}}


def eslice(i: int, addr: str = "10.0.0.1") -> dict[str, Any]:
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"svc{i}-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": f"svc{i}"}},
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": [addr], "conditions": {"ready": True}}]}


def route(i: int, svc: int) -> dict[str, Any]:
    ref = [{"name": f"svc{svc}", "port": 80}]
    return {"kind": "HTTPRoute", "metadata": {"name": f"r{i}", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [f"h{i}.example.com"],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                                "backendRefs": ref}, {"backendRefs": ref}]}}


def world(n: int) -> dict[tuple[str, str, str], Any]:
    raws: list[dict[str, Any]] = [
        {"kind": "GatewayClass", "metadata": {"name": "rauta"},
         "spec": {"controllerName": "rauta.io/gateway-controller"}},
        {"kind": "Gateway", "metadata": {"name": "gw", "namespace": "default"},
         "spec": {"gatewayClassName": "rauta",
                  "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}]
    for i in range(n):
        raws += [service(i), eslice(i), route(i, i)]
    return {key_of(o): o for o in map(parse_object, raws)}


def run(n: int, changes: int, full_checks: int) -> None:
    objs = world(n)
    snap = Snapshot(objs)
    t = time.perf_counter()
    state = incremental.start(snap)
    start_ms = (time.perf_counter() - t) * 1000
    gc.freeze()  # as the reconciler does after growth (full collections are not measured)
    rng = random.Random(11)
    inc: dict[str, list[float]] = {"route": [], "service": [], "endpointslice": []}
    full: list[float] = []
    for k in range(changes):
        i = rng.randrange(n)
        kind = ("route", "service", "endpointslice")[k % 3]
        raw = (route(i, rng.randrange(n)) if kind == "route" else
               service(i, rng.choice((80, 81))) if kind == "service" else
               eslice(i, f"10.0.{k % 250}.{1 + k % 200}"))
        obj = parse_object(raw)
        snap = snap.updated({key_of(obj): obj})
        t = time.perf_counter()
        state = incremental.update(state, snap, [key_of(obj)])
        inc[kind].append((time.perf_counter() - t) * 1000)
        if k < full_checks:
            t = time.perf_counter()
            reference = translate(snap)
            full.append((time.perf_counter() - t) * 1000)
            assert reference == state.translation, "incremental != full translation"
    print(f"routes={n}: start {start_ms:.0f} ms; full translate p50 {pct(full, 0.5):.1f} ms "
          f"p99 {pct(full, 0.99):.1f} ms ({len(full)} runs, each equal to the incremental one)")
    for kind, values in inc.items():
        print(f"  incremental update, {kind:13s} changed: p50 {pct(values, 0.5):.2f} ms "
              f"p99 {pct(values, 0.99):.2f} ms max {max(values):.2f} ms ({len(values)} changes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--routes", type=int, nargs="+", default=[1000, 3000])
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--full", type=int, default=20, help="full translations to compare")
    args = ap.parse_args()
    for n in args.routes:
        run(n, args.changes, args.full)


if __name__ == "__main__":
    main()
