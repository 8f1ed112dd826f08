"""Peak RSS and propagation with many HTTPRoutes loaded into ``rauta serve``.

Generates N HTTPRoutes (default 1,000; each with its own hostname, two rules and a
Service/EndpointSlice pair), runs ``rauta serve`` on them as a subprocess on loopback, waits
for /readyz, sends a few requests, then edits one route and measures how long until traffic
follows the edit (file write → first request answered by the new backend). Prints the peak
RSS (VmHWM) of the serve process. Bounded: gives up after --timeout seconds.

    python bench/bench_routes.py [--routes 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


def objects(n: int, port: int, backend_port: int, target: str = "a") -> list[dict]:
    out: list[dict] = [
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
    for i in range(n):
        svc = "svc-" + (target if i == 0 else "a")
        out.append({"kind": "HTTPRoute", "metadata": {"name": f"r{i}", "namespace": "default"},
                    "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [f"h{i}.example.com"],
                             "rules": [
                                 {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                                  "backendRefs": [{"name": svc, "port": 80}]},
                                 {"backendRefs": [{"name": svc, "port": 80}]}]}})
    return out


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--routes", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    port, admin, bport = free_port(), free_port(), free_port()
    backends = [EchoBackend("a", "127.0.0.2", bport), EchoBackend("b", "127.0.0.3", bport)]
    for b in backends:
        await b.start()
    work = Path(tempfile.mkdtemp(prefix="rauta-bench-"))
    cfg = work / "all.yaml"
    cfg.write_text(yaml.safe_dump_all(objects(args.routes, port, bport)))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "rauta.cli", "serve", "--config", str(work),
                             "--admin", f"127.0.0.1:{admin}"], stderr=subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as s:
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
            for i in (0, args.routes // 2, args.routes - 1):
                async with s.get(url, headers={"Host": f"h{i}.example.com"}) as r:
                    assert r.status == 200, r.status
            # Propagation: point route r0 at svc-b and time until traffic follows.
            t1 = time.perf_counter()
            cfg.write_text(yaml.safe_dump_all(objects(args.routes, port, bport, target="b")))
            while time.monotonic() < deadline:
                async with s.get(url, headers={"Host": "h0.example.com"}) as r:
                    if r.headers.get("x-backend") == "b":
                        break
            propagated = time.perf_counter() - t1
        rss = vm_hwm_mib(proc.pid)
        print(f"routes={args.routes} ready_after_start={ready:.2f}s "
              f"file_edit_to_traffic={propagated * 1000:.0f}ms (includes YAML re-read of all "
              f"objects and the watchfiles debounce) peak_rss={rss:.1f}MiB")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        print(f"serve exit code after SIGTERM: {code}")
        for b in backends:
            await b.stop()
        for f in work.iterdir():
            f.unlink()
        os.rmdir(work)


if __name__ == "__main__":
    asyncio.run(main())
