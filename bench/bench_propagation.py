"""Route propagation through a real API server: ``rauta controller`` with 1,000 HTTPRoutes.

Starts its own lab (etcd + kube-apiserver + kube-controller-manager on loopback, see
``tests/e2e/lab.py``) unless ``--kubeconfig`` is given, runs ``rauta controller`` as a
subprocess with its own GatewayClass/controllerName, namespace, Lease and listener port,
and measures:

(a) creating N HTTPRoutes (default 1,000; each with its own hostname and one RequestRedirect
    rule, so no backend is needed: the redirect's Location names the route's version) and
    the time until every one has Accepted=True with observedGeneration == generation (and
    the Gateway counts them), from the first POST and from the last create returning,
    followed with one watch (a LIST confirms it once); the status writes the controller made
    (``rauta_status_writes_total``) and the status PUT/GET requests the API server served
    (``apiserver_request_total``, when its /metrics is readable);
(b) propagation latency over M changes (default 200): for each, the time from the PATCH
    returning to the first response through the proxy that shows the new version (the
    proxy is polled on loopback in a tight keep-alive loop, bounded per change);
    p50/p99/max in ms;
(c) the controller's peak RSS (VmHWM).

Everything binds loopback; the whole run is bounded by ``--timeout``; what was created is
deleted and every process started here is stopped.

    .venv/bin/python bench/bench_propagation.py [--routes 1000] [--changes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

try:
    import aiohttp
except ImportError:  # run with a python outside the venv: re-run with the venv's
    VENV_PY = ROOT / ".venv" / "bin" / "python"
    if VENV_PY.exists() and Path(sys.prefix).resolve() != VENV_PY.parent.parent.resolve():
        os.execv(str(VENV_PY), [str(VENV_PY), *sys.argv])
    raise

from rauta.reconcile.kube import ApiError, KubeClient  # noqa: E402
from rauta.scenario import free_port  # noqa: E402

GW = "gateway.networking.k8s.io"
MERGE = "application/merge-patch+json"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


def proc_status(pid: int, field: str) -> float:
    """A /proc/PID/status size field (VmHWM, VmRSS) in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def parse_metrics(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Samples of one metric from the Prometheus text format."""
    out = []
    pat = re.compile(r"^" + re.escape(name) + r"(\{(.*)\})?\s+(\S+)$")
    for line in text.splitlines():
        m = pat.match(line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            out.append((labels, float(m.group(3))))
    return out


def route_body(i: int, version: int, gw_ns: str) -> dict[str, Any]:
    return {"apiVersion": f"{GW}/v1", "kind": "HTTPRoute",
            "metadata": {"name": f"r{i}", "namespace": gw_ns},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [f"h{i}.bench.test"],
                     "rules": [redirect_rule(version)]}}


def redirect_rule(version: int) -> dict[str, Any]:
    return {"filters": [{"type": "RequestRedirect", "requestRedirect": {
        "hostname": f"v{version}.example.net", "statusCode": 302}}]}


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        tag = uuid.uuid4().hex[:6]
        self.ns = f"bench-{tag}"
        self.gc = f"bench-{tag}"
        self.controller_name = f"example.net/bench-{tag}"
        self.lease = f"bench-lease-{tag}"
        self.port = free_port(args.listen_host)
        self.admin = free_port()
        self.lab: Any = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: KubeClient | None = None
        self.watch_open = asyncio.Event()
        self.accepted_names: set[str] = set()
        self.logfile = Path(tempfile.mkstemp(prefix="rauta-bench-controller-", suffix=".log")[1])
        self.results: dict[str, Any] = {}

    # -- setup / teardown

    async def start(self) -> None:
        kubeconfig = self.args.kubeconfig
        if kubeconfig is None:
            from tests.e2e.lab import Lab, locate_lab_dir

            t0 = time.monotonic()
            self.lab = Lab(locate_lab_dir())
            await asyncio.to_thread(self.lab.start)
            kubeconfig = str(self.lab.kubeconfig)
            log(f"lab up in {time.monotonic() - t0:.1f}s at {self.lab.server}")
        self.kubeconfig = kubeconfig
        self.client = await KubeClient.connect(kubeconfig)
        c = self.client
        await c.request("POST", "/api/v1/namespaces", body={"metadata": {"name": self.ns}})
        await c.request("POST", f"/apis/{GW}/v1/gatewayclasses", body={
            "apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": self.gc},
            "spec": {"controllerName": self.controller_name}})
        await c.request("POST", f"/apis/{GW}/v1/namespaces/{self.ns}/gateways", body={
            "apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": "gw"},
            "spec": {"gatewayClassName": self.gc, "listeners": [
                {"name": "http", "port": self.port, "protocol": "HTTP"}]}})
        t0 = time.monotonic()
        with open(self.logfile, "ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rauta.cli", "controller", "--kubeconfig", kubeconfig,
                 "--admin", f"127.0.0.1:{self.admin}", "--listen-host", self.args.listen_host,
                 "--controller-name", self.controller_name, "--lease-namespace", self.ns,
                 "--lease-name", self.lease],
                stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + self.args.ready_timeout
        async with aiohttp.ClientSession() as s:
            while True:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"controller not ready within {self.args.ready_timeout}s "
                                       f"(/readyz); see {self.logfile}")
                if self.proc.poll() is not None:
                    raise RuntimeError(f"controller exited with {self.proc.returncode}; "
                                       f"see {self.logfile}")
                try:
                    async with s.get(f"http://127.0.0.1:{self.admin}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        # The initial statuses (GatewayClass, Gateway) are written before (a) counts.
        while True:
            gw = await c.request("GET", f"/apis/{GW}/v1/namespaces/{self.ns}/gateways/gw")
            conds = (gw.get("status") or {}).get("conditions") or ()
            if any(x.get("type") == "Programmed" and x.get("status") == "True" for x in conds):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Gateway not Programmed within {self.args.ready_timeout}s")
            await asyncio.sleep(0.05)
        log(f"controller ready in {time.monotonic() - t0:.2f}s (pid {self.proc.pid}, "
            f"RSS {proc_status(self.proc.pid, 'VmRSS'):.0f} MiB); proxy on "
            f"{self.args.listen_host}:{self.port}")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait, 10)
        if self.client is not None:
            for path in (f"/api/v1/namespaces/{self.ns}",
                         f"/apis/{GW}/v1/gatewayclasses/{self.gc}"):
                try:
                    await self.client.request("DELETE", path)
                except (TimeoutError, ApiError, OSError, aiohttp.ClientError):
                    pass
            await self.client.close()
        if self.lab is not None:
            await asyncio.to_thread(self.lab.stop)

    # -- metrics

    async def rauta_writes(self) -> dict[str, float]:
        async with aiohttp.ClientSession() as s, \
                s.get(f"http://127.0.0.1:{self.admin}/metrics") as r:
            text = await r.text()
        out: dict[str, float] = {}
        for labels, v in parse_metrics(text, "rauta_status_writes_total"):
            key = f"{labels.get('kind')}/{labels.get('outcome')}"
            out[key] = out.get(key, 0) + v
        return out

    async def apiserver_requests(self) -> dict[str, float] | None:
        """Status PUTs and object GETs the API server served, by resource (all clients)."""
        assert self.client is not None
        try:
            resp = await self.client._call("GET", "/metrics", timeout=30)
            text = await resp.text()
            resp.release()
        except Exception:  # noqa: BLE001 - not readable with these credentials
            return None
        out: dict[str, float] = {}
        for labels, v in parse_metrics(text, "apiserver_request_total"):
            if labels.get("group") not in (GW, "coordination.k8s.io"):
                continue
            key = f"{labels.get('verb')} {labels.get('resource')}" + (
                f"/{labels['subresource']}" if labels.get("subresource") else "")
            out[key] = out.get(key, 0) + v
        return out

    # -- (a) create N routes, wait until all Accepted

    async def list_routes(self) -> list[dict[str, Any]]:
        assert self.client is not None
        items: list[dict[str, Any]] = []
        cont = ""
        while True:
            q = [("limit", "500")] + ([("continue", cont)] if cont else [])
            data = await self.client.request(
                "GET", f"/apis/{GW}/v1/namespaces/{self.ns}/httproutes", query=q)
            items += data.get("items") or []
            cont = (data.get("metadata") or {}).get("continue") or ""
            if not cont:
                return items

    def accepted(self, route: dict[str, Any]) -> bool:
        gen = route["metadata"]["generation"]
        for p in (route.get("status") or {}).get("parents") or ():
            if p.get("controllerName") != self.controller_name:
                continue
            for c in p.get("conditions") or ():
                if (c.get("type") == "Accepted" and c.get("status") == "True"
                        and c.get("observedGeneration") == gen):
                    return True
        return False

    async def watch_accepted(self, n: int, done: asyncio.Event) -> None:
        """Follow the namespace's HTTPRoutes with a watch; set ``done`` once ``n`` of them
        are Accepted for the current generation (``self.accepted_names``)."""
        assert self.client is not None
        path = f"/apis/{GW}/v1/namespaces/{self.ns}/httproutes"
        data = await self.client.request("GET", path, query=[("limit", "1")])
        rv = (data.get("metadata") or {}).get("resourceVersion") or ""
        q = [("watch", "1"), ("resourceVersion", rv), ("timeoutSeconds", "600")]
        async for ev in self.client.stream(path, q, timeout=630,
                                           on_open=self.watch_open.set):
            obj = ev.get("object") or {}
            name = (obj.get("metadata") or {}).get("name")
            if ev.get("type") not in ("ADDED", "MODIFIED") or not name:
                continue
            if self.accepted(obj):
                self.accepted_names.add(name)
            else:
                self.accepted_names.discard(name)
            if len(self.accepted_names) >= n:
                done.set()
                return

    async def create_routes(self) -> None:
        assert self.client is not None
        n, c = self.args.routes, self.client
        writes0, api0 = await self.rauta_writes(), await self.apiserver_requests()
        sem = asyncio.Semaphore(self.args.concurrency)

        async def create(i: int) -> None:
            async with sem:
                for attempt in range(5):
                    try:
                        await c.request("POST", f"/apis/{GW}/v1/namespaces/{self.ns}/httproutes",
                                        body=route_body(i, 0, self.ns))
                        return
                    except ApiError as exc:
                        if exc.status == 429 or exc.status >= 500:
                            await asyncio.sleep(0.1 * (attempt + 1))
                            continue
                        raise

        # Acceptance is followed with one watch (opened before the first POST), not by
        # polling LISTs: a LIST of thousands of routes costs the API server more CPU than
        # the status writes being measured.
        all_accepted = asyncio.Event()
        watch = asyncio.create_task(self.watch_accepted(n, all_accepted))
        await self.watch_open.wait()
        t0 = time.monotonic()
        await asyncio.gather(*(create(i) for i in range(n)))
        t_created = time.monotonic() - t0
        log(f"(a) {n} HTTPRoutes created in {t_created:.2f}s "
            f"({n / t_created:.0f}/s, {self.args.concurrency} concurrent POSTs); "
            f"{len(self.accepted_names)} already Accepted then")
        try:
            await asyncio.wait_for(all_accepted.wait(),
                                   max(1.0, self.args.accept_timeout - t_created))
        except TimeoutError:
            raise RuntimeError(f"only {len(self.accepted_names)}/{n} routes Accepted after "
                               f"{self.args.accept_timeout}s") from None
        finally:
            watch.cancel()
        t_accepted = time.monotonic() - t0
        listed = sum(1 for r in await self.list_routes() if self.accepted(r))
        if listed != n:  # the watch's view, checked once against the API server's
            raise RuntimeError(f"the watch saw {n} Accepted, a LIST shows {listed}")
        # The Gateway must count them all too.
        my_gw_gets = 0
        while True:
            gw = await c.request("GET", f"/apis/{GW}/v1/namespaces/{self.ns}/gateways/gw")
            my_gw_gets += 1
            attached = [lst.get("attachedRoutes") for lst in
                        (gw.get("status") or {}).get("listeners") or ()]
            if attached == [n]:
                break
            if time.monotonic() - t0 > self.args.accept_timeout:
                raise RuntimeError(f"Gateway attachedRoutes {attached} != [{n}] after "
                                   f"{self.args.accept_timeout}s")
            await asyncio.sleep(0.1)
        t_gateway = time.monotonic() - t0
        log(f"(a) all {n} Accepted (observedGeneration current) {t_accepted:.2f}s after the "
            f"first POST, {t_accepted - t_created:.2f}s after the last create; Gateway "
            f"attachedRoutes={n} at {t_gateway:.2f}s")
        # Let the status writer finish (nothing changes any more), then count.
        last, stable_since = await self.rauta_writes(), time.monotonic()
        while time.monotonic() - stable_since < 2.0:
            await asyncio.sleep(0.25)
            now = await self.rauta_writes()
            if now != last:
                last, stable_since = now, time.monotonic()
        writes = {k: v - writes0.get(k, 0) for k, v in last.items() if v - writes0.get(k, 0)}
        api1 = await self.apiserver_requests()
        self.results["a"] = {"created_s": t_created, "accepted_s": t_accepted,
                             "accepted_after_last_create_s": t_accepted - t_created,
                             "gateway_s": t_gateway, "writes": writes}
        log("(a) rauta_status_writes_total delta: "
            + ", ".join(f"{k}={v:.0f}" for k, v in sorted(writes.items())))
        if api0 is not None and api1 is not None:
            delta = {k: v - api0.get(k, 0) - (my_gw_gets if k == "GET gateways" else 0)
                     for k, v in api1.items()
                     if k.startswith("PUT") or k.startswith("GET")}
            delta = {k: v for k, v in delta.items() if v}
            self.results["a"]["apiserver"] = delta
            log("(a) API server requests served meanwhile (all clients but this one): "
                + ", ".join(f"{k}={v:.0f}" for k, v in sorted(delta.items())))
        log(f"(a) controller RSS now {proc_status(self.proc.pid, 'VmRSS'):.0f} MiB"
            if self.proc else "")

    # -- (b) propagation latency

    async def propagation(self) -> None:
        assert self.client is not None
        rng = random.Random(7)
        versions = dict.fromkeys(range(self.args.routes), 0)
        latencies: list[float] = []
        polls: list[int] = []
        timeouts = 0
        url = f"http://{self.args.listen_host}:{self.port}/"
        conn = aiohttp.TCPConnector(limit=1, force_close=False)
        async with aiohttp.ClientSession(connector=conn) as s:
            async def location(i: int) -> str:
                async with s.get(url, headers={"Host": f"h{i}.bench.test"},
                                 allow_redirects=False) as r:
                    await r.read()
                    return r.headers.get("Location", f"<{r.status}>")

            # Sanity: every sampled route answers with its current version.
            for i in (0, self.args.routes // 2, self.args.routes - 1):
                loc = await location(i)
                assert "//v0.example.net" in loc, (i, loc)
            idle: list[float] = []
            for k in range(300):
                t = time.monotonic()
                await location(k % self.args.routes)
                idle.append((time.monotonic() - t) * 1000)
            rtts: list[float] = []
            for _ in range(self.args.changes):
                i = rng.randrange(self.args.routes)
                versions[i] += 1
                want = f"//v{versions[i]}.example.net"
                await self.client.request(
                    "PATCH", f"/apis/{GW}/v1/namespaces/{self.ns}/httproutes/r{i}",
                    body={"spec": {"rules": [redirect_rule(versions[i])]}}, content_type=MERGE)
                t_acc = time.monotonic()
                n = 0
                while True:
                    t_req = time.monotonic()
                    loc = await location(i)
                    n += 1
                    t = time.monotonic()
                    rtts.append((t - t_req) * 1000)
                    if want in loc:
                        latencies.append((t - t_acc) * 1000)
                        polls.append(n)
                        break
                    if t - t_acc > self.args.change_timeout:
                        timeouts += 1
                        break
        self.results["b"] = {"latencies_ms": latencies, "timeouts": timeouts}
        if latencies:
            log(f"(b) {len(latencies)} changes propagated ({timeouts} timed out after "
                f"{self.args.change_timeout}s): PATCH returned -> first new response "
                f"p50 {pct(latencies, 0.5):.1f} ms, p99 {pct(latencies, 0.99):.1f} ms, "
                f"max {max(latencies):.1f} ms, min {min(latencies):.1f} ms "
                f"(median {pct(polls, 0.5):.0f} proxy polls per change)")
        else:
            log(f"(b) no change propagated ({timeouts} timed out)")
        log(f"(b) proxy request round trip (the poll itself): idle p50 {pct(idle, 0.5):.2f} "
            f"p99 {pct(idle, 0.99):.2f} max {max(idle):.1f} ms; while changes propagate "
            f"p50 {pct(rtts, 0.5):.2f} p99 {pct(rtts, 0.99):.1f} max {max(rtts):.1f} ms")
        self.results["b"]["poll_rtt_ms"] = {"idle": idle, "during": rtts}

    async def run(self) -> None:
        await self.start()
        await self.create_routes()
        await self.propagation()
        if self.proc is not None:
            hwm = proc_status(self.proc.pid, "VmHWM")
            self.results["c"] = hwm
            log(f"(c) controller peak RSS (VmHWM) {hwm:.0f} MiB with {self.args.routes} "
                f"routes, now {proc_status(self.proc.pid, 'VmRSS'):.0f} MiB")


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--routes", type=int, default=1000)
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--kubeconfig", default=None,
                    help="use this cluster instead of starting a lab (admin rights needed)")
    ap.add_argument("--listen-host", default="127.0.0.1")
    ap.add_argument("--concurrency", type=int, default=16, help="concurrent POSTs in (a)")
    ap.add_argument("--change-timeout", type=float, default=10.0,
                    help="give up on one change after this many seconds")
    ap.add_argument("--ready-timeout", type=float, default=60.0,
                    help="bound on the controller becoming ready")
    ap.add_argument("--accept-timeout", type=float, default=300.0,
                    help="bound on (a): every route Accepted")
    ap.add_argument("--timeout", type=float, default=900.0, help="bound on the whole run")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    bench = Bench(args)
    code = 0
    try:
        await asyncio.wait_for(bench.run(), args.timeout)
    except TimeoutError:
        log(f"timed out after {args.timeout}s; partial results above")
        code = 1
    finally:
        await bench.stop()
        tail = bench.logfile.read_text(errors="replace").splitlines()
        problems = [ln for ln in tail if " ERROR " in ln or "Traceback" in ln]
        if problems:
            log(f"controller log has {len(problems)} error lines, e.g. {problems[0][:300]}")
        os.unlink(bench.logfile)
    if args.json:
        Path(args.json).write_text(json.dumps(bench.results, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
