"""Peak RSS and file-driven propagation with many HTTPRoutes loaded into ``rauta serve``.

Generates N HTTPRoutes (default 1,000; each with its own hostname and two rules) pointing
at one of two Service/EndpointSlice pairs, runs ``rauta serve`` on them as a subprocess on
loopback, waits for /readyz, sends a few requests, then makes M changes (default 1): each
points one random route at the other Service and measures the time from the file write to
the first request answered by the new backend (polled in a tight keep-alive loop). Prints
p50/p99/max over the changes, the proxy round trip of the polls while idle and while
changes propagate, and the peak RSS (VmHWM) of the serve process.

``--layout one-file`` (the default, the original shape) keeps every object in one file, so
each change rewrites (and rauta re-reads) all of them; ``--layout per-route`` gives each
route its own file, so a change touches one small file among N.

Bounded: gives up after --timeout seconds overall and --change-timeout per change.

    python bench/bench_routes.py [--routes 1000] [--changes 200] [--layout per-route]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rauta.echo import EchoBackend  # noqa: E402
from rauta.scenario import free_port  # noqa: E402


def base_objects(port: int, backend_port: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"kind": "GatewayClass", "metadata": {"name": "rauta"},
         "spec": {"controllerName": "rauta.io/gateway-controller"}},
        {"kind": "Gateway", "metadata": {"name": "gw", "namespace": "default"},
         "spec": {"gatewayClassName": "rauta", "listeners": [
             {"name": "http", "port": port, "protocol": "HTTP"}]}},
    ]
    for name, addr in (("a", "127.0.0.2"), ("b", "127.0.0.3")):
        out.append({"kind": "Service", "metadata": {"name": f"svc-{name}", "namespace": "default"},
                    "spec": {"ports": [{"name": "http", "port": 80}]}})
        out.append({"kind": "EndpointSlice", "addressType": "IPv4",
                    "metadata": {"name": f"svc-{name}", "namespace": "default",
                                 "labels": {"kubernetes.io/service-name": f"svc-{name}"}},
                    "ports": [{"name": "http", "port": backend_port}],
                    "endpoints": [{"addresses": [addr], "conditions": {"ready": True}}]})
    return out


def route(i: int, target: str) -> dict[str, Any]:
    svc = f"svc-{target}"
    return {"kind": "HTTPRoute", "metadata": {"name": f"r{i}", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [f"h{i}.example.com"],
                     "rules": [
                         {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                          "backendRefs": [{"name": svc, "port": 80}]},
                         {"backendRefs": [{"name": svc, "port": 80}]}]}}


def objects(n: int, port: int, backend_port: int, target: str = "a") -> list[dict[str, Any]]:
    """Every object, route r0 pointing at ``svc-{target}`` and the others at svc-a."""
    return [*base_objects(port, backend_port),
            *(route(i, target if i == 0 else "a") for i in range(n))]


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


class Files:
    """Writes the objects in the chosen layout; ``change`` returns a ready-to-run writer."""

    def __init__(self, work: Path, layout: str, n: int, port: int, bport: int) -> None:
        self.work, self.layout, self.n = work, layout, n
        self.port, self.bport = port, bport
        self.targets = ["a"] * n
        if layout == "one-file":
            (work / "all.yaml").write_text(yaml.safe_dump_all(objects(n, port, bport)))
        else:
            (work / "routes").mkdir()
            (work / "base.yaml").write_text(yaml.safe_dump_all(base_objects(port, bport)))
            for i in range(n):
                self._route_file(i).write_text(yaml.safe_dump(route(i, "a")))

    def _route_file(self, i: int) -> Path:
        return self.work / "routes" / f"r{i}.yaml"

    def change(self, i: int) -> tuple[str, Path, str]:
        """Flip route i to the other Service: (new backend, file, its new text)."""
        self.targets[i] = "b" if self.targets[i] == "a" else "a"
        if self.layout == "one-file":
            objs = [*base_objects(self.port, self.bport),
                    *(route(k, t) for k, t in enumerate(self.targets))]
            return self.targets[i], self.work / "all.yaml", yaml.safe_dump_all(objs)
        return self.targets[i], self._route_file(i), yaml.safe_dump(route(i, self.targets[i]))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--routes", type=int, default=1000)
    ap.add_argument("--changes", type=int, default=1)
    ap.add_argument("--layout", choices=("one-file", "per-route"), default="one-file")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--change-timeout", type=float, default=20)
    args = ap.parse_args()
    port, admin, bport = free_port(), free_port(), free_port()
    backends = [EchoBackend("a", "127.0.0.2", bport), EchoBackend("b", "127.0.0.3", bport)]
    for b in backends:
        await b.start()
    work = Path(tempfile.mkdtemp(prefix="rauta-bench-"))
    files = Files(work, args.layout, args.routes, port, bport)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "rauta.cli", "serve", "--config", str(work),
                             "--admin", f"127.0.0.1:{admin}"], stderr=subprocess.DEVNULL)
    try:
        conn = aiohttp.TCPConnector(limit=1, force_close=False)
        async with aiohttp.ClientSession(connector=conn) as s:
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                try:
                    async with s.get(f"http://127.0.0.1:{admin}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            ready = time.perf_counter() - t0
            url = f"http://127.0.0.1:{port}/api/x"

            async def backend(i: int) -> str:
                async with s.get(url, headers={"Host": f"h{i}.example.com"}) as r:
                    await r.read()
                    return r.headers.get("x-backend", f"<{r.status}>")

            for i in (0, args.routes // 2, args.routes - 1):
                assert await backend(i) == "a"
            idle: list[float] = []
            for k in range(300):
                t = time.perf_counter()
                await backend(k % args.routes)
                idle.append((time.perf_counter() - t) * 1000)
            rng = random.Random(7)
            latencies: list[float] = []
            rtts: list[float] = []
            timeouts = 0
            for _ in range(args.changes):
                if time.monotonic() > deadline:
                    break
                i = rng.randrange(args.routes)
                want, path, text = files.change(i)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(text)
                t1 = time.perf_counter()
                os.replace(tmp, path)  # one atomic write, as editors and kubectl cp do
                while True:
                    t_req = time.perf_counter()
                    got = await backend(i)
                    t = time.perf_counter()
                    rtts.append((t - t_req) * 1000)
                    if got == want:
                        latencies.append((t - t1) * 1000)
                        break
                    if t - t1 > args.change_timeout:
                        timeouts += 1
                        break
        rss = vm_hwm_mib(proc.pid)
        print(f"routes={args.routes} layout={args.layout} ready_after_start={ready:.2f}s "
              f"peak_rss={rss:.1f}MiB")
        if latencies:
            print(f"file write -> traffic over {len(latencies)} changes ({timeouts} timed out "
                  f"after {args.change_timeout}s): p50 {pct(latencies, 0.5):.1f} ms, "
                  f"p99 {pct(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms")
            print(f"proxy round trip: idle p50 {pct(idle, 0.5):.2f} p99 {pct(idle, 0.99):.2f} "
                  f"ms; while changes propagate p50 {pct(rtts, 0.5):.2f} "
                  f"p99 {pct(rtts, 0.99):.2f} max {max(rtts):.1f} ms")
        else:
            print(f"no change propagated ({timeouts} timed out)")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        print(f"serve exit code after SIGTERM: {code}")
        for b in backends:
            await b.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
