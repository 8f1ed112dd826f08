"""Incremental translation equals full translation, after every step of random changes.

A hypothesis state machine keeps a set of objects of every kind the model reads
(GatewayClass, Gateway, HTTPRoute, Service, EndpointSlice, ReferenceGrant, Namespace,
Secret) drawn from small name pools, so that changes collide: routes reference Services
that come and go, EndpointSlices move between Services, ReferenceGrants open and close
cross-namespace references, Gateways change class, listeners and hostnames, Namespaces
change the labels a listener selector reads. Each step creates, updates or deletes one or
a few objects (or changes the proxy's certificate verdicts), feeds the changed keys to
``incremental.update`` and asserts that the result equals ``translate`` of the new
snapshot: the RouterConfig and every status.
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from rauta.model import incremental
from rauta.model.resources import Resource, parse_object
from rauta.model.snapshot import Key, Snapshot, key_of
from rauta.model.status import Applied
from rauta.model.translate import translate

CTRL = "rauta.io/gateway-controller"
GW = "gateway.networking.k8s.io"
NAMESPACES = ("app", "other", "infra")
TIMES = ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z")
SERVICES = ("svc1", "svc2")
HOSTS = ("a.example.com", "*.example.com", "b.example.com")


def meta(name: str, ns: str | None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, **extra}
    if ns is not None:
        out["namespace"] = ns
    return out


namespaces = st.builds(
    lambda name, team: {"kind": "Namespace",
                        "metadata": meta(name, None, labels={"team": team} if team else {})},
    st.sampled_from(NAMESPACES), st.sampled_from(("a", "b", None)))

classes = st.builds(
    lambda name, ctrl: {"kind": "GatewayClass", "metadata": meta(name, None),
                        "spec": {"controllerName": ctrl}},
    st.sampled_from(("rauta", "other")), st.sampled_from((CTRL, "example.net/else")))


def _listener(name: str, port: int, protocol: str, host: str | None, allowed: str,
              cert_ns: str | None) -> dict[str, Any]:
    lis: dict[str, Any] = {"name": name, "port": port, "protocol": protocol}
    if host is not None:
        lis["hostname"] = host
    if allowed == "Selector":
        lis["allowedRoutes"] = {"namespaces": {"from": "Selector", "selector": {
            "matchLabels": {"team": "a"}}}}
    else:
        lis["allowedRoutes"] = {"namespaces": {"from": allowed}}
    if protocol == "HTTPS":
        ref: dict[str, Any] = {"name": "cert"}
        if cert_ns is not None:
            ref["namespace"] = cert_ns
        lis["tls"] = {"mode": "Terminate", "certificateRefs": [ref]}
    return lis


listeners = st.builds(
    _listener, st.sampled_from(("http", "https", "extra")), st.sampled_from((80, 8080, 443)),
    st.sampled_from(("HTTP", "HTTP", "HTTPS", "TCP")), st.none() | st.sampled_from(HOSTS),
    st.sampled_from(("All", "Same", "Selector")), st.none() | st.sampled_from(NAMESPACES))

gateways = st.builds(
    lambda name, ns, cls, created, lis: {
        "kind": "Gateway", "metadata": meta(name, ns, creationTimestamp=created),
        "spec": {"gatewayClassName": cls, "listeners": lis}},
    st.sampled_from(("gw", "gw2")), st.sampled_from(("infra", "app")),
    st.sampled_from(("rauta", "rauta", "other")), st.sampled_from(TIMES),
    st.lists(listeners, min_size=1, max_size=3, unique_by=lambda lis: lis["name"]))


def _backend(name: str, ns: str | None, port: int) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": name, "port": port}
    if ns is not None:
        ref["namespace"] = ns
    return ref


backend_refs = st.builds(_backend, st.sampled_from(SERVICES),
                         st.none() | st.sampled_from(("app", "other")), st.sampled_from((80, 81)))

filters = st.one_of(
    st.builds(lambda ref: {"type": "RequestMirror", "requestMirror": {"backendRef": ref}},
              backend_refs),
    st.just({"type": "RequestRedirect", "requestRedirect": {"hostname": "elsewhere.test"}}),
    st.just({"type": "ExtensionRef", "extensionRef": {"group": "x", "kind": "Y", "name": "z"}}),
)

matches = st.builds(
    lambda kind, value: {"path": {"type": kind, "value": value}},
    st.sampled_from(("PathPrefix", "Exact")), st.sampled_from(("/", "/a", "/b/c")))

route_rules = st.builds(
    lambda ms, refs, fs: {k: v for k, v in (("matches", ms), ("backendRefs", refs),
                                            ("filters", fs)) if v},
    st.lists(matches, max_size=2), st.lists(backend_refs, max_size=2),
    st.lists(filters, max_size=1))


def _parent(name: str, ns: str | None, section: str | None, port: int | None
            ) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": name}
    for k, v in (("namespace", ns), ("sectionName", section), ("port", port)):
        if v is not None:
            ref[k] = v
    return ref


parent_refs = st.builds(_parent, st.sampled_from(("gw", "gw2")),
                        st.sampled_from(("infra", "infra", "app", None)),
                        st.sampled_from((None, None, None, "http", "https")),
                        st.sampled_from((None, None, None, 80, 443)))

routes = st.builds(
    lambda name, ns, created, parents, hosts, rules: {
        "kind": "HTTPRoute", "metadata": meta(name, ns, creationTimestamp=created),
        "spec": {"parentRefs": parents, "hostnames": hosts, "rules": rules}},
    st.sampled_from(("r1", "r2", "r3")), st.sampled_from(("app", "other")),
    st.sampled_from(TIMES), st.lists(parent_refs, min_size=1, max_size=2),
    st.lists(st.sampled_from(HOSTS), max_size=2, unique=True),
    st.lists(route_rules, min_size=1, max_size=2))

services = st.builds(
    lambda name, ns, ports, proto, external: {
        "kind": "Service", "metadata": meta(name, ns),
        "spec": ({"type": "ExternalName", "externalName": "x.test"} if external else {})
        | {"ports": [{"name": "http", "port": p, "targetPort": 8080,
                      **({"appProtocol": proto} if proto else {})} for p in ports]}},
    st.sampled_from(SERVICES), st.sampled_from(("app", "other")),
    st.lists(st.sampled_from((80, 81)), min_size=1, max_size=2, unique=True),
    st.sampled_from((None, None, "http", "kubernetes.io/h2c")),
    st.sampled_from((False, False, False, True)))

slices = st.builds(
    lambda name, ns, svc, named, addrs, ready: {
        "kind": "EndpointSlice",
        "metadata": meta(name, ns, labels={"kubernetes.io/service-name": svc} if svc else {}),
        "addressType": "IPv4",
        **({"ports": [{"name": "http", "port": 8080}]} if named else {}),
        "endpoints": [{"addresses": [a], "conditions": {"ready": ready}} for a in addrs]},
    st.sampled_from(("s1", "s2")), st.sampled_from(("app", "other")),
    st.none() | st.sampled_from(SERVICES), st.booleans(),
    st.lists(st.sampled_from(("10.0.0.1", "10.0.0.2")), max_size=2, unique=True),
    st.sampled_from((True, False, None)))

grants = st.builds(
    lambda name, ns, from_kind, from_ns, to_kind, to_name: {
        "kind": "ReferenceGrant", "metadata": meta(name, ns),
        "spec": {"from": [{"group": GW, "kind": from_kind, "namespace": from_ns}],
                 "to": [{"group": "", "kind": to_kind, **({"name": to_name} if to_name else {})}]}},
    st.sampled_from(("g1", "g2")), st.sampled_from(NAMESPACES),
    st.sampled_from(("HTTPRoute", "Gateway")), st.sampled_from(NAMESPACES),
    st.sampled_from(("Service", "Secret")), st.none() | st.sampled_from(("svc1", "cert")))

# Structurally valid PEM (the model checks the blocks; the proxy would reject the bytes,
# which is what ``proxy_reports`` plays).
PEM = {"tls.crt": "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
       "tls.key": "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"}


def _secret(ns: str, kind: str) -> dict[str, Any]:
    data = PEM if kind != "garbage" else {"tls.crt": "x", "tls.key": "y"}
    return {"kind": "Secret", "metadata": meta("cert", ns),
            "type": "Opaque" if kind == "opaque" else "kubernetes.io/tls", "stringData": data}


secrets = st.builds(_secret, st.sampled_from(("infra", "app")),
                    st.sampled_from(("tls", "opaque", "garbage")))

OBJECTS = st.one_of(namespaces, classes, gateways, routes, routes, services, slices, grants,
                    secrets)
POOLS = (None, "127.0.1.0/30")
# The world every run starts from: a working Gateway (HTTP and HTTPS listeners) with
# Services and EndpointSlices in two namespaces, so that drawn routes attach and program.
BASE: list[dict[str, Any]] = [
    {"kind": "GatewayClass", "metadata": meta("rauta", None), "spec": {"controllerName": CTRL}},
    {"kind": "Gateway", "metadata": meta("gw", "infra", creationTimestamp=TIMES[0]),
     "spec": {"gatewayClassName": "rauta", "listeners": [
         _listener("http", 80, "HTTP", None, "All", None),
         _listener("https", 443, "HTTPS", "*.example.com", "All", None)]}},
    _secret("infra", "tls"),
    *({"kind": "Service", "metadata": meta(svc, ns),
       "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
      for ns in ("app", "other") for svc in SERVICES),
    *({"kind": "EndpointSlice", "addressType": "IPv4",
       "metadata": meta(f"s-{svc}", ns, labels={"kubernetes.io/service-name": svc}),
       "endpoints": [{"addresses": ["10.0.0.9"], "conditions": {"ready": True}}]}
      for ns in ("app", "other") for svc in SERVICES),
]


class IncrementalMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[Key, Resource] = {}
        self.applied: Applied | None = None
        self.pool: str | None = None
        self.state: incremental.Incremental | None = None
        self.most_rules = self.most_recomputed = 0  # coverage statistics (hypothesis events)

    def step(self, changed: set[Key]) -> None:
        assert self.state is not None
        snapshot = Snapshot(self.objects)
        self.state = incremental.update(self.state, snapshot, changed, applied=self.applied)

    @initialize(first=st.lists(routes, min_size=1, max_size=4), objs=st.lists(OBJECTS, max_size=8),
                pool=st.sampled_from(POOLS))
    def begin(self, first: list[dict[str, Any]], objs: list[dict[str, Any]],
              pool: str | None) -> None:
        self.pool = pool
        for raw in [*BASE, *first, *objs]:
            obj = parse_object(raw)
            self.objects[key_of(obj)] = obj
        self.state = incremental.start(Snapshot(self.objects), address_pool=pool)

    def store(self, raws: list[dict[str, Any]]) -> None:
        """Create or replace these objects, then take one incremental step over them."""
        changed = set()
        for raw in raws:
            obj = parse_object(raw)
            self.objects[key_of(obj)] = obj
            changed.add(key_of(obj))
        self.step(changed)

    @rule(raws=st.lists(OBJECTS, min_size=1, max_size=3))
    def put(self, raws: list[dict[str, Any]]) -> None:
        """Create or replace one to three objects in one step."""
        self.store(raws)

    @precondition(lambda self: self.objects)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.objects)), label="delete")
        del self.objects[key]
        self.step({key})

    @rule(bad=st.lists(st.sampled_from(("infra/cert", "app/cert")), max_size=2, unique=True),
          none=st.booleans())
    def proxy_reports(self, bad: list[str], none: bool) -> None:
        """The proxy reports which certificates it could not load (or nothing at all)."""
        self.applied = None if none else Applied(
            invalid_certificates=tuple((name, "bad PEM") for name in sorted(bad)))
        self.step(set())

    @invariant()
    def equals_full_translation(self) -> None:
        if self.state is None:
            return
        snapshot = Snapshot(self.objects)
        full = translate(snapshot, applied=self.applied, address_pool=self.pool)
        got = self.state.translation
        assert got.config == full.config
        assert got.statuses == full.statuses
        rules = sum(len(lr.rules) for p in full.config.ports for lr in p.listeners)
        self.most_rules = max(self.most_rules, rules)
        self.most_recomputed = max(self.most_recomputed, self.state.recomputed)

    def teardown(self) -> None:
        event(f"most programmed rules in a step: {min(self.most_rules, 8)}"
              + ("+" if self.most_rules >= 8 else ""))
        event(f"most routes recomputed by one step: {min(self.most_recomputed, 3)}"
              + ("+" if self.most_recomputed >= 3 else ""))


IncrementalMachine.TestCase.settings = settings(stateful_step_count=30)
TestIncremental = IncrementalMachine.TestCase
