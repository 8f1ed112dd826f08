"""Live reconfiguration under traffic: random route and endpoint changes, zero errors.

A hypothesis state machine drives the real reconciler and the real proxy on loopback with
three echo backends (127.0.0.2-4). Rules change HTTPRoutes and EndpointSlices at random
while a background client keeps sending keep-alive requests. Checked:

- the background client sees zero connection errors over the whole run;
- every answer (background or probe) is the one the pure model's ``route()`` decision
  predicts for a config that was in force while the request was in flight (before or
  after a concurrent apply): forward → 200 from exactly the predicted endpoint
  (``hash_on=header:x-user`` makes the endpoint a function of the request), error → the
  predicted status.

Few examples (it is an end-to-end test); every wait is bounded.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from prometheus_client import CollectorRegistry

from rauta.echo import EchoBackend
from rauta.model.config import RouterConfig
from rauta.model.routing import RequestView, route
from rauta.proxy.manager import Proxy
from rauta.reconcile.reconciler import Reconciler
from rauta.reconcile.sinks import MemorySink
from rauta.reconcile.store import Event
from rauta.scenario import free_port

BACKENDS = {"b1": "127.0.0.2", "b2": "127.0.0.3", "b3": "127.0.0.4"}
ADDR_TO_NAME = {v: k for k, v in BACKENDS.items()}
SERVICES = ("svc-a", "svc-b")
PATHS = ("/", "/a", "/a/b", "/b", "/ab")
REQUEST_PATHS = ("/", "/a", "/a/x", "/a/b", "/a/b/c", "/b", "/ab", "/zzz")
USERS = tuple(f"u{i}" for i in range(6))
HASH_ON = "header:x-user"


def gateway_objects(port: int, backend_port: int) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = [
        {"kind": "GatewayClass", "metadata": {"name": "rauta"},
         "spec": {"controllerName": "rauta.io/gateway-controller"}},
        {"kind": "Gateway", "metadata": {"name": "gw", "namespace": "default"},
         "spec": {"gatewayClassName": "rauta",
                  "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]}},
    ]
    for svc in SERVICES:
        objs.append({"kind": "Service", "metadata": {"name": svc, "namespace": "default"},
                     "spec": {"ports": [{"name": "http", "port": 80}]}})
        objs.append(slice_object(svc, ("b1",), backend_port))
    return objs


def slice_object(svc: str, names: tuple[str, ...], backend_port: int) -> dict[str, Any]:
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{svc}-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc}},
            "ports": [{"name": "http", "port": backend_port}],
            "endpoints": [{"addresses": [BACKENDS[n]], "conditions": {"ready": True}}
                          for n in names]}


def route_object(name: str, prefix: str, svc: str) -> dict[str, Any]:
    return {"kind": "HTTPRoute", "metadata": {"name": name, "namespace": "default"},
            "spec": {"parentRefs": [{"name": "gw"}],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                                "backendRefs": [{"name": svc, "port": 80}]}]}}


class RecordingProxy:
    """The real proxy, with every config it was asked to apply kept in order."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.history: list[RouterConfig] = [RouterConfig()]

    async def apply(self, config: RouterConfig, tls: Any) -> Any:
        self.history.append(config)  # before the swap: a superset of what was in force
        return await self.proxy.apply(config, tls)


def expected(config: RouterConfig, port: int, path: str, user: str) -> tuple[int, str | None]:
    view = RequestView(method="GET", host="live.test", path=path, query="",
                       headers=(("x-user", user),), port=port, client_ip="127.0.0.1")
    d = route(config, view, hash_on=HASH_ON)
    if d.kind == "forward":
        assert d.endpoint is not None
        return 200, ADDR_TO_NAME[d.endpoint.address]
    return d.status, None


class Lab:
    """Proxy, reconciler, backends and a background client on a loop in its own thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port, self.backend_port = free_port(), free_port()
        self.errors: list[str] = []
        self.mismatches: list[str] = []
        self.sent = 0
        self.run(self._start())

    def run(self, coro: Any, timeout: float = 20.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        self.proxy = Proxy(host="127.0.0.1", registry=CollectorRegistry(), hash_on=HASH_ON,
                           drain_seconds=1.0)
        self.recorder = RecordingProxy(self.proxy)
        self.reconciler = Reconciler(self.recorder, MemorySink())  # type: ignore[arg-type]
        self.backends = [EchoBackend(n, a, self.backend_port) for n, a in BACKENDS.items()]
        for b in self.backends:
            await b.start()
        self.rec_task = asyncio.create_task(self.reconciler.run())
        self.reconciler.submit(Event("ADDED", o)
                               for o in gateway_objects(self.port, self.backend_port))
        await self.reconciler.wait_idle()
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self.stop_traffic = asyncio.Event()
        self.traffic = asyncio.create_task(self._traffic())

    async def request(self, path: str, user: str) -> None:
        # The newest recorded config may still be being applied (it is recorded before the
        # swap), so the one before it may be the config in force: both are allowed.
        first = len(self.recorder.history) - 2
        try:
            async with self.session.get(f"http://127.0.0.1:{self.port}{path}",
                                        headers={"Host": "live.test", "x-user": user}) as r:
                await r.read()
                got = (r.status, r.headers.get("x-backend") if r.status == 200 else None)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.errors.append(f"{path} {user}: {type(exc).__name__}: {exc}")
            return
        finally:
            self.sent += 1
        last = len(self.recorder.history) - 1
        allowed = {expected(c, self.port, path, user)
                   for c in self.recorder.history[max(first, 0):last + 1]}
        if got not in allowed:
            self.mismatches.append(f"{path} {user}: got {got}, allowed {sorted(allowed, key=str)}")

    async def _traffic(self) -> None:
        i = 0
        while not self.stop_traffic.is_set():
            await self.request(REQUEST_PATHS[i % len(REQUEST_PATHS)], USERS[i % len(USERS)])
            i += 1
            await asyncio.sleep(0)

    async def submit(self, events: list[Event]) -> None:
        self.reconciler.submit(events)
        await self.reconciler.wait_idle()

    async def _stop(self) -> None:
        self.stop_traffic.set()
        await asyncio.wait_for(self.traffic, 10)
        await self.session.close()
        self.rec_task.cancel()
        await asyncio.gather(self.rec_task, return_exceptions=True)
        await self.proxy.close(0.5)
        for b in self.backends:
            await b.stop()

    def close(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


class LiveMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.lab = Lab()
        self.routes: dict[str, dict[str, Any]] = {}

    @rule(name=st.sampled_from(("r1", "r2", "r3")), prefix=st.sampled_from(PATHS),
          svc=st.sampled_from(SERVICES))
    def put_route(self, name: str, prefix: str, svc: str) -> None:
        obj = route_object(name, prefix, svc)
        kind = "MODIFIED" if name in self.routes else "ADDED"
        self.routes[name] = obj
        self.lab.run(self.lab.submit([Event(kind, obj)]))

    @rule(name=st.sampled_from(("r1", "r2", "r3")))
    def delete_route(self, name: str) -> None:
        obj = self.routes.pop(name, None)
        if obj is not None:
            self.lab.run(self.lab.submit([Event("DELETED", obj)]))

    @rule(svc=st.sampled_from(SERVICES),
          names=st.lists(st.sampled_from(sorted(BACKENDS)), unique=True, max_size=3))
    def set_endpoints(self, svc: str, names: list[str]) -> None:
        obj = slice_object(svc, tuple(sorted(names)), self.lab.backend_port)
        self.lab.run(self.lab.submit([Event("MODIFIED", obj)]))

    @invariant()
    def probes_match_the_model(self) -> None:
        for path in REQUEST_PATHS:
            for user in USERS[:3]:
                self.lab.run(self.lab.request(path, user))
        assert not self.lab.mismatches, self.lab.mismatches[:5]
        assert not self.lab.errors, self.lab.errors[:5]

    def teardown(self) -> None:
        self.lab.close()
        print(f"live machine: {self.lab.sent} requests, {len(self.lab.recorder.history) - 1} "
              f"applies, {len(self.lab.errors)} errors, {len(self.lab.mismatches)} mismatches")
        assert not self.lab.errors, f"connection errors: {self.lab.errors[:5]}"
        assert not self.lab.mismatches, self.lab.mismatches[:5]
        assert self.lab.sent > 0


LiveMachine.TestCase.settings = settings(
    max_examples=8, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLiveReconfiguration = pytest.mark.timeout(600)(LiveMachine.TestCase)
