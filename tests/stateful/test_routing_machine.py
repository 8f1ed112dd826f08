"""Stateful test: rauta's translator + router agree with a naive reference interpreter.

The state is a set of Gateways (one or two, drawn at the start and redrawn by
``replace_gateways``: HTTP listeners on ports 80 and 8080 with exact, wildcard or no
hostnames, routes from any namespace allowed, no two listeners with the same port and
hostname) and a set of HTTPRoutes (parentRefs to those Gateways, with or without a
sectionName; exact and wildcard hostnames; rules that may carry valid filters, an
unsupported ExtensionRef or unknown filter, or a ReplacePrefixMatch rewrite that is only
valid over PathPrefix matches), each route with its own Service and one ready endpoint.
Rules add, replace, modify, clone (the same spec under another namespace/name, so every
precedence criterion up to the age and name tie-breaks is tied) and remove routes.
``send_requests`` (also run after every mutation) draws requests (port, Host, path, method,
query, headers) from pools that overlap the resource pools and checks that
``route(translate(snapshot).config, req)`` gives the answer of
``tests.stateful.reference`` (400, 404, 500 from the same rule, or a forward by the same
(route, rule, match) to its Service). Every mutation also checks that translating a
shuffled copy of the input gives an identical RouterConfig, byte for byte.
Half of the runs translate with an address pool (``POOL``): then Gateway i (age order)
is served on 127.0.1.{i+1}, each request is drawn on one Gateway's address (or an unused
one, a 404), and the reference sees only that Gateway's listeners (listener isolation).
"""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import urlencode

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from rauta.model.routing import RequestView, route
from rauta.model.snapshot import Snapshot
from rauta.model.translate import translate
from tests.stateful.reference import reference_outcome

# ------------------------------------------------------------------------------ pools

POOL = "127.0.1.0/24"

NAMESPACES = ("default", "team", "team-a")  # "team" / "team-a": "{ns}/{name}" ordering
NAMES = ("r1", "r2", "r3")
TIMESTAMPS = (
    "2024-01-01T00:00:00Z",
    "2024-01-01T00:00:00Z",
    "2024-02-01T00:00:00Z",
    "2023-12-31T23:59:59Z",
)
ROUTE_HOSTS = (
    "*.example.com",
    "foo.example.com",
    "a.foo.example.com",
    "*.foo.example.com",
    "example.com",
)
EXACT_PATHS = ("/", "/a", "/a/", "/a/b", "/ab")
PREFIX_PATHS = ("/", "/a", "/a/", "/a/b", "/ab")
# "/a/(" does not compile; "(a)\\1" and "(?!b)" compile in Python's re but not in RE2.
REGEX_PATHS = ("/a/[0-9]+", "/a.*", "/a/b/?", "/[ab]+", "/a/(", "/(a)\\1", "/a/(?!b).*")
METHODS = ("GET", "POST")
HEADER_NAMES = ("x-a", "X-A", "X-B")  # "x-a"/"X-A": first entry per name counts
QUERY_NAMES = ("q", "Q")
VALUES = ("1", "2")
VALUE_REGEXES = ("[12]", "2+")

REQ_HOSTS = (
    "foo.example.com",
    "a.foo.example.com",
    "b.example.com",
    "example.com",
    "other.org",
    "FOO.Example.com:8080",
    "x.a.foo.example.com",
)
REQ_PATHS = ("/", "/a", "/a/", "/a/b", "/a/b/", "/ab", "/a/1", "/a/12", "/a/b/c", "/b", "/ba",
             "/aa", "/a;x", "/a#b")
REQ_PORTS = (80, 8080, 9090)
REQ_METHODS = ("GET", "POST", "PUT")
REQ_VALUES = VALUES + ("22",)

GATEWAY_CLASS: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "GatewayClass",
    "metadata": {"name": "rauta"},
    "spec": {"controllerName": "rauta.io/gateway-controller"},
}
GATEWAY_NAMES = ("gw-a", "gw-b")  # gw-a is the older one
LISTENER_NAMES = ("l1", "l2", "l3")
LISTENER_PORTS = (80, 8080)
LISTENER_HOSTS = (
    None,
    "*.example.com",
    "*.foo.example.com",
    "foo.example.com",
    "b.example.com",
    "example.com",
)


def _gateway(name: str, listeners: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {
            "name": name,
            "namespace": "infra",
            "creationTimestamp": f"2020-01-0{GATEWAY_NAMES.index(name) + 1}T00:00:00Z",
        },
        "spec": {"gatewayClassName": "rauta", "listeners": listeners},
    }


def _topology(drawn: list[list[tuple[int, str | None]]]) -> list[dict[str, Any]]:
    """Gateways from drawn (port, hostname) lists, dropping any listener whose port and
    hostname another listener already has (so that no listener is conflicted)."""
    seen: set[tuple[int, str]] = set()
    out = []
    for name, wanted in zip(GATEWAY_NAMES, drawn, strict=False):
        listeners = []
        for lname, (port, host) in zip(LISTENER_NAMES, wanted, strict=False):
            if (port, host or "") in seen:
                continue
            seen.add((port, host or ""))
            lis: dict[str, Any] = {"name": lname, "port": port, "protocol": "HTTP",
                                   "allowedRoutes": {"namespaces": {"from": "All"}}}
            if host is not None:
                lis["hostname"] = host
            listeners.append(lis)
        if listeners:
            out.append(_gateway(name, listeners))
    return out


LISTENER_DRAWS = st.lists(
    st.tuples(st.sampled_from(LISTENER_PORTS), st.sampled_from(LISTENER_HOSTS)),
    min_size=1,
    max_size=3,
)
TOPOLOGIES = st.lists(LISTENER_DRAWS, min_size=1, max_size=2).map(_topology)

# ------------------------------------------------------------------------------ strategies

value_matches = st.one_of(
    st.fixed_dictionaries({"type": st.just("Exact"), "value": st.sampled_from(VALUES)}),
    st.fixed_dictionaries(
        {"type": st.just("RegularExpression"), "value": st.sampled_from(VALUE_REGEXES)}
    ),
)


def named(names: tuple[str, ...]) -> st.SearchStrategy[dict[str, str]]:
    return st.builds(lambda n, v: {"name": n, **v}, st.sampled_from(names), value_matches)


path_matches = st.one_of(
    st.builds(lambda v: {"type": "Exact", "value": v}, st.sampled_from(EXACT_PATHS)),
    st.builds(lambda v: {"type": "PathPrefix", "value": v}, st.sampled_from(PREFIX_PATHS)),
    st.builds(lambda v: {"type": "RegularExpression", "value": v}, st.sampled_from(REGEX_PATHS)),
)


def _match(
    path: dict[str, str] | None,
    method: str | None,
    headers: list[dict[str, str]],
    query: list[dict[str, str]],
) -> dict[str, Any]:
    m: dict[str, Any] = {}
    if path is not None:
        m["path"] = path
    if method is not None:
        m["method"] = method
    if headers:
        m["headers"] = headers
    if query:
        m["queryParams"] = query
    return m


MATCHES = st.builds(
    _match,
    st.one_of(st.none(), path_matches, path_matches),  # no path: the default PathPrefix "/"
    st.none() | st.sampled_from(METHODS),
    st.lists(named(HEADER_NAMES), max_size=2),
    st.lists(named(QUERY_NAMES), max_size=2),
)


FILTERS = (
    {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-r",
                                                                        "value": "1"}]}},
    {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch",
                                                   "replacePrefixMatch": "/new"}}},
    {"type": "ExtensionRef",
     "extensionRef": {"group": "auth.example.com", "kind": "AuthFilter", "name": "staff"}},
    {"type": "Bogus"},
)


def _rule_of(ms: list[dict[str, Any]] | None, filters: list[dict[str, Any]]) -> dict[str, Any]:
    rule: dict[str, Any] = {} if ms is None else {"matches": ms}  # none: PathPrefix "/"
    if filters:
        rule["filters"] = filters
    return rule


PARENT_REFS = st.lists(
    st.builds(
        lambda gw, section: {"name": gw, "namespace": "infra",
                             **({"sectionName": section} if section else {})},
        st.sampled_from(GATEWAY_NAMES),
        st.none() | st.sampled_from(LISTENER_NAMES),
    ),
    min_size=1,
    max_size=2,
    unique_by=lambda r: (r["name"], r.get("sectionName")),
)

SPECS = st.builds(
    lambda parents, hosts, rules: {
        "parentRefs": parents,
        **({"hostnames": hosts} if hosts else {}),
        "rules": rules,
    },
    PARENT_REFS,
    st.lists(st.sampled_from(ROUTE_HOSTS), max_size=2),
    st.lists(
        st.builds(
            _rule_of,
            st.none() | st.lists(MATCHES, min_size=1, max_size=2),
            st.lists(st.sampled_from(FILTERS), max_size=1),
        ),
        min_size=1,
        max_size=3,
    ),
)
ROUTE_KEYS = st.tuples(
    st.sampled_from(NAMESPACES), st.sampled_from(NAMES), st.sampled_from(TIMESTAMPS)
)


def with_backend(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """Every rule of the route sends to the route's own Service ``svc-<name>:80``."""
    backend = [{"name": f"svc-{name}", "port": 80}]
    return {**spec, "rules": [{**r, "backendRefs": backend} for r in spec["rules"]]}


def _combos(names: tuple[str, ...], spellings: int) -> list[dict[str, str]]:
    """Every dict over ``names`` (each absent, or present with one value and spelling),
    fewest entries first so that shrinking goes towards plain requests."""
    options: list[list[tuple[str, str] | None]] = [
        [None] + [(spell, v) for spell in (n, n.upper(), n.title())[:spellings] for v in REQ_VALUES]
        for n in names
    ]
    out = [dict(kv for kv in combo if kv is not None) for combo in itertools.product(*options)]
    return sorted(out, key=len)


# One draw each (drawing request fields one by one costs more than routing them).
REQ_LINES = st.sampled_from(
    list(itertools.product(REQ_PATHS, REQ_HOSTS, REQ_METHODS, REQ_PORTS))
)
REQ_HEADERS = st.sampled_from(_combos(("x-a", "x-b"), 3))  # any name case
REQ_QUERIES = st.sampled_from(_combos(QUERY_NAMES, 1))  # names are case-sensitive
REQUESTS = st.tuples(REQ_LINES, REQ_QUERIES, REQ_HEADERS)
REQUEST_BATCHES = st.lists(REQUESTS, min_size=1, max_size=8)


def backend_objects(ns: str, name: str) -> list[dict[str, Any]]:
    svc = f"svc-{name}"
    index = NAMESPACES.index(ns) * 10 + NAMES.index(name) + 1
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": svc, "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{svc}-1",
                "namespace": ns,
                "labels": {"kubernetes.io/service-name": svc},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": [f"10.0.0.{index}"], "conditions": {"ready": True}}],
        },
    ]


# ------------------------------------------------------------------------------ machine


class RoutingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[tuple[str, str], dict[str, Any]] = {}
        self.gateways: list[dict[str, Any]] = []
        self.config = translate(Snapshot.from_dicts([GATEWAY_CLASS])).config
        self.pool: str | None = None

    # ---------------------------------------------------------------- helpers

    def objects(self) -> list[dict[str, Any]]:
        out = [GATEWAY_CLASS, *self.gateways]
        for (ns, name), r in sorted(self.routes.items()):
            out.append(r)
            out.extend(backend_objects(ns, name))
        return out

    def retranslate(self, data: st.DataObject) -> None:
        objs = self.objects()
        config = translate(Snapshot.from_dicts(objs), address_pool=self.pool).config
        shuffled = list(objs)
        data.draw(st.randoms(use_true_random=False), label="shuffle").shuffle(shuffled)
        again = translate(Snapshot.from_dicts(shuffled), address_pool=self.pool).config
        assert again == config
        assert again.model_dump_json() == config.model_dump_json()
        self.config = config
        self.send_requests(data)

    # ---------------------------------------------------------------- rules

    @initialize(data=st.data())
    def start(self, data: st.DataObject) -> None:
        self.pool = data.draw(st.sampled_from((None, POOL)), label="address pool")
        self.gateways = data.draw(TOPOLOGIES, label="gateways")
        self.add_route(data)

    @rule(data=st.data())
    def replace_gateways(self, data: st.DataObject) -> None:
        """Another set of Gateways and listeners under the same routes."""
        self.gateways = data.draw(TOPOLOGIES, label="gateways")
        self.retranslate(data)

    @rule(data=st.data())
    def add_route(self, data: st.DataObject) -> None:
        """Add a route (or replace one with the same namespace/name)."""
        ns, name, ts = data.draw(ROUTE_KEYS, label="namespace, name, creationTimestamp")
        spec = with_backend(data.draw(SPECS, label="spec"), name)
        self.routes[(ns, name)] = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
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
        self.routes[key] = {**old, "spec": with_backend(data.draw(SPECS, label="spec"), key[1])}
        self.retranslate(data)

    @precondition(lambda self: self.routes)
    @rule(data=st.data())
    def clone_route(self, data: st.DataObject) -> None:
        """Copy a route's spec under another namespace/name: full precedence ties."""
        src = data.draw(st.sampled_from(sorted(self.routes)), label="source")
        others = [(ns, n) for ns in NAMESPACES for n in NAMES if (ns, n) != src]
        # Same name in the sibling namespace first: the "{ns}/{name}" tie-break case.
        others.sort(key=lambda k: (k[1] != src[1], k[0]))
        ns, name = data.draw(st.sampled_from(others), label="copy")
        old = self.routes[src]
        same = old["metadata"]["creationTimestamp"]
        ts = data.draw(st.sampled_from((same, same) + TIMESTAMPS), label="creationTimestamp")
        self.routes[(ns, name)] = {
            **old,
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": ts},
            "spec": with_backend(old["spec"], name),
        }
        self.retranslate(data)

    @precondition(lambda self: self.routes)
    @rule(data=st.data())
    def remove_route(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.routes)), label="route")
        del self.routes[key]
        self.retranslate(data)

    @rule(data=st.data())
    def send_requests(self, data: st.DataObject) -> None:
        for (path, host, method, port), query, headers in data.draw(
            REQUEST_BATCHES, label="requests"
        ):
            if self.pool is None:
                self.check_request(port, method, host, path, query, headers)
                continue
            # The Gateway whose address accepted the connection (one past the last: none).
            index = data.draw(st.integers(0, len(self.gateways)), label="gateway address")
            self.check_request(port, method, host, path, query, headers,
                               address=f"127.0.1.{index + 1}",
                               gateways=self.gateways[index:index + 1])

    def check_request(
        self,
        port: int,
        method: str,
        host: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        address: str = "",
        gateways: list[dict[str, Any]] | None = None,
    ) -> None:
        req = RequestView(
            address=address,
            method=method,
            host=host,
            path=path,
            query=urlencode(query),
            headers=tuple(headers.items()),
            port=port,
        )
        got = route(self.config, req)
        want = reference_outcome(
            self.gateways if gateways is None else gateways, list(self.routes.values()), port,
            method, host, path, query, headers
        )
        where = (got.kind, got.status, got.reason, got.rule, want)
        if want.winner is None:
            assert got.kind == "error" and got.status == want.status, where
            return
        assert got.rule is not None, where
        assert (got.rule.route, got.rule.rule_index, got.rule.match_index) == (
            want.winner.route,
            want.winner.rule_index,
            want.winner.match_index,
        ), where
        assert got.rule.hostname == want.winner.hostname, where
        if want.status == 500:
            assert (got.kind, got.status) == ("error", 500), where
            return
        assert got.kind == "forward", where
        ns, name = want.winner.route.split("/")
        assert got.backend is not None and got.backend.name == f"{ns}/svc-{name}:80"
        assert got.endpoint is not None


# Inherits the loaded profile (ci: 200 examples, no deadline); only the run length is ours.
RoutingMachine.TestCase.settings = settings(stateful_step_count=20)
TestRouting = RoutingMachine.TestCase
