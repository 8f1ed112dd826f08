"""Random API operations against the real API server; the controller must agree with the model.

A hypothesis state machine writes HTTPRoutes (random hostnames, paths, redirects, backendRefs
to existing or missing Services, across namespaces), Services (headless without ports, one or
two ports, appProtocol), EndpointSlices (10.244.0.0/16 addresses, ready/not-ready/unknown),
ReferenceGrants, namespace labels and one two-listener Gateway, through the lab's real
kube-apiserver. One rauta ``Controller`` (in-process, on its own loop thread, with its own
GatewayClass/controllerName, listener ports and Lease) watches the whole cluster.

After every step the test waits (bounded) until the controller is consistent with the API
server, twice in a row, and fails with the last difference if it never is:

- the applied config (admin ``/config`` *and* ``reconciler.config``) equals
  ``translate()`` of the API server's current objects;
- every status on our objects equals the model's, stamped with ``rauta.model.status``:
  conditions' type/status/reason/message and ``observedGeneration == metadata.generation``
  (lastTransitionTime ignored); for routes only the parent entries with our
  controllerName; routes with no status from the model carry none of ours.

At the end of each example a quiet second must pass with no status write and no apply
(no write loop). Few examples: it is an end-to-end test; time per example is printed.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import ssl
import threading
import time
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from prometheus_client import CollectorRegistry

from rauta.admin import admin_app, start_admin
from rauta.controller import Controller
from rauta.model.render import config_document
from rauta.model.resources import ResourceError, parse_object
from rauta.model.snapshot import Snapshot
from rauta.model.status import gateway_class_status_dict, gateway_status_dict, merge_route_parents
from rauta.model.translate import Translation, translate
from rauta.reconcile.kube import KubeClient
from tests.e2e.lab import Lab, free_port

pytestmark = pytest.mark.timeout(1200, func_only=True)

GW = "gateway.networking.k8s.io"
MAX_EXAMPLES = int(os.environ.get("RAUTA_API_MACHINE_EXAMPLES", "5"))
STEPS = int(os.environ.get("RAUTA_API_MACHINE_STEPS", "15"))
CONVERGE_TIMEOUT = 30.0
# Regression it found: an object deleted and at once re-created got no status (the status
# diff did not see the new uid); the re-create rules below keep exercising that.

SERVICES = ("s0", "s1", "s2")  # s3 is referenced but never created
HOSTNAMES = ("a.example.com", "b.example.com", "*.example.com", "x.other.org")
PATHS = ("/", "/a", "/a/b", "/b")


# ---------------------------------------------------------------- a small sync API client


class Api:
    """Admin requests over one kept-alive HTTPS connection (reconnects when needed)."""

    def __init__(self, lab: Lab) -> None:
        self.host, self.port = "127.0.0.1", lab.apiserver_port
        self.token = lab.token
        self.ctx = ssl.create_default_context(cafile=str(lab.ca_file))
        self.conn: http.client.HTTPSConnection | None = None
        self.requests = 0

    def call(self, method: str, path: str, body: Any = None,
             content_type: str = "application/json") -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in range(3):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                                        timeout=15)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                continue
            self.requests += 1
            return resp.status, json.loads(raw) if raw else None
        raise AssertionError("unreachable")

    def ok(self, method: str, path: str, body: Any = None, *, allow: tuple[int, ...] = (),
           content_type: str = "application/json") -> Any:
        status, out = self.call(method, path, body, content_type)
        if not (200 <= status <= 299 or status in allow):
            raise AssertionError(f"{method} {path} -> {status}: {out}")
        return out

    def patch(self, path: str, body: Any) -> Any:
        return self.ok("PATCH", path, body, content_type="application/merge-patch+json")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def gw_path(ns: str | None, plural: str, name: str = "", version: str = "v1") -> str:
    base = f"/apis/{GW}/{version}" + (f"/namespaces/{ns}" if ns else "") + f"/{plural}"
    return f"{base}/{name}" if name else base


def core_path(ns: str, plural: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{ns}/{plural}"
    return f"{base}/{name}" if name else base


def eps_path(ns: str, name: str = "") -> str:
    base = f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
    return f"{base}/{name}" if name else base


# ---------------------------------------------------------------- the controller, in-process


class ControllerThread:
    """``rauta.controller.Controller`` plus its admin server on a loop in its own thread."""

    def __init__(self, lab: Lab, *, controller_name: str, lease_ns: str, lease_name: str
                 ) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="rauta-controller")
        self.thread.start()
        self.admin_port = free_port()
        self.run(self._start(str(lab.kubeconfig), controller_name, lease_ns, lease_name))

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self, kubeconfig: str, controller_name: str, lease_ns: str,
                     lease_name: str) -> None:
        self.client = await KubeClient.connect(kubeconfig)
        self.registry = CollectorRegistry()
        self.ctl = Controller(self.client, controller_name=controller_name,
                              lease_namespace=lease_ns,
                              lease_name=lease_name, identity=f"api-machine-{os.getpid()}",
                              registry=self.registry)
        self.runner = await start_admin(
            admin_app(self.ctl.reconciler, self.registry, not_ready=self.ctl.not_ready),
            f"127.0.0.1:{self.admin_port}")
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(self.ctl.run(self.stop_event))
        deadline = time.monotonic() + 20
        while not (self.ctl.synced.is_set() and self.ctl.elector.is_leader()):
            if self.task.done():
                self.task.result()
            if time.monotonic() > deadline:
                raise AssertionError("controller did not sync and lead within 20s")
            await asyncio.sleep(0.05)

    async def _stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, 15)
        if hasattr(self.ctl.sink, "close"):
            await self.ctl.sink.close()
        await self.ctl.proxy.close(0.5)
        await self.runner.cleanup()
        await self.client.close()

    def close(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)

    def admin_config(self) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        try:
            conn.request("GET", "/config")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def counters(self) -> tuple[float, float, int]:
        """(status PUTs written, status PUT conflicts, applies)."""
        written = conflicts = 0.0
        for metric in self.registry.collect():
            if metric.name == "rauta_status_writes":
                for s in metric.samples:
                    if s.name.endswith("_total"):
                        if s.labels.get("outcome") == "written":
                            written += s.value
                        elif s.labels.get("outcome") == "conflict":
                            conflicts += s.value
        return written, conflicts, self.ctl.reconciler.stats.applies


# ---------------------------------------------------------------- the shared environment


class Env:
    """What lives for the whole test: namespaces, GatewayClass, controller, ports."""

    def __init__(self, lab: Lab) -> None:
        tag = uuid.uuid4().hex[:6]
        self.lab = lab
        self.api = Api(lab)
        self.ns_a, self.ns_b = f"am-a-{tag}", f"am-b-{tag}"
        self.gc = f"am-{tag}"
        self.controller_name = f"example.net/api-machine-{tag}"
        self.ports = (free_port(), free_port())
        self.timings: list[str] = []
        self.totals = {"steps": 0, "converge_s": 0.0, "slowest_s": 0.0}
        self.seen = {"rules": 0, "route_statuses": 0, "accepted": 0, "backends": 0}
        for ns in (self.ns_a, self.ns_b):
            self.api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        self.api.ok("POST", gw_path(None, "gatewayclasses"), {
            "apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": self.gc},
            "spec": {"controllerName": self.controller_name}})
        disc = self.api.ok("GET", f"/apis/{GW}/v1")
        self.grant_version = "v1" if any(
            r.get("name") == "referencegrants" for r in disc.get("resources") or ()) \
            else "v1beta1"
        self.ctl = ControllerThread(lab, controller_name=self.controller_name,
                                    lease_ns=self.ns_a, lease_name=f"am-lease-{tag}")

    # -- listing the API server's state

    def _items(self, path: str, kind: str, api_version: str) -> list[dict[str, Any]]:
        out = self.api.ok("GET", path)
        items = out.get("items") or []
        for i in items:
            i.setdefault("kind", kind)
            i.setdefault("apiVersion", api_version)
        return items

    def listing(self) -> list[dict[str, Any]]:
        """Every object that can influence our controller's output: our GatewayClass,
        all Namespaces (labels), and every watched kind in our two namespaces."""
        objs: list[dict[str, Any]] = []
        gc = self.api.ok("GET", gw_path(None, "gatewayclasses", self.gc))
        gc.setdefault("kind", "GatewayClass")
        objs.append(gc)
        objs += self._items("/api/v1/namespaces", "Namespace", "v1")
        for ns in (self.ns_a, self.ns_b):
            objs += self._items(gw_path(ns, "gateways"), "Gateway", f"{GW}/v1")
            objs += self._items(gw_path(ns, "httproutes"), "HTTPRoute", f"{GW}/v1")
            objs += self._items(gw_path(ns, "referencegrants", version=self.grant_version),
                                "ReferenceGrant", f"{GW}/{self.grant_version}")
            objs += self._items(core_path(ns, "services"), "Service", "v1")
            objs += self._items(eps_path(ns), "EndpointSlice", "discovery.k8s.io/v1")
            objs += [s for s in self._items(core_path(ns, "secrets"), "Secret", "v1")
                     if s.get("type") == "kubernetes.io/tls"]
        return objs

    # -- the comparison

    def differences(self) -> list[str]:
        objs = self.listing()
        for o in objs:  # the API server accepted it, so rauta's model must parse it
            try:
                parse_object(o)
            except ResourceError as exc:
                raise AssertionError(f"an object the API server serves does not parse: {exc}"
                                     f"\n{json.dumps(o)[:1500]}") from None
        expected = translate(Snapshot.from_dicts(objs), controller_name=self.controller_name)
        self._tally(expected)
        diffs: list[str] = []
        doc = self.ctl.admin_config()["config"]
        want_doc = json.loads(json.dumps(config_document(expected.config)))
        if doc != want_doc:
            diffs.append(f"/config differs:\n  got  {json.dumps(doc)[:3000]}\n"
                         f"  want {json.dumps(want_doc)[:3000]}")
        if self.ctl.ctl.reconciler.config != expected.config:
            diffs.append("reconciler.config != translate(API state).config")
        diffs += self.status_differences(objs, expected)
        return diffs

    def _tally(self, expected: Translation) -> None:
        """How much the checks saw (so a run that checks nothing is visible)."""
        rules = [r for p in expected.config.ports for lr in p.listeners for r in lr.rules]
        self.seen["rules"] += len(rules)
        self.seen["backends"] += sum(1 for r in rules for b in r.backends
                                     if b.invalid is None and b.endpoints)
        parents = [p for r in expected.statuses.routes for p in r.parents]
        self.seen["route_statuses"] += len(parents)
        self.seen["accepted"] += sum(1 for p in parents for c in p.conditions
                                     if c.type == "Accepted" and c.status == "True")

    def status_differences(self, objs: list[dict[str, Any]], expected: Translation
                           ) -> list[str]:
        diffs: list[str] = []
        classes = {s.name: s for s in expected.statuses.gateway_classes}
        gateways = {(s.namespace, s.name): s for s in expected.statuses.gateways}
        routes = {(s.namespace, s.name): s for s in expected.statuses.routes}
        for o in objs:
            kind, meta = o["kind"], o["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            status = o.get("status") or {}
            where = f"{kind} {'/'.join(k for k in key if k)} (generation {meta.get('generation')})"
            if kind == "GatewayClass":
                want_gc = gateway_class_status_dict(classes[meta["name"]], None, "T")
                got, want = norm_conds(status.get("conditions")), norm_conds(
                    want_gc["conditions"])
            elif kind == "Gateway":
                if key not in gateways:
                    continue
                got = norm_gateway(status)
                want = norm_gateway(gateway_status_dict(gateways[key], None, "T"))
            elif kind == "HTTPRoute":
                got = [norm_parent(p) for p in status.get("parents") or ()
                       if p.get("controllerName") == self.controller_name]
                want = [norm_parent(p) for p in merge_route_parents(
                    routes[key], (), self.controller_name, "T")] if key in routes else []
            else:
                continue
            if got != want:
                diffs.append(f"{where} status differs:\n  got  {json.dumps(got)}\n"
                             f"  want {json.dumps(want)}")
        return diffs

    def converge(self, what: str) -> float:
        """Wait until consistent twice in a row (bounded); returns the seconds it took."""
        t0 = time.monotonic()
        deadline = t0 + CONVERGE_TIMEOUT
        good = 0
        diffs: list[str] = []
        while True:
            diffs = self.differences()
            good = good + 1 if not diffs else 0
            if good >= 2:
                took = time.monotonic() - t0
                self.totals["steps"] += 1
                self.totals["converge_s"] += took
                self.totals["slowest_s"] = max(self.totals["slowest_s"], took)
                return took
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"after {what}: not consistent with the API server within "
                    f"{CONVERGE_TIMEOUT}s:\n" + "\n".join(diffs))
            time.sleep(0.1 if diffs else 0.15)

    def quiet(self, seconds: float = 1.0) -> None:
        """No status write and no apply while nothing changes."""
        before = self.ctl.counters()
        time.sleep(seconds)
        after = self.ctl.counters()
        assert before == after, f"controller not quiet with nothing changing: {before} -> {after}"

    def reset(self) -> None:
        """Delete every object an example created (namespaces and class stay)."""
        for ns in (self.ns_a, self.ns_b):
            paths = [gw_path(ns, "httproutes"), gw_path(ns, "gateways"),
                     gw_path(ns, "referencegrants", version=self.grant_version),
                     core_path(ns, "services"), eps_path(ns)]
            for coll in paths:
                for item in self.api.ok("GET", coll).get("items") or ():
                    self.api.ok("DELETE", f"{coll}/{item['metadata']['name']}", allow=(404,))
        self.api.patch(f"/api/v1/namespaces/{self.ns_b}", {"metadata": {"labels": {"team": None}}})

    def close(self) -> None:
        try:
            self.ctl.close()
        finally:
            for ns in (self.ns_a, self.ns_b):
                self.api.call("DELETE", f"/api/v1/namespaces/{ns}")
            self.api.call("DELETE", gw_path(None, "gatewayclasses", self.gc))
            self.api.close()


def norm_conds(conds: Any) -> list[dict[str, Any]]:
    keys = ("type", "status", "reason", "message", "observedGeneration")
    return [{k: c.get(k) for k in keys} for c in conds or ()]


def norm_gateway(status: dict[str, Any]) -> dict[str, Any]:
    return {"conditions": norm_conds(status.get("conditions")),
            "listeners": [{"name": lst.get("name"),
                           "supportedKinds": lst.get("supportedKinds"),
                           "attachedRoutes": lst.get("attachedRoutes"),
                           "conditions": norm_conds(lst.get("conditions"))}
                          for lst in status.get("listeners") or ()]}


def norm_parent(p: dict[str, Any]) -> dict[str, Any]:
    return {"parentRef": p.get("parentRef"), "controllerName": p.get("controllerName"),
            "conditions": norm_conds(p.get("conditions"))}


# ---------------------------------------------------------------- strategies

NS = st.sampled_from(("a", "b"))
ROUTE_NAMES = st.sampled_from(("r0", "r1", "r2", "r3"))

backend_refs = st.lists(st.fixed_dictionaries({
    "name": st.sampled_from((*SERVICES, "s3")),
    "ns": st.sampled_from((None, "a", "b")),
    "port": st.sampled_from((80, 8080)),
    "weight": st.integers(0, 3),
}), max_size=2)

route_rules = st.lists(st.fixed_dictionaries({
    "paths": st.lists(st.tuples(st.sampled_from(("PathPrefix", "Exact")),
                                st.sampled_from(PATHS)), max_size=2),
    "redirect": st.booleans(),
    "backends": backend_refs,
}), min_size=1, max_size=2)

# None: one parentRef to the whole Gateway; else sectionNames (unique, as the CRD demands).
parent_sections = st.one_of(
    st.none(),
    st.lists(st.sampled_from(("l1", "l2", "nope")), min_size=1, max_size=2, unique=True))

service_ports = st.one_of(
    st.none(),  # headless, no ports
    st.lists(st.fixed_dictionaries({
        "port": st.sampled_from((80, 8080)),
        "name": st.sampled_from(("http", "alt")),
        "appProtocol": st.sampled_from((None, "http", "kubernetes.io/h2c", "kubernetes.io/ws")),
    }), min_size=1, max_size=2, unique_by=(lambda p: p["port"], lambda p: p["name"])))

endpoints = st.lists(st.tuples(st.integers(0, 3), st.integers(1, 9),
                               st.sampled_from((True, False, None))),
                     max_size=3, unique_by=lambda e: (e[0], e[1]))


class ApiMachine(RuleBasedStateMachine):
    env: Env  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        self.t0 = time.monotonic()
        self.steps = 0
        # What exists, so that deletes and re-creates act on something: (kind, ns, name).
        self.existing: set[tuple[str, str, str]] = set()
        self.gateway_body = self._gateway()
        self.env.api.ok("POST", gw_path(self.env.ns_a, "gateways"), self.gateway_body)

    # -- names and bodies

    def ns(self, which: str | None) -> str:
        return {"a": self.env.ns_a, "b": self.env.ns_b}[which or "a"]

    def _have(self, kind: str) -> list[tuple[str, str, str]]:
        return sorted(k for k in self.existing if k[0] == kind)

    def _gateway(self) -> dict[str, Any]:
        p1, p2 = self.env.ports
        return {"apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": "gw"},
                "spec": {"gatewayClassName": self.env.gc, "listeners": [
                    {"name": "l1", "port": p1, "protocol": "HTTP", "hostname": "*.example.com"},
                    {"name": "l2", "port": p2, "protocol": "HTTP",
                     "allowedRoutes": {"namespaces": {"from": "Same"}}}]}}

    def _route_spec(self, route_ns: str, hostnames: list[str], sections: list[str] | None,
                    other_parent: bool, rules: list[dict[str, Any]]) -> dict[str, Any]:
        parent: dict[str, Any] = {"name": "gw"}
        if route_ns != self.env.ns_a or other_parent:
            parent["namespace"] = self.env.ns_a
        refs = [parent] if sections is None else [{**parent, "sectionName": s}
                                                   for s in sections]
        if other_parent:
            refs.append({"name": "gw-elsewhere"})  # not a Gateway of ours: no status from us
        out_rules = []
        for r in rules:
            rule: dict[str, Any] = {}
            if r["paths"]:
                rule["matches"] = [{"path": {"type": t, "value": v}} for t, v in r["paths"]]
            if r["redirect"]:
                rule["filters"] = [{"type": "RequestRedirect", "requestRedirect": {
                    "hostname": "redirect.example.net", "statusCode": 302}}]
            else:
                refs_out = []
                for b in r["backends"]:
                    ref: dict[str, Any] = {"name": b["name"], "port": b["port"],
                                           "weight": b["weight"]}
                    if b["ns"] is not None:
                        ref["namespace"] = self.ns(b["ns"])
                    refs_out.append(ref)
                if refs_out:
                    rule["backendRefs"] = refs_out
            out_rules.append(rule)
        return {"parentRefs": refs, "hostnames": hostnames or None, "rules": out_rules}

    def _upsert(self, path: str, coll: str, name: str, body: dict[str, Any],
                create: dict[str, Any]) -> None:
        """Merge-patch ``body`` onto the object, or create it (``create``) when missing."""
        status, out = self.env.api.call("PATCH", path, body, "application/merge-patch+json")
        if status == 404:
            self.env.api.ok("POST", coll, create)
        elif not 200 <= status <= 299:
            raise AssertionError(f"PATCH {path} -> {status}: {out}")

    # -- a random starting population: attachable routes to Services with endpoints

    @initialize(svc_a=st.sampled_from((None, "http", "kubernetes.io/ws")),
                eps_a=endpoints.filter(bool), eps_b=endpoints.filter(bool),
                host=st.sampled_from(HOSTNAMES), section=st.sampled_from((None, "l1", "l2")))
    def populate(self, svc_a: str | None, eps_a: list[Any], eps_b: list[Any], host: str,
                 section: str | None) -> None:
        http = {"name": "http", "port": 80} | ({"appProtocol": svc_a} if svc_a else {})
        self.put_service("a", "s0", [http])
        self.put_service("b", "s1", [{"name": "http", "port": 80}])
        self.put_slice("a", "s0", eps_a, "http", 8080)
        self.put_slice("b", "s1", eps_b, "http", 8080)
        backend = {"ns": None, "port": 80, "weight": 1}
        self.put_route("a", "r0", [host], None if section is None else [section], False,
                       [{"paths": [], "redirect": False, "backends": [backend | {"name": "s0"}]}])
        self.put_route("b", "r1", [], None, False,
                       [{"paths": [("PathPrefix", "/b")], "redirect": False,
                         "backends": [backend | {"name": "s1"}]}])

    # -- rules: HTTPRoutes

    @rule(which=NS, name=ROUTE_NAMES,
          hostnames=st.lists(st.sampled_from(HOSTNAMES), max_size=2, unique=True),
          sections=parent_sections, other_parent=st.booleans(), rules=route_rules)
    def put_route(self, which: str, name: str, hostnames: list[str], sections: list[str] | None,
                  other_parent: bool, rules: list[dict[str, Any]]) -> None:
        self.steps += 1
        ns = self.ns(which)
        spec = self._route_spec(ns, hostnames, sections, other_parent, rules)
        self._upsert(gw_path(ns, "httproutes", name), gw_path(ns, "httproutes"), name,
                     {"spec": spec},
                     {"apiVersion": f"{GW}/v1", "kind": "HTTPRoute", "metadata": {"name": name},
                      "spec": {k: v for k, v in spec.items() if v is not None}})
        self.existing.add(("HTTPRoute", which, name))

    @rule(burst=st.lists(st.tuples(NS, ROUTE_NAMES,
                                   st.lists(st.sampled_from(HOSTNAMES), max_size=2, unique=True),
                                   parent_sections, st.booleans(), route_rules),
                         min_size=2, max_size=4))
    def burst_of_routes(self, burst: list[tuple[Any, ...]]) -> None:
        """Several route writes back to back, with no wait in between."""
        for args in burst:
            self.put_route(*args)

    @precondition(lambda self: self._have("HTTPRoute"))
    @rule(data=st.data())
    def delete_route(self, data: st.DataObject) -> None:
        self.steps += 1
        key = data.draw(st.sampled_from(self._have("HTTPRoute")), label="route")
        self.env.api.ok("DELETE", gw_path(self.ns(key[1]), "httproutes", key[2]))
        self.existing.discard(key)

    @precondition(lambda self: self._have("HTTPRoute"))
    @rule(data=st.data())
    def recreate_route(self, data: st.DataObject) -> None:
        """Delete and at once re-create the same route (new uid, generation 1 again)."""
        self.steps += 1
        _, which, name = data.draw(st.sampled_from(self._have("HTTPRoute")), label="route")
        path = gw_path(self.ns(which), "httproutes", name)
        obj = self.env.api.ok("GET", path)
        self.env.api.ok("DELETE", path)
        self.env.api.ok("POST", gw_path(self.ns(which), "httproutes"), {
            "apiVersion": f"{GW}/v1", "kind": "HTTPRoute", "metadata": {"name": name},
            "spec": obj["spec"]})

    # -- rules: Services and EndpointSlices

    @rule(which=NS, name=st.sampled_from(SERVICES), ports=service_ports)
    def put_service(self, which: str, name: str, ports: list[dict[str, Any]] | None) -> None:
        self.steps += 1
        ns = self.ns(which)
        path = core_path(ns, "services", name)
        headless = ports is None
        spec_ports = [{k: v for k, v in p.items() if v is not None} for p in ports or ()]
        status, cur = self.env.api.call("GET", path)
        if status == 200 and (cur["spec"].get("clusterIP") == "None") != headless:
            self.env.api.ok("DELETE", path)  # clusterIP is immutable
            status = 404
        if status == 200:
            self.env.api.patch(path, {"spec": {"ports": spec_ports or None}})
        else:
            spec: dict[str, Any] = {"ports": spec_ports} if spec_ports else {}
            if headless:
                spec["clusterIP"] = "None"
            self.env.api.ok("POST", core_path(ns, "services"),
                            {"metadata": {"name": name}, "spec": spec})
        self.existing.add(("Service", which, name))

    @precondition(lambda self: self._have("Service"))
    @rule(data=st.data())
    def delete_service(self, data: st.DataObject) -> None:
        self.steps += 1
        key = data.draw(st.sampled_from(self._have("Service")), label="service")
        self.env.api.ok("DELETE", core_path(self.ns(key[1]), "services", key[2]))
        self.existing.discard(key)

    @rule(which=NS, svc=st.sampled_from(SERVICES), eps=endpoints,
          port_name=st.sampled_from((None, "http", "alt", "")),
          port=st.sampled_from((8080, 9090)))
    def put_slice(self, which: str, svc: str, eps: list[tuple[int, int, bool | None]],
                  port_name: str | None, port: int) -> None:
        self.steps += 1
        ns = self.ns(which)
        name = f"{svc}-x"
        body: dict[str, Any] = {
            "endpoints": [{"addresses": [f"10.244.{a}.{b}"]}
                          | ({"conditions": {"ready": r}} if r is not None else {})
                          for a, b, r in eps],
            "ports": None if port_name is None else [{"name": port_name, "port": port,
                                                      "protocol": "TCP"}],
        }
        self._upsert(eps_path(ns, name), eps_path(ns), name, body, {
            "metadata": {"name": name, "labels": {
                "kubernetes.io/service-name": svc,
                "endpointslice.kubernetes.io/managed-by": "rauta-api-machine"}},
            "addressType": "IPv4", **{k: v for k, v in body.items() if v is not None}})
        self.existing.add(("EndpointSlice", which, name))

    @precondition(lambda self: self._have("EndpointSlice"))
    @rule(data=st.data())
    def delete_slice(self, data: st.DataObject) -> None:
        self.steps += 1
        key = data.draw(st.sampled_from(self._have("EndpointSlice")), label="slice")
        self.env.api.ok("DELETE", eps_path(self.ns(key[1]), key[2]))
        self.existing.discard(key)

    # -- rules: ReferenceGrants and namespace labels

    @rule(to=NS, name=st.sampled_from(("g0", "g1")),
          svc_name=st.sampled_from((None, *SERVICES)))
    def put_grant(self, to: str, name: str, svc_name: str | None) -> None:
        self.steps += 1
        to_ns, from_ns = self.ns(to), self.ns("b" if to == "a" else "a")
        version = self.env.grant_version
        spec = {"from": [{"group": GW, "kind": "HTTPRoute", "namespace": from_ns}],
                "to": [{"group": "", "kind": "Service"} | ({"name": svc_name} if svc_name else {})]}
        self._upsert(gw_path(to_ns, "referencegrants", name, version=version),
                     gw_path(to_ns, "referencegrants", version=version), name, {"spec": spec},
                     {"apiVersion": f"{GW}/{version}", "kind": "ReferenceGrant",
                      "metadata": {"name": name}, "spec": spec})
        self.existing.add(("ReferenceGrant", to, name))

    @precondition(lambda self: self._have("ReferenceGrant"))
    @rule(data=st.data())
    def delete_grant(self, data: st.DataObject) -> None:
        self.steps += 1
        key = data.draw(st.sampled_from(self._have("ReferenceGrant")), label="grant")
        self.env.api.ok("DELETE", gw_path(self.ns(key[1]), "referencegrants", key[2],
                                          version=self.env.grant_version))
        self.existing.discard(key)

    @rule(team=st.sampled_from((None, "b", "c")))
    def label_ns_b(self, team: str | None) -> None:
        self.steps += 1
        self.env.api.patch(f"/api/v1/namespaces/{self.env.ns_b}",
                           {"metadata": {"labels": {"team": team}}})

    # -- rules: the Gateway

    @rule(allowed=st.sampled_from(("Same", "All", "Selector")),
          l1_host=st.sampled_from((None, "*.example.com", "a.example.com")))
    def update_gateway(self, allowed: str, l1_host: str | None) -> None:
        self.steps += 1
        listeners = self.gateway_body["spec"]["listeners"]
        listeners[0] = {k: v for k, v in listeners[0].items() if k != "hostname"} | (
            {"hostname": l1_host} if l1_host else {})
        ns_sel: dict[str, Any] = {"from": allowed}
        if allowed == "Selector":
            ns_sel["selector"] = {"matchLabels": {"team": "b"}}
        listeners[1]["allowedRoutes"] = {"namespaces": ns_sel}
        self.env.api.patch(gw_path(self.env.ns_a, "gateways", "gw"),
                           {"spec": {"listeners": listeners}})

    @rule()
    def recreate_gateway(self) -> None:
        """Delete and at once re-create the Gateway with the same spec."""
        self.steps += 1
        self.env.api.ok("DELETE", gw_path(self.env.ns_a, "gateways", "gw"))
        self.env.api.ok("POST", gw_path(self.env.ns_a, "gateways"), self.gateway_body)

    # -- the check

    @invariant()
    def controller_agrees_with_the_model(self) -> None:
        self.env.converge(f"step {self.steps}")

    def teardown(self) -> None:
        try:
            self.env.quiet()
        finally:
            took = time.monotonic() - self.t0
            self.env.timings.append(f"{self.steps} writes in {took:.1f}s")
            self.env.reset()
            self.env.converge("reset")


def test_api_machine(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    env = Env(lab)
    ApiMachine.env = env
    t0 = time.monotonic()
    try:
        run_state_machine_as_test(ApiMachine, settings=settings(
            max_examples=MAX_EXAMPLES, stateful_step_count=STEPS, deadline=None,
            suppress_health_check=list(HealthCheck), database=None,
            phases=(Phase.explicit, Phase.generate),  # no shrinking: each step is slow
            print_blob=True))
    finally:
        written, conflicts, applies = env.ctl.counters()
        n = env.totals["steps"]
        with capsys.disabled():
            print(f"\n[api-machine] {len(env.timings)} examples in {time.monotonic() - t0:.1f}s: "
                  + "; ".join(env.timings)
                  + f"\n[api-machine] {n} checks, mean convergence "
                  f"{env.totals['converge_s'] / max(n, 1) * 1000:.0f} ms (incl. two listings), "
                  f"slowest {env.totals['slowest_s'] * 1000:.0f} ms; controller: "
                  f"{applies} applies, {written:.0f} status writes, {conflicts:.0f} conflicts; "
                  f"summed over checks: {env.seen}")
        env.close()
