"""Stateful test: rauta's translator + router agree with a naive reference interpreter.

The state is a set of HTTPRoutes (all attached to one HTTP listener on port 80 with no
hostname, routes from any namespace allowed), each with its own Service and one ready
endpoint, so every routed request is a ``forward``. Rules add, replace, modify and remove
routes; ``send_requests`` draws requests from pools that overlap the route pools and checks
that ``route(translate(snapshot).config, req)`` picks the same (route, rule, match) as
``tests.stateful.reference`` (or that both answer 404). Every mutation also checks that
translating a shuffled copy of the input gives an identical RouterConfig, byte for byte.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from rauta.model.routing import RequestView, route
from rauta.model.snapshot import Snapshot
from rauta.model.translate import translate
from tests.stateful.reference import reference_route

# ------------------------------------------------------------------------------ pools

NAMESPACES = ("default", "team", "team-a")  # "team" / "team-a": "{ns}/{name}" ordering
NAMES = ("r1", "r2", "r3")
TIMESTAMPS = ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z",
              "2023-12-31T23:59:59Z")
ROUTE_HOSTS = ("*.example.com", "foo.example.com", "a.foo.example.com", "*.foo.example.com",
               "example.com")
EXACT_PATHS = ("/", "/a", "/a/", "/a/b", "/ab")
PREFIX_PATHS = ("/", "/a", "/a/", "/a/b", "/ab")
REGEX_PATHS = ("/a/[0-9]+", "/a.*", "/a/b/?", "/[ab]+", "/a/(")  # the last one is invalid
METHODS = ("GET", "POST")
HEADER_NAMES = ("x-a", "X-B")
QUERY_NAMES = ("q", "Q")
VALUES = ("1", "2")
VALUE_REGEXES = ("[12]", "2+")

REQ_HOSTS = ("foo.example.com", "a.foo.example.com", "b.example.com", "example.com",
             "other.org", "FOO.Example.com:8080", "x.a.foo.example.com")
REQ_PATHS = ("/", "/a", "/a/", "/a/b", "/a/b/", "/ab", "/a/1", "/a/12", "/a/b/c", "/b", "/ba")
REQ_METHODS = ("GET", "POST", "PUT")

GATEWAY_OBJECTS: tuple[dict[str, Any], ...] = (
    {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
     "metadata": {"name": "rauta"}, "spec": {"controllerName": "rauta.io/gateway-controller"}},
    {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
     "metadata": {"name": "gw", "namespace": "infra",
                  "creationTimestamp": "2020-01-01T00:00:00Z"},
     "spec": {"gatewayClassName": "rauta", "listeners": [
         {"name": "http", "port": 80, "protocol": "HTTP",
          "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
)

# ------------------------------------------------------------------------------ strategies

value_matches = st.one_of(
    st.fixed_dictionaries({"type": st.just("Exact"), "value": st.sampled_from(VALUES)}),
    st.fixed_dictionaries({"type": st.just("RegularExpression"),
                           "value": st.sampled_from(VALUE_REGEXES)}),
)


def named(names: tuple[str, ...]) -> st.SearchStrategy[dict[str, str]]:
    return st.builds(lambda n, v: {"name": n, **v}, st.sampled_from(names), value_matches)


path_matches = st.one_of(
    st.builds(lambda v: {"type": "Exact", "value": v}, st.sampled_from(EXACT_PATHS)),
    st.builds(lambda v: {"type": "PathPrefix", "value": v}, st.sampled_from(PREFIX_PATHS)),
    st.builds(lambda v: {"type": "RegularExpression", "value": v}, st.sampled_from(REGEX_PATHS)),
)


@st.composite
def matches(draw: st.DrawFn) -> dict[str, Any]:
    m: dict[str, Any] = {}
    if draw(st.integers(0, 7)):  # sometimes no path at all: the default PathPrefix "/"
        m["path"] = draw(path_matches)
    method = draw(st.none() | st.sampled_from(METHODS))
    if method is not None:
        m["method"] = method
    headers = draw(st.lists(named(HEADER_NAMES), max_size=2))
    if headers:
        m["headers"] = headers
    query = draw(st.lists(named(QUERY_NAMES), max_size=2))
    if query:
        m["queryParams"] = query
    return m


def route_spec(name: str) -> st.SearchStrategy[dict[str, Any]]:
    backend = [{"name": f"svc-{name}", "port": 80}]

    def rule_of(ms: list[dict[str, Any]] | None) -> dict[str, Any]:
        r: dict[str, Any] = {"backendRefs": backend}
        if ms is not None:
            r["matches"] = ms
        return r

    rules = st.lists(
        st.builds(rule_of, st.none() | st.lists(matches(), min_size=1, max_size=2)),
        min_size=1, max_size=3)
    return st.builds(
        lambda hosts, rs: {"parentRefs": [{"name": "gw", "namespace": "infra"}],
                           **({"hostnames": hosts} if hosts else {}), "rules": rs},
        st.lists(st.sampled_from(ROUTE_HOSTS), max_size=2), rules)


def backend_objects(ns: str, name: str) -> list[dict[str, Any]]:
    svc = f"svc-{name}"
    index = NAMESPACES.index(ns) * 10 + NAMES.index(name) + 1
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": ns},
         "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": f"{svc}-1", "namespace": ns,
                      "labels": {"kubernetes.io/service-name": svc}},
         "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
         "endpoints": [{"addresses": [f"10.0.0.{index}"], "conditions": {"ready": True}}]},
    ]


# ------------------------------------------------------------------------------ machine


class RoutingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[tuple[str, str], dict[str, Any]] = {}
        self.config = translate(Snapshot.from_dicts(GATEWAY_OBJECTS)).config

    # ---------------------------------------------------------------- helpers

    def objects(self) -> list[dict[str, Any]]:
        out = list(GATEWAY_OBJECTS)
        for (ns, name), r in sorted(self.routes.items()):
            out.append(r)
            out.extend(backend_objects(ns, name))
        return out

    def retranslate(self, data: st.DataObject) -> None:
        objs = self.objects()
        config = translate(Snapshot.from_dicts(objs)).config
        shuffled = data.draw(st.permutations(objs), label="shuffled input")
        again = translate(Snapshot.from_dicts(shuffled)).config
        assert again == config
        assert again.model_dump_json() == config.model_dump_json()
        self.config = config

    # ---------------------------------------------------------------- rules

    @initialize(data=st.data())
    def start(self, data: st.DataObject) -> None:
        self.add_route(data)

    @rule(data=st.data())
    def add_route(self, data: st.DataObject) -> None:
        """Add a route (or replace one with the same namespace/name)."""
        ns = data.draw(st.sampled_from(NAMESPACES), label="namespace")
        name = data.draw(st.sampled_from(NAMES), label="name")
        ts = data.draw(st.sampled_from(TIMESTAMPS), label="creationTimestamp")
        spec = data.draw(route_spec(name), label="spec")
        self.routes[(ns, name)] = {
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": ts},
            "spec": spec,
        }
        self.retranslate(data)

    @precondition(lambda self: self.routes)
    @rule(data=st.data())
    def modify_route(self, data: st.DataObject) -> None:
        """New spec for an existing route; metadata (age) unchanged."""
        key = data.draw(st.sampled_from(sorted(self.routes)), label="route")
        old = self.routes[key]
        self.routes[key] = {**old, "spec": data.draw(route_spec(key[1]), label="spec")}
        self.retranslate(data)

    @precondition(lambda self: self.routes)
    @rule(data=st.data())
    def clone_route(self, data: st.DataObject) -> None:
        """Copy a route's spec under another namespace/name: full precedence ties."""
        src = data.draw(st.sampled_from(sorted(self.routes)), label="source")
        ns = data.draw(st.sampled_from(NAMESPACES), label="namespace")
        name = data.draw(st.sampled_from(NAMES), label="name")
        old = self.routes[src]
        ts = data.draw(st.just(old["metadata"]["creationTimestamp"])
                       | st.sampled_from(TIMESTAMPS), label="creationTimestamp")
        spec = {**old["spec"], "rules": [{**r, "backendRefs": [{"name": f"svc-{name}", "port": 80}]}
                                        for r in old["spec"]["rules"]]}
        self.routes[(ns, name)] = {**old, "metadata": {"name": name, "namespace": ns,
                                                       "creationTimestamp": ts}, "spec": spec}
        self.retranslate(data)

    @precondition(lambda self: self.routes)
    @rule(data=st.data())
    def remove_route(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.routes)), label="route")
        del self.routes[key]
        self.retranslate(data)

    @rule(data=st.data())
    def send_requests(self, data: st.DataObject) -> None:
        for _ in range(data.draw(st.integers(1, 4), label="requests")):
            self.check_request(data)

    def check_request(self, data: st.DataObject) -> None:
        method = data.draw(st.sampled_from(REQ_METHODS), label="method")
        host = data.draw(st.sampled_from(REQ_HOSTS), label="host")
        path = data.draw(st.sampled_from(REQ_PATHS), label="path")
        headers = {}
        for n in data.draw(st.lists(st.sampled_from(("x-a", "x-b")), unique=True, max_size=2),
                           label="header names"):
            shown = data.draw(st.sampled_from((n, n.upper(), n.title())), label="name case")
            headers[shown] = data.draw(st.sampled_from(VALUES + ("22",)), label="value")
        query = data.draw(st.dictionaries(st.sampled_from(QUERY_NAMES),
                                          st.sampled_from(VALUES + ("22",)), max_size=2),
                          label="query")
        req = RequestView(method=method, host=host, path=path, query=urlencode(query),
                          headers=tuple(headers.items()), port=80)
        got = route(self.config, req)
        want = reference_route(list(self.routes.values()), method, host, path, query, headers)
        if want is None:
            assert got.kind == "error" and got.status == 404, (got.status, got.reason, got.rule)
            return
        assert got.kind == "forward", (got.kind, got.status, got.reason, want)
        assert got.rule is not None
        assert (got.rule.route, got.rule.rule_index, got.rule.match_index) == (
            want.route, want.rule_index, want.match_index), (got.rule, want)
        ns, name = want.route.split("/")
        assert got.backend is not None and got.backend.name == f"{ns}/svc-{name}:80"
        assert got.endpoint is not None


# Inherits the loaded profile (ci: 200 examples, no deadline); only the run length is ours.
RoutingMachine.TestCase.settings = settings(stateful_step_count=12)
TestRouting = RoutingMachine.TestCase
