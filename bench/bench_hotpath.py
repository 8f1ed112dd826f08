"""CPU time of rauta's per-request Python path, without sockets, side by side.

Role: push one keep-alive GET and its 200 response through a real ``ClientConnection``
and a pooled ``UpstreamConnection`` whose transports are in-memory fakes, N times, and
report the process CPU µs per request. No kernel, no load generator and no other
process is involved, so the figure moves far less between runs than req/s over
loopback (``bench_proxy.py``); it is the measure for "does this change slow the common
path". ``--compare-with DIR`` runs the same loop on another checkout (``git worktree add
DIR COMMIT``) in alternating child processes and reports the ratio of the medians.
``--routes 1,5000`` runs it with 1 and with 5,000 routes on the listener (distinct
hostnames; the request matches the last one, the worst case of a linear scan), in
alternating children, and reports the ratio (goal: within 10 %). ``--timeout-ms MS`` gives
the route a request timeout (``timeouts.request``), so each request arms and cancels one.

Rules: in-process and bounded (``--requests`` per round, ``--rounds`` rounds); the
child imports ``rauta`` from ``PYTHONPATH`` only, so each side measures its own code.

Usage: ``.venv/bin/python bench/bench_hotpath.py [--requests 50000] [--rounds 5]
[--compare-with /tmp/rauta-base] [--routes 1,5000] [--timeout-ms 30000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUEST = b"GET /api/items?id=7 HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: bench\r\n\r\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Wed, 02 Dec 2026 03:30:00 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")


class FakeTransport(asyncio.Transport):
    """Collects writes; reports a peer address; never blocks."""

    def __init__(self, peer: tuple[str, int]) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.peer = peer
        self.closing = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.out.append(data)

    def writelines(self, parts) -> None:  # type: ignore[no-untyped-def, override]
        self.out.extend(parts)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.peer if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def child(requests: int, routes: int = 1, timeout_ms: int = 0) -> float:
    from prometheus_client import CollectorRegistry

    from rauta.model.config import (
        Backend,
        Endpoint,
        ListenerRoutes,
        Match,
        PathMatch,
        PortConfig,
        RouterConfig,
        Rule,
        Timeouts,
    )
    from rauta.proxy import Proxy
    from rauta.proxy.server import ClientConnection
    from rauta.proxy.upstream import UpstreamConnection

    proxy = Proxy(registry=CollectorRegistry())
    eps = (Endpoint(address="127.0.0.1", port=9),)
    backends = (Backend(name="bench/svc:80", weight=1, endpoints=eps),)
    match = Match(path=PathMatch(type="PathPrefix", value="/api"))
    timeouts = Timeouts(request_ms=timeout_ms or None)
    rules = [Rule(route=f"bench/r{i}", rule_index=0, match_index=0,
                  hostname=f"h{i}.example.com", match=match, backends=backends)
             for i in range(routes - 1)]
    rules.append(Rule(route="bench/r", rule_index=0, match_index=0,
                      hostname="shop.example.com" if routes > 1 else "", match=match,
                      backends=backends, timeouts=timeouts))
    port = 18999
    cfg = RouterConfig(ports=(PortConfig(port=port, protocol="HTTP", listeners=(
        ListenerRoutes(gateway="bench/gw", listener="http", hostname="",
                       rules=tuple(rules)),)),))
    await proxy.apply(cfg)
    listener = proxy.listener(port)
    assert listener is not None, "port 18999 must be free"
    up = UpstreamConnection(proxy.pool, ("127.0.0.1", 9))
    up_t = FakeTransport(("127.0.0.1", 9))
    up.connection_made(up_t)
    proxy.pool.release(up)
    client = ClientConnection(listener)
    client_t = FakeTransport(("127.0.0.1", 5555))
    client.connection_made(client_t)

    def one() -> None:
        client.data_received(REQUEST)
        up.data_received(RESPONSE)

    for _ in range(2000):  # warm up, and check the path really forwards
        one()
    assert b"".join(client_t.out[-3:]).endswith(b"ok"), client_t.out[-3:]
    gc.collect()
    gc.freeze()
    client_t.out.clear()
    up_t.out.clear()
    t0 = time.process_time()
    for i in range(requests):
        one()
        if i % 1000 == 0:
            client_t.out.clear()
            up_t.out.clear()
    used = time.process_time() - t0
    await proxy.close(0.0)
    return used / requests * 1e6


def run_child(checkout: Path, requests: int, routes: int = 1, timeout_ms: int = 0) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child",
                          "--requests", str(requests), "--routes", str(routes),
                          "--timeout-ms", str(timeout_ms)],
                         env=env, cwd="/", check=True,
                         capture_output=True, text=True, timeout=600).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--compare-with", type=Path, default=None)
    ap.add_argument("--routes", default="1",
                    help="route counts, comma-separated (e.g. 1,5000: ratio of the two)")
    ap.add_argument("--timeout-ms", type=int, default=0,
                    help="a request timeout on the matched route (0: none)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(f"{asyncio.run(child(args.requests, int(args.routes), args.timeout_ms)):.3f}")
        return
    counts = [int(n) for n in args.routes.split(",")]
    if len(counts) > 1:
        if args.compare_with is not None:
            ap.error("--routes with several counts and --compare-with: run them separately")
        per: dict[int, list[float]] = {n: [] for n in counts}
        for _ in range(max(1, args.rounds)):
            for n in counts:
                per[n].append(run_child(ROOT, args.requests, n, args.timeout_ms))
        print(f"per-request Python path by route count, {args.requests} requests x "
              f"{args.rounds} rounds (CPU us per request)")
        for n, values in per.items():
            print(f"  {n:>6} routes  median {statistics.median(values):7.2f}   rounds "
                  f"{[round(v, 1) for v in values]}")
        base = statistics.median(per[counts[0]])
        for n in counts[1:]:
            print(f"  {n} / {counts[0]} routes: {statistics.median(per[n]) / base:.3f} "
                  "(CPU per request; goal <= 1.10)")
        return
    sides = {"rauta": ROOT}
    if args.compare_with is not None:
        sides[f"compared ({args.compare_with.name})"] = args.compare_with.resolve()
    runs: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(max(1, args.rounds)):
        for name, checkout in sides.items():
            runs[name].append(run_child(checkout, args.requests, counts[0], args.timeout_ms))
    print(f"per-request Python path, {args.requests} requests x {args.rounds} rounds "
          "(CPU us per request, in-memory transports"
          + (f", route timeout {args.timeout_ms} ms)" if args.timeout_ms else ")"))
    for name, values in runs.items():
        print(f"  {name:<28} median {statistics.median(values):7.2f}   rounds "
              f"{[round(v, 1) for v in values]}")
    if args.compare_with is not None:
        new, old = (statistics.median(v) for v in runs.values())
        print(f"  rauta / compared: {new / old:.3f}")


if __name__ == "__main__":
    main()
