"""Churn: routes and endpoints change 50 times per second under constant load.

Role: issue 10, goal 6 (zero-drop reconfiguration). ``rauta serve`` runs on a config
directory with N HTTPRoutes (default 100) over two Services whose EndpointSlices point
at live echo backends. For ``--seconds`` (default 60) a writer applies ``--rate``
(default 50) changes per second, alternating:
- a route change: one route's backendRef flips between the two Services;
- an endpoint change: one Service's EndpointSlice swaps between two live backends, or
  grows to both and shrinks back;
each written atomically (a temporary file renamed over the object's own file, the way
the README tells users to write config). Meanwhile ``--concurrency`` keep-alive clients
(default 32) send requests round-robin over the routes as fast as they can.

Reports requests, non-2xx answers, connection errors, changes applied, and how many
changes traffic visibly followed (a route answered by the Service it was just flipped
to). Goal: 0 non-2xx and 0 connection errors. Exit code 1 when either is not 0.

Rules: loopback only; bounded (``--seconds`` plus start-up and drain timeouts); every
child process and backend is stopped on exit; the temp directory is removed.

    python bench/bench_churn.py [--routes 100] [--rate 50] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rauta.echo import EchoBackend  # noqa: E402
from rauta.scenario import free_port  # noqa: E402

ADDRS = {"a1": "127.0.0.2", "a2": "127.0.0.3", "b1": "127.0.0.4", "b2": "127.0.0.5"}


def write(path: Path, docs: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump_all(docs))
    os.replace(tmp, path)


def route_doc(i: int, svc: str) -> dict:
    return {"kind": "HTTPRoute", "metadata": {"name": f"r{i}", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [f"h{i}.example.com"],
                     "rules": [{"backendRefs": [{"name": svc, "port": 80}]}]}}


def slice_doc(svc: str, names: list[str], port: int) -> list[dict]:
    return [{"kind": "Service", "metadata": {"name": svc, "namespace": "default"},
             "spec": {"ports": [{"name": "http", "port": 80}]}},
            {"kind": "EndpointSlice", "addressType": "IPv4",
             "metadata": {"name": svc, "namespace": "default",
                          "labels": {"kubernetes.io/service-name": svc}},
             "ports": [{"name": "http", "port": port}],
             "endpoints": [{"addresses": [ADDRS[n]], "conditions": {"ready": True}}
                           for n in names]}]


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--routes", type=int, default=100)
    ap.add_argument("--rate", type=float, default=50.0, help="changes per second")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    port, admin, bport = free_port(), free_port(), free_port()
    backends = [EchoBackend(name, addr, bport) for name, addr in ADDRS.items()]
    for b in backends:
        await b.start()
    work = Path(tempfile.mkdtemp(prefix="rauta-churn-"))
    write(work / "gateway.yaml", [
        {"kind": "GatewayClass", "metadata": {"name": "rauta"},
         "spec": {"controllerName": "rauta.io/gateway-controller"}},
        {"kind": "Gateway", "metadata": {"name": "gw", "namespace": "default"},
         "spec": {"gatewayClassName": "rauta",
                  "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]}}])
    slices = {"svc-a": ["a1"], "svc-b": ["b1"]}
    for svc, names in slices.items():
        write(work / f"{svc}.yaml", slice_doc(svc, names, bport))
    target = {i: ("svc-a" if i % 2 == 0 else "svc-b") for i in range(args.routes)}
    for i, svc in target.items():
        write(work / f"route-{i}.yaml", [route_doc(i, svc)])
    proc = subprocess.Popen([sys.executable, "-m", "rauta.cli", "serve", "--config", str(work),
                             "--admin", f"127.0.0.1:{admin}"], stderr=subprocess.DEVNULL)
    stats: collections.Counter[str] = collections.Counter()
    followed: dict[int, float] = {}  # route -> time it was flipped, until traffic follows
    try:
        async with aiohttp.ClientSession() as s:
            deadline = time.monotonic() + 60
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError("rauta serve did not become ready")
                try:
                    async with s.get(f"http://127.0.0.1:{admin}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        stop = time.monotonic() + args.seconds
        url = f"http://127.0.0.1:{port}/x"

        async def client(k: int) -> None:
            async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=1, force_close=False)) as cs:
                i = k
                while time.monotonic() < stop:
                    i = (i + args.concurrency) % args.routes
                    try:
                        async with cs.get(url, headers={"Host": f"h{i}.example.com"}) as r:
                            await r.read()
                            stats["requests"] += 1
                            if not 200 <= r.status < 300:
                                stats[f"status {r.status}"] += 1
                                stats["non_2xx"] += 1
                            elif i in followed and r.headers.get("x-backend", "")[:1] == \
                                    target[i][-1]:
                                del followed[i]
                                stats["changes_followed"] += 1
                    except (TimeoutError, aiohttp.ClientError) as exc:
                        stats["connection_errors"] += 1
                        stats[f"error {type(exc).__name__}"] += 1

        async def writer() -> None:
            n = 0
            period = 1.0 / args.rate
            next_at = time.monotonic()
            while time.monotonic() < stop:
                if n % 2 == 0:
                    i = (n // 2 * 7) % args.routes
                    target[i] = "svc-b" if target[i] == "svc-a" else "svc-a"
                    await asyncio.to_thread(write, work / f"route-{i}.yaml",
                                            [route_doc(i, target[i])])
                    followed[i] = time.monotonic()
                    stats["route_changes"] += 1
                else:
                    svc = "svc-a" if (n // 2) % 2 == 0 else "svc-b"
                    x = svc[-1]
                    cycle = [[f"{x}1"], [f"{x}1", f"{x}2"], [f"{x}2"], [f"{x}2", f"{x}1"]]
                    slices[svc] = cycle[(n // 4) % 4]
                    await asyncio.to_thread(write, work / f"{svc}.yaml",
                                            slice_doc(svc, slices[svc], bport))
                    stats["endpoint_changes"] += 1
                n += 1
                next_at += period
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        await asyncio.wait_for(asyncio.gather(writer(), *(client(k) for k in
                                                          range(args.concurrency))),
                               args.seconds + 60)
        changes = stats["route_changes"] + stats["endpoint_changes"]
        print(f"routes={args.routes} rate={args.rate}/s seconds={args.seconds} "
              f"concurrency={args.concurrency}")
        print(f"requests {stats['requests']} ({stats['requests'] / args.seconds:.0f}/s), "
              f"non-2xx {stats['non_2xx']}, connection errors {stats['connection_errors']}")
        print(f"changes written {changes} ({changes / args.seconds:.1f}/s: "
              f"{stats['route_changes']} route, {stats['endpoint_changes']} endpoint); "
              f"route flips seen in traffic {stats['changes_followed']}")
        extra = {k: v for k, v in stats.items() if k.startswith(("status ", "error "))}
        if extra:
            print(f"details: {extra}")
        return 0 if stats["non_2xx"] == 0 and stats["connection_errors"] == 0 else 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        for b in backends:
            await b.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
