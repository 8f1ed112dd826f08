"""``rauta controller`` against a misbehaving API server: cut, stalled and rejected
watches, 410 Gone (injected and from a real etcd compaction), status write conflicts, and
the API server going away altogether.

Each test runs a real ``rauta controller`` process whose kubeconfig points at a
``FaultProxy`` (``tests/e2e/faultproxy.py``) in front of the lab's API server, in its own
namespace with its own GatewayClass (unique controllerName), Lease and listener port.

The reference for "converged" is the pure model: ``translate`` of every object listed
from the API server (the same kinds the controller watches). Converged means the
controller's ``/config`` equals the reference config and every status of our objects
equals what the sink would write for the reference statuses (timestamps aside, so
``observedGeneration`` must be current).

Routes need no backends: their answers are redirects (Location names the route's
version), 500 (BackendNotFound) or 404 (no route), so a background client can check that
every answer comes from a config that was in force while the request was in flight:
states are appended in the order they are made (every state is unique), and once the
controller is seen converged on state j, later requests may no longer see states < j.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rauta.model.config import RouterConfig
from rauta.model.render import config_document
from rauta.model.routing import RequestView, route
from rauta.model.status import (
    gateway_class_status_dict,
    gateway_status_dict,
    merge_route_parents,
)
from rauta.model.translate import Translation, translate
from rauta.reconcile.kube import GW, KINDS, Kind
from rauta.reconcile.store import ObjectStore
from tests.e2e.faultproxy import FaultProxy, free_port, make_tls, match, wait_until
from tests.e2e.lab import Lab

# func_only: the session fixture (which may build the lab cold) is not counted.
pytestmark = pytest.mark.timeout(120, func_only=True)

REPO = Path(__file__).resolve().parents[2]
LISTEN_HOST = "127.0.0.71"
HOST = "faults.test"
PATHS = ("/static", "/a", "/b", "/c", "/zzz")
PREFIXES = ("/a", "/b", "/c")
ROUTES = "httproutes"
NOW = "1970-01-01T00:00:00Z"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    import ctypes
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)


# ---------------------------------------------------------------- a controller process


class ControllerProc:
    """``rauta controller`` as a subprocess, with its admin endpoints."""

    def __init__(self, kubeconfig: Path, *, controller_name: str, lease_namespace: str,
                 lease_name: str, listen_host: str, log: Path) -> None:
        self.admin_port = free_port()
        self.log = log
        argv = [sys.executable, "-m", "rauta.cli", "controller",
                "--kubeconfig", str(kubeconfig), "--admin", f"127.0.0.1:{self.admin_port}",
                "--listen-host", listen_host, "--controller-name", controller_name,
                "--lease-namespace", lease_namespace, "--lease-name", lease_name,
                "--identity", f"faults-{uuid.uuid4().hex[:6]}"]
        with open(log, "ab") as fh:
            self.popen = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=fh,
                                          stderr=subprocess.STDOUT,
                                          preexec_fn=_die_with_parent)  # noqa: PLW1509

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def get(self, path: str) -> tuple[int, str]:
        if not self.alive():
            raise AssertionError(f"controller exited ({self.popen.returncode}):\n{self.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}",
                                        timeout=3) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)

    def config(self) -> dict[str, Any] | None:
        status, body = self.get("/config")
        return json.loads(body) if status == 200 else None

    def readyz(self) -> tuple[int, str]:
        return self.get("/readyz")

    def wait_ready(self, timeout: float, what: str = "/readyz 200") -> None:
        last: list[tuple[int, str]] = []

        def ready() -> bool:
            last[:] = [self.readyz()]
            return last[0][0] == 200

        try:
            wait_until(ready, timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}: {last}\n--- controller log ---\n{self.tail()}") from None

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
        status, body = self.get("/metrics")
        assert status == 200, body
        total = 0.0
        for fam in text_string_to_metric_families(body):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


# ---------------------------------------------------------------- the API side


def _kinds(lab: Lab) -> list[Kind]:
    """The kinds the controller watches (ReferenceGrant at v1 when served, as it does)."""
    kinds = dict(KINDS)
    status, body = lab.request("GET", f"/apis/{GW}/v1")
    if status == 200 and any(r.get("name") == "referencegrants"
                             for r in json.loads(body).get("resources") or ()):
        kinds["ReferenceGrant"] = Kind("ReferenceGrant", f"{GW}/v1", "referencegrants")
    return list(kinds.values())


def list_all(lab: Lab, kinds: list[Kind]) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for k in kinds:
        path = k.path()
        if k.field_selector:
            path += "?fieldSelector=" + urllib.parse.quote(k.field_selector)
        for _ in range(50):  # a CR's storage answers 429 while its cache initializes
            status, body = lab.request("GET", path)
            if status != 429:
                break
            time.sleep(0.2)
        assert status == 200, (path, body[:300])
        for item in json.loads(body).get("items") or ():
            item.setdefault("kind", k.kind)
            item.setdefault("apiVersion", k.api_version)
            objs.append(item)
    return objs


def reference(objs: list[dict[str, Any]], controller_name: str) -> Translation:
    store = ObjectStore()
    store.replace_all(objs)
    return translate(store.snapshot(), controller_name=controller_name)


def _strip_times(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip_times(v) for k, v in x.items() if k != "lastTransitionTime"}
    if isinstance(x, list):
        return [_strip_times(v) for v in x]
    return x


def redirect_rule(prefix: str, hostname: str) -> dict[str, Any]:
    return {"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
            "filters": [{"type": "RequestRedirect",
                         "requestRedirect": {"hostname": hostname, "statusCode": 302}}]}


def missing_backend_rule(prefix: str, service: str) -> dict[str, Any]:
    return {"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
            "backendRefs": [{"name": service, "port": 80}]}


@dataclass
class Scene:
    """One test's objects, the states it made them go through, and the checks."""

    lab: Lab
    tag: str
    seed: int = 0
    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    history: list[tuple[float, RouterConfig]] = field(default_factory=list)
    floors: list[tuple[float, int]] = field(default_factory=list)
    routes: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (prefix, kind)
    last_put: dict[str, int] = field(default_factory=dict)
    step: int = 0

    def __post_init__(self) -> None:
        self.ns = f"faults-{self.tag}-{self.uid}"
        self.gc = f"faults-{self.tag}-{self.uid}"
        self.controller_name = f"rauta.io/faults-{self.uid}"
        self.port = free_port(LISTEN_HOST)
        self.rng = random.Random(self.seed)
        self.kinds = _kinds(self.lab)

    # -- API writes

    def _ok(self, status: int, body: bytes, what: str) -> None:
        assert 200 <= status < 300, f"{what}: {status} {body[:300]!r}"

    def apply(self, obj: dict[str, Any], plural: str) -> None:
        meta = obj["metadata"]
        base = "/api/v1" if obj["apiVersion"] == "v1" else f"/apis/{obj['apiVersion']}"
        ns = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
        path = f"{base}{ns}/{plural}/{meta['name']}?fieldManager=rauta-faults&force=true"
        status, body = self.lab.request("PATCH", path, json.dumps(obj).encode(),
                                        content_type="application/apply-patch+yaml")
        self._ok(status, body, f"apply {obj['kind']} {meta['name']}")

    def put_route(self, name: str, prefix: str, kind: str = "redirect") -> None:
        self.step += 1
        rule = (redirect_rule(prefix, f"{name}-v{self.step}.example") if kind == "redirect"
                else missing_backend_rule(prefix, f"missing-v{self.step}"))
        self.apply({"apiVersion": f"{GW}/v1", "kind": "HTTPRoute",
                    "metadata": {"name": name, "namespace": self.ns},
                    "spec": {"parentRefs": [{"name": "gw"}], "rules": [rule]}}, ROUTES)
        self.routes[name] = (prefix, kind)
        self.last_put[name] = self.step

    def delete_route(self, name: str) -> None:
        status, body = self.lab.request(
            "DELETE", f"/apis/{GW}/v1/namespaces/{self.ns}/httproutes/{name}")
        self._ok(status, body, f"delete HTTPRoute {name}")
        self.routes.pop(name, None)
        self.last_put.pop(name, None)

    def create(self, routes: int = 2) -> None:
        """Namespace, GatewayClass, Gateway, the constant /static route and some routes."""
        t = time.monotonic()
        self._ok(*self.lab.request("POST", "/api/v1/namespaces",
                                   {"metadata": {"name": self.ns}}), "namespace")
        self.apply({"apiVersion": f"{GW}/v1", "kind": "GatewayClass",
                    "metadata": {"name": self.gc},
                    "spec": {"controllerName": self.controller_name}}, "gatewayclasses")
        self.apply({"apiVersion": f"{GW}/v1", "kind": "Gateway",
                    "metadata": {"name": "gw", "namespace": self.ns},
                    "spec": {"gatewayClassName": self.gc, "listeners": [
                        {"name": "http", "port": self.port, "protocol": "HTTP"}]}},
                   "gateways")
        self.apply({"apiVersion": f"{GW}/v1", "kind": "HTTPRoute",
                    "metadata": {"name": "static", "namespace": self.ns},
                    "spec": {"parentRefs": [{"name": "gw"}], "rules": [{
                        "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                        "filters": [{"type": "RequestRedirect", "requestRedirect": {
                            "hostname": "static.example", "statusCode": 301}}]}]}}, ROUTES)
        for i in range(routes):
            self.put_route(f"r{i + 1}", PREFIXES[i % len(PREFIXES)],
                           "missing" if i % 2 else "redirect")
        self.history.append((t, self.reference().config))

    def cleanup(self) -> None:
        self.lab.request("DELETE", f"/apis/{GW}/v1/gatewayclasses/{self.gc}")
        self.lab.request("DELETE", f"/api/v1/namespaces/{self.ns}")

    # -- states

    def mutate(self, fn: Callable[[], None]) -> int:
        """Make one change; record when it was made and the reference config after it."""
        t = time.monotonic()
        fn()
        self.history.append((t, self.reference().config))
        return len(self.history) - 1

    def random_change(self) -> int:
        """Put or delete a route such that the resulting state never occurred before.

        Every put carries a new version (in the redirect host or the missing Service's
        name); a route is deleted only when another route was put after it, so the state
        after the delete holds a version newer than the deleted one's.
        """
        names = ["r1", "r2", "r3"]
        newest = max(self.last_put.values(), default=-1)
        deletable = [n for n in self.routes if self.last_put[n] < newest]
        if deletable and self.rng.random() < 0.3:
            name = self.rng.choice(deletable)
            return self.mutate(lambda: self.delete_route(name))
        name = self.rng.choice(names)
        prefix = self.rng.choice(PREFIXES)
        kind = self.rng.choice(("redirect", "redirect", "missing"))
        return self.mutate(lambda: self.put_route(name, prefix, kind))

    def reference(self) -> Translation:
        return reference(list_all(self.lab, self.kinds), self.controller_name)

    # -- checks

    def problems(self, ctl: ControllerProc) -> list[str]:
        """Why the controller has not converged on the API server's current state ([] if it has)."""
        objs = list_all(self.lab, self.kinds)
        ref = reference(objs, self.controller_name)
        out: list[str] = []
        got = ctl.config()
        if got is None or got["config"] != config_document(ref.config):
            out.append("config differs from translate() of the listed objects")
        by_key = {(o["kind"], (o.get("metadata") or {}).get("namespace", ""),
                   o["metadata"]["name"]): o for o in objs}
        for gcs in ref.statuses.gateway_classes:
            if gcs.name != self.gc:
                continue
            cur = by_key[("GatewayClass", "", gcs.name)].get("status") or {}
            want = gateway_class_status_dict(gcs, cur, NOW)
            if _strip_times(want["conditions"]) != _strip_times(cur.get("conditions")):
                out.append(f"GatewayClass {gcs.name} status")
        for gws in ref.statuses.gateways:
            if gws.namespace != self.ns:
                continue
            cur = by_key[("Gateway", gws.namespace, gws.name)].get("status") or {}
            want = gateway_status_dict(gws, cur, NOW)
            if _strip_times(want) != _strip_times({k: cur.get(k) for k in want}):
                out.append(f"Gateway {gws.name} status")
        for rs in ref.statuses.routes:
            if rs.namespace != self.ns:
                continue
            cur = by_key[("HTTPRoute", rs.namespace, rs.name)].get("status") or {}
            parents = merge_route_parents(rs, cur.get("parents") or (), self.controller_name,
                                          NOW)
            if _strip_times(parents) != _strip_times(cur.get("parents") or []):
                out.append(f"HTTPRoute {rs.name} status")
        return out

    def wait_converged(self, ctl: ControllerProc, timeout: float = 30.0) -> float:
        """Wait until converged on the latest state; returns how long it took."""
        t0 = time.monotonic()
        last: list[str] = []
        while True:
            last = self.problems(ctl)
            if not last:
                self.floors.append((time.monotonic(), len(self.history) - 1))
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"not converged after {timeout}s: {last}\n"
                                     f"--- controller log ---\n{ctl.tail()}")
            time.sleep(0.2)

    def expected(self, config: RouterConfig, path: str) -> tuple[int, str | None]:
        view = RequestView(method="GET", host=HOST, path=path, query="",
                           headers=(("Host", HOST),), port=self.port, client_ip="127.0.0.1")
        d = route(config, view)
        if d.kind == "redirect":
            return d.status, d.location
        if d.kind == "error":
            return d.status, None
        return -1, f"forward to {d.backend.name if d.backend else '?'}"

    def allowed(self, t0: float, t1: float, path: str) -> set[tuple[int, str | None]]:
        lo = max((i for t, i in self.floors if t <= t0), default=0)
        hi = max((i for i, (t, _) in enumerate(self.history) if t <= t1), default=0)
        return {self.expected(self.history[i][1], path) for i in range(lo, max(lo, hi) + 1)}

    def probe(self) -> None:
        """Every path answers as the latest state says (call when converged)."""
        for path in PATHS:
            status, location = http_get(self.port, path)
            assert (status, location) == self.expected(self.history[-1][1], path), path


def down_kinds(readyz_body: str) -> set[str]:
    """The kinds named in "not ready: disconnected from the API server (A, B)"."""
    inside = readyz_body.partition("(")[2].partition(")")[0]
    return {k.strip() for k in inside.split(",") if k.strip()}


def http_get(port: int, path: str) -> tuple[int, str | None]:
    req = urllib.request.Request(f"http://{LISTEN_HOST}:{port}{path}", headers={"Host": HOST})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a: Any, **k: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=5) as r:
            return r.status, None
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location") if 300 <= e.code < 400 else None


# ---------------------------------------------------------------- background traffic


class Traffic:
    """Keep-alive clients hammering the controller's listener from their own thread."""

    def __init__(self, port: int, workers: int = 2) -> None:
        self.port, self.workers = port, workers
        self.results: list[tuple[float, float, str, tuple[int, str | None]]] = []
        self.errors: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._stop = threading.Event()

    def start(self) -> Traffic:
        self.thread.start()
        self.task = asyncio.run_coroutine_threadsafe(self._run(), self.loop)
        return self

    async def _run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
            await asyncio.gather(*(self._worker(s, i) for i in range(self.workers)))

    async def _worker(self, s: aiohttp.ClientSession, w: int) -> None:
        i = w
        while not self._stop.is_set():
            path = PATHS[i % len(PATHS)]
            i += 1
            t0 = time.monotonic()
            try:
                async with s.get(f"http://{LISTEN_HOST}:{self.port}{path}",
                                 headers={"Host": HOST}, allow_redirects=False) as r:
                    await r.read()
                    got = (r.status, r.headers.get("Location") if 300 <= r.status < 400
                           else None)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.errors.append(f"{path}: {type(exc).__name__}: {exc}")
                continue
            self.results.append((t0, time.monotonic(), path, got))
            await asyncio.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self.task.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def check(self, scene: Scene, min_requests: int = 50) -> None:
        assert not self.errors, f"{len(self.errors)} connection errors: {self.errors[:5]}"
        bad = []
        for t0, t1, path, got in self.results:
            allowed = scene.allowed(t0, t1, path)
            if got not in allowed:
                bad.append(f"{path}: got {got}, allowed {sorted(allowed, key=str)}")
        assert not bad, f"{len(bad)}/{len(self.results)} answers from no config in force: {bad[:5]}"
        assert len(self.results) >= min_requests, len(self.results)
        distinct = {(path, got) for _, _, path, got in self.results}
        print(f"traffic: {len(self.results)} answers, {len(distinct)} distinct, "
              f"{len(scene.history)} states, 0 errors")


# ---------------------------------------------------------------- fixtures


@dataclass
class Env:
    lab: Lab
    scene: Scene
    proxy: FaultProxy
    ctl: ControllerProc
    traffic: Traffic | None = None

    def start_traffic(self) -> Traffic:
        self.traffic = Traffic(self.scene.port).start()
        return self.traffic


@contextlib.contextmanager
def environment(lab: Lab, tag: str, *, upstream: str | None = None,
                upstream_ca: Path | None = None, routes: int = 2,
                seed: int = 1) -> Iterator[Env]:
    """Scene objects, a fault proxy in front of the API server, and a controller behind it."""
    scene = Scene(lab, tag, seed=seed)
    proxy = FaultProxy(upstream or lab.server, upstream_ca or lab.ca_file, lab.token).start()
    ctl: ControllerProc | None = None
    env: Env | None = None
    try:
        scene.create(routes)
        ctl = ControllerProc(proxy.kubeconfig, controller_name=scene.controller_name,
                             lease_namespace=scene.ns, lease_name=f"lease-{scene.uid}",
                             listen_host=LISTEN_HOST, log=proxy.workdir / "controller.log")
        env = Env(lab, scene, proxy, ctl)
        scene.wait_converged(ctl)
        yield env
    finally:
        if env is not None and env.traffic is not None:
            env.traffic.stop()
        if ctl is not None:
            ctl.stop()
        proxy.stop()
        scene.cleanup()


# ---------------------------------------------------------------- tests


def test_baseline_through_the_proxy(lab: Lab) -> None:
    with environment(lab, "base", routes=3) as env:
        scene, ctl, proxy = env.scene, env.ctl, env.proxy
        ctl.wait_ready(10)
        assert ctl.metric("rauta_apiserver_connected") == 1
        scene.probe()
        c = proxy.counts()
        kinds = {k.plural for k in scene.kinds}
        assert {r for (v, r) in c if v == "list"} >= kinds, c
        assert {r for (v, r) in c if v == "watch"} >= kinds, c
        assert proxy.open_watches() == len(kinds)
        assert c[("status", "gatewayclasses")] >= 1 and c[("status", "gateways")] >= 1
        assert c[("status", ROUTES)] >= 4, c  # static, r1..r3
        # A replica connected directly (same controllerName and Lease, so a follower that
        # writes nothing) computes the same config from its own watches.
        direct = ControllerProc(lab.kubeconfig, controller_name=scene.controller_name,
                                lease_namespace=scene.ns, lease_name=f"lease-{scene.uid}",
                                listen_host="127.0.0.72", log=proxy.workdir / "direct.log")
        try:
            direct.wait_ready(15)
            assert direct.config()["config"] == ctl.config()["config"]  # type: ignore[index]
            assert ctl.metric("rauta_leader") == 1 and direct.metric("rauta_leader") == 0
        finally:
            direct.stop()
        # A change goes through the proxy too.
        traffic = env.start_traffic()
        for _ in range(4):
            scene.random_change()
            scene.wait_converged(ctl)
        scene.probe()
        traffic.stop()
        traffic.check(scene)


def test_cut_watches_while_changing_routes(lab: Lab) -> None:
    with environment(lab, "cut", seed=2) as env:
        scene, ctl, proxy = env.scene, env.ctl, env.proxy
        lists_before = proxy.count("list", ROUTES)
        traffic = env.start_traffic()
        for i in range(10):
            if i % 3 == 0:
                assert proxy.cut_watches(clean=i % 2 == 1) >= 1
            scene.random_change()
            if i % 3 == 1:
                proxy.cut_watches(ROUTES)
            time.sleep(0.3)
        proxy.cut_watches()
        scene.wait_converged(ctl)
        scene.probe()
        traffic.stop()
        traffic.check(scene)
        # Resumed from the last resourceVersion each time: no re-list was needed.
        assert proxy.count("list", ROUTES) == lists_before
        assert proxy.count("watch", ROUTES) >= 7


def test_stalled_watches_converge_after_the_stall(lab: Lab) -> None:
    with environment(lab, "stall", seed=3) as env:
        scene, ctl, proxy = env.scene, env.ctl, env.proxy
        traffic = env.start_traffic()
        before = ctl.config()
        proxy.stall_watches(4.0)
        t0 = time.monotonic()
        for _ in range(3):
            scene.random_change()
        time.sleep(1.0)
        assert ctl.config() == before, "a change got through a stalled watch"
        took = scene.wait_converged(ctl, timeout=30)
        assert time.monotonic() - t0 >= 3.5
        assert took < 15, took
        scene.probe()
        traffic.stop()
        traffic.check(scene)


def test_500_and_429_back_off_without_a_hot_loop(lab: Lab) -> None:
    with environment(lab, "backoff", seed=4) as env:
        scene, ctl, proxy = env.scene, env.ctl, env.proxy
        traffic = env.start_traffic()
        lw = match(("list", "watch"), ROUTES)

        # 500 on every HTTPRoute list and watch for 4 s.
        rule = proxy.reject(lw, 500, duration=4.0)
        proxy.cut_watches(ROUTES)
        scene.random_change()
        status, body = wait_until(lambda: (s := ctl.readyz())[0] == 503 and s, 5, "503")
        assert "disconnected from the API server" in body and "HTTPRoute" in down_kinds(body), body
        time.sleep(4.0)
        n = len(rule.hits)
        print(f"500 for 4 s: {n} HTTPRoute list/watch requests")
        assert 2 <= n <= 15, f"{n} requests in 4 s of 500s: not backing off"
        scene.wait_converged(ctl, timeout=40)

        # 410 on the watch (forces a re-list), then 429 + Retry-After: 1 on lists for 3.5 s.
        proxy.reject(match("watch", ROUTES), 410)
        rule = proxy.reject(match("list", ROUTES), 429, duration=3.5, retry_after=1)
        proxy.cut_watches(ROUTES)
        scene.random_change()
        time.sleep(3.5)
        hits = rule.hits
        assert 2 <= len(hits) <= 5, f"{len(hits)} lists in 3.5 s of 429 Retry-After: 1"
        gaps = [b - a for a, b in zip(hits, hits[1:], strict=False)]
        print(f"429 Retry-After 1 for 3.5 s: {len(hits)} lists, gaps {gaps}")
        assert min(gaps) >= 0.95, f"Retry-After: 1 not honoured: gaps {gaps}"
        scene.wait_converged(ctl, timeout=30)
        scene.probe()
        traffic.stop()
        traffic.check(scene)


def test_410_twice_relists_and_loses_no_event(lab: Lab) -> None:
    with environment(lab, "gone", routes=3, seed=5) as env:
        scene, ctl, proxy = env.scene, env.ctl, env.proxy
        traffic = env.start_traffic()
        for how in ("status", "event", "back-to-back"):
            lists = proxy.count("list", ROUTES)
            proxy.stall_watches(resources=[ROUTES])
            created = f"new-{how}"
            # one created, one deleted, one changed at random while the watch is stalled
            scene.mutate(functools.partial(scene.put_route, created, "/b"))
            victim = min(n for n in scene.routes if n.startswith("r"))
            scene.mutate(functools.partial(scene.delete_route, victim))
            scene.random_change()
            time.sleep(0.5)
            relists = 1
            if how == "status":  # the resumed watch is answered 410
                proxy.reject(match("watch", ROUTES), 410)
                assert proxy.cut_watches(ROUTES, unstall=True) == 1
            elif how == "event":  # ERROR 410 in the open stream, ahead of what was stalled
                assert proxy.inject_watch_error(ROUTES, 410, unstall=True) == 1
            else:  # 410 on the resumed watch, then an ERROR 410 on the one after the re-list
                proxy.reject(match("watch", ROUTES), 410)
                proxy.reject(match("watch", ROUTES), 410, as_watch_event=True)
                assert proxy.cut_watches(ROUTES, unstall=True) == 1
                relists = 2
            scene.wait_converged(ctl)
            assert proxy.count("list", ROUTES) == lists + relists, "no re-list after 410"
            config = ctl.config()
            assert config is not None
            names = {r["route"] for p in config["config"]["ports"] if p["port"] == scene.port
                     for lis in p["listeners"] for r in lis["rules"]}
            assert names == {f"{scene.ns}/{n}" for n in [*scene.routes, "static"]}, names
            assert f"{scene.ns}/{created}" in names
            assert (f"{scene.ns}/{victim}" in names) == (victim in scene.routes)
        scene.probe()
        traffic.stop()
        traffic.check(scene)


# -- a real 410 from the API server after an etcd compaction


@pytest.fixture(scope="module")
def uncached_apiserver(lab: Lab) -> Iterator[tuple[str, Path]]:
    """A second kube-apiserver on the lab's etcd with ``--watch-cache=false``.

    The lab's API server serves watches from its watch cache, which keeps events past an
    etcd compaction (it only drops list snapshots), so compaction alone never makes it
    answer 410 to a watch. Without the cache, watches go to etcd, and a resumed watch
    from a compacted revision gets the real ``ERROR`` 410 ("too old").
    """
    d = Path(tempfile.mkdtemp(prefix="faults-apiserver-"))
    ca, crt, key = make_tls(d, cn="faults-apiserver")
    sa = d / "sa.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", str(sa)], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(sa), "-pubout", "-out", str(d / "sa.pub")],
                   check=True, capture_output=True)
    tokens = d / "tokens.csv"
    tokens.write_text(f'{lab.token},rauta-faults,rauta-faults,"system:masters"\n')
    port = free_port()
    log = d / "kube-apiserver.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen([
            lab.bin("kube-apiserver"), "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1", f"--secure-port={port}",
            f"--cert-dir={d / 'certs'}", f"--tls-cert-file={crt}", f"--tls-private-key-file={key}",
            f"--etcd-servers={lab.etcd_url}", f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC", "--anonymous-auth=false",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={d / 'sa.pub'}",
            f"--service-account-signing-key-file={sa}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--disable-admission-plugins=ServiceAccount", "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false", "--profiling=false",
            "--watch-cache=false", "--v=1",
        ], stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent)  # noqa: PLW1509
    server = f"https://127.0.0.1:{port}"
    import ssl
    ctx = ssl.create_default_context(cafile=str(ca))

    def served() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"kube-apiserver exited:\n{log.read_text()[-3000:]}")
        req = urllib.request.Request(f"{server}/apis/{GW}/v1",
                                     headers={"Authorization": f"Bearer {lab.token}"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=3) as r:
                return b"httproutes" in r.read()
        except OSError:
            return False

    try:
        wait_until(served, 60, "the uncached kube-apiserver", interval=0.2)
        yield server, ca
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        import shutil
        shutil.rmtree(d, ignore_errors=True)


def etcd_compact(lab: Lab) -> int:
    """Compact etcd (physically) at its current revision, via the v3 JSON gateway."""
    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(lab.etcd_url + path, data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            out: dict[str, Any] = json.loads(r.read())
            return out

    rev = int(post("/v3/kv/range", {"key": base64.b64encode(b"\0").decode()})
              ["header"]["revision"])
    post("/v3/kv/compaction", {"revision": rev, "physical": True})
    return rev


def test_real_compaction_410_relists_twice(lab: Lab, uncached_apiserver: tuple[str, Path]
                                           ) -> None:
    server, ca = uncached_apiserver
    with environment(lab, "compact", upstream=server, upstream_ca=ca, seed=6) as env:
        scene, ctl, proxy = env.scene, env.ctl, env.proxy
        traffic = env.start_traffic()
        for round_ in range(2):
            lists = proxy.count("list", ROUTES)
            errors = len(proxy.upstream_watch_errors)
            proxy.stall_watches()  # the controller's resourceVersions go stale
            created = f"compact-{round_}"
            scene.mutate(functools.partial(scene.put_route, created, "/c"))
            scene.random_change()
            scene.random_change()
            etcd_compact(lab)
            proxy.cut_watches(unstall=True)  # resume from the stale resourceVersions
            scene.wait_converged(ctl)
            got = [(r, c) for _, r, c in proxy.upstream_watch_errors[errors:]]
            assert (ROUTES, 410) in got, f"no 410 from the API server: {got}"
            assert proxy.count("list", ROUTES) >= lists + 1, "no re-list after 410"
        ctl.wait_ready(10)
        scene.probe()
        traffic.stop()
        traffic.check(scene)


def test_status_write_conflicts_are_retried(lab: Lab) -> None:
    with environment(lab, "conflict", seed=7) as env:
        scene, ctl, proxy = env.scene, env.ctl, env.proxy
        before = ctl.metric("rauta_status_writes_total", outcome="conflict")
        rule = proxy.reject(match("status", ROUTES), 409, count=3)
        scene.mutate(lambda: scene.put_route("r1", "/a", "missing"))
        scene.wait_converged(ctl)
        assert len(rule.hits) == 3
        assert ctl.metric("rauta_status_writes_total", kind="HTTPRoute",
                          outcome="conflict") - before == 3
        # Conflicts spread over several objects, with the Gateway's too.
        rule = proxy.reject(match("status", (ROUTES, "gateways")), 409, count=4)
        scene.mutate(lambda: scene.put_route("r3", "/c"))
        scene.mutate(lambda: scene.put_route("r2", "/b"))
        scene.wait_converged(ctl)
        assert len(rule.hits) == 4
        assert ctl.metric("rauta_status_writes_total", outcome="conflict") - before == 7
        # A 500 on a status write is not a conflict: retried later all the same.
        rule = proxy.reject(match("status", ROUTES), 500, count=2)
        scene.mutate(lambda: scene.put_route("r1", "/a"))
        scene.wait_converged(ctl)
        assert len(rule.hits) == 2
        scene.probe()


def test_status_converges_after_more_conflicts_than_retries(lab: Lab) -> None:
    with environment(lab, "conflicts", seed=9) as env:
        scene, ctl, proxy = env.scene, env.ctl, env.proxy
        rule = proxy.reject(match("status", ROUTES, name="r1"), 409, count=6)
        scene.mutate(lambda: scene.put_route("r1", "/a", "missing"))
        wait_until(lambda: len(rule.hits) >= 6, 15, "all six conflicts (more than the retries)")
        scene.wait_converged(ctl, timeout=15)


def test_fail_static_when_the_api_server_is_gone(lab: Lab) -> None:
    with environment(lab, "static", seed=8) as env:
        scene, ctl, proxy = env.scene, env.ctl, env.proxy
        pid = ctl.pid
        traffic = env.start_traffic()
        ctl.wait_ready(10)
        before = ctl.config()
        proxy.down()
        t_down = time.monotonic()
        status, body = wait_until(lambda: (s := ctl.readyz())[0] == 503 and s, 5, "503")
        assert "disconnected from the API server" in body, body
        wait_until(lambda: ctl.metric("rauta_apiserver_connected") == 0, 5, "connected 0")
        scene.random_change()  # made during the outage
        time.sleep(max(0.0, 4.0 - (time.monotonic() - t_down)))
        assert ctl.config() == before, "config changed while the API server was unreachable"
        for path in PATHS:
            assert http_get(scene.port, path) == scene.expected(scene.history[-2][1], path)
        proxy.up()
        scene.wait_converged(ctl, timeout=40)  # the change made during the outage
        assert ctl.pid == pid and ctl.alive()
        scene.probe()
        traffic.stop()
        traffic.check(scene)
        # Watches that resumed without an event yet still count as disconnected (see the
        # xfail below), so /readyz is not checked here; the kinds that did get events are
        # connected again.
        status, body = ctl.readyz()
        assert status == 200 or "HTTPRoute" not in down_kinds(body), body


def test_ready_again_soon_after_the_api_server_returns(lab: Lab) -> None:
    with environment(lab, "ready", seed=10) as env:
        ctl, proxy = env.ctl, env.proxy
        ctl.wait_ready(10)
        proxy.down()
        wait_until(lambda: ctl.readyz()[0] == 503, 5, "/readyz 503")
        time.sleep(2)
        proxy.up()
        kinds = len(env.scene.kinds)
        wait_until(lambda: proxy.open_watches() == kinds, 15, "every watch re-opened")
        wait_until(lambda: ctl.readyz()[0] == 200, 5, "/readyz 200 after the outage")
        assert ctl.metric("rauta_apiserver_connected") == 1
