"""Footprint of ``rauta serve`` with many routes: peak RSS and metric series per route.

Role: issue 10, goal 9. Generates N HTTPRoutes (default 5,000) spread over K namespaces
(default 50), each namespace with its own Service and EndpointSlice and a ReferenceGrant-
free same-namespace backend, all attached to one Gateway in namespace ``gw`` whose
listener allows routes from every namespace. Runs ``rauta serve`` on them as a
subprocess on loopback, sends one request per route (every route then has its metric
series), scrapes ``/metrics`` and reports:
- the peak RSS (VmHWM) and current RSS of the serve process (goal: <= 250 MB);
- metric series per route: every sample line that carries ``route="ns/name"`` of a
  route, histogram buckets included, max and mean over the routes (goal: <= 10);
- the total number of series.

Rules: loopback only; bounded (``--timeout`` overall; N requests, 64 at a time); the
serve process and the echo backend are stopped on exit; files go to a temp directory
that is removed.

    python bench/bench_footprint.py [--routes 5000] [--namespaces 50]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
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

ROUTE_LABEL = re.compile(r'route="([^"]*)"')


def objects(routes: int, namespaces: int, port: int, backend_port: int) -> list[dict]:
    out: list[dict] = [
        {"kind": "GatewayClass", "metadata": {"name": "rauta"},
         "spec": {"controllerName": "rauta.io/gateway-controller"}},
        {"kind": "Gateway", "metadata": {"name": "gw", "namespace": "gw"},
         "spec": {"gatewayClassName": "rauta", "listeners": [
             {"name": "http", "port": port, "protocol": "HTTP",
              "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
    ]
    for k in range(namespaces):
        ns = f"team-{k:02d}"
        out.append({"kind": "Namespace", "metadata": {"name": ns}})
        out.append({"kind": "Service", "metadata": {"name": "web", "namespace": ns},
                    "spec": {"ports": [{"name": "http", "port": 80}]}})
        out.append({"kind": "EndpointSlice", "addressType": "IPv4",
                    "metadata": {"name": "web", "namespace": ns,
                                 "labels": {"kubernetes.io/service-name": "web"}},
                    "ports": [{"name": "http", "port": backend_port}],
                    "endpoints": [{"addresses": ["127.0.0.2"], "conditions": {"ready": True}}]})
    for i in range(routes):
        ns = f"team-{i % namespaces:02d}"
        out.append({"kind": "HTTPRoute", "metadata": {"name": f"r{i}", "namespace": ns},
                    "spec": {"parentRefs": [{"name": "gw", "namespace": "gw"}],
                             "hostnames": [f"h{i}.example.com"],
                             "rules": [{"matches": [{"path": {"type": "PathPrefix",
                                                              "value": "/api"}}],
                                        "backendRefs": [{"name": "web", "port": 80}]}]}})
    return out


def rss_mib(pid: int) -> tuple[float, float]:
    got: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            got[key] = int(value.split()[0]) / 1024
    return got.get("VmHWM", float("nan")), got.get("VmRSS", float("nan"))


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--routes", type=int, default=5000)
    ap.add_argument("--namespaces", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    port, admin, bport = free_port(), free_port(), free_port()
    echo = EchoBackend("web", "127.0.0.2", bport)
    await echo.start()
    work = Path(tempfile.mkdtemp(prefix="rauta-footprint-"))
    (work / "all.yaml").write_text(
        yaml.safe_dump_all(objects(args.routes, args.namespaces, port, bport)))
    proc = subprocess.Popen([sys.executable, "-m", "rauta.cli", "serve", "--config", str(work),
                             "--admin", f"127.0.0.1:{admin}"], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + args.timeout
    try:
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64)) as s:
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
            url = f"http://127.0.0.1:{port}/api/x"
            sem = asyncio.Semaphore(64)
            codes: collections.Counter[int] = collections.Counter()

            async def one(i: int) -> None:
                async with sem, s.get(url, headers={"Host": f"h{i}.example.com"}) as r:
                    await r.read()
                    codes[r.status] += 1

            await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(args.routes))),
                                   max(1.0, deadline - time.monotonic()))
            async with s.get(f"http://127.0.0.1:{admin}/metrics") as r:
                text = await r.text()
        peak, now = rss_mib(proc.pid)
        per_route: collections.Counter[str] = collections.Counter()
        total = 0
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            total += 1
            m = ROUTE_LABEL.search(line)
            if m and m.group(1):
                per_route[m.group(1)] += 1
        counts = list(per_route.values()) or [0]
        print(f"routes={args.routes} namespaces={args.namespaces} answers={dict(codes)}")
        print(f"peak RSS {peak:.1f} MiB, RSS now {now:.1f} MiB (goal <= 250 MB)")
        print(f"series per route: max {max(counts)}, mean {sum(counts) / len(counts):.1f} "
              f"over {len(per_route)} routes (goal <= 10); total series {total}")
        return 0 if codes.get(200) == args.routes else 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        await echo.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
