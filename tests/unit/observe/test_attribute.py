"""Attribution tests: join on the 4-tuple (keep-alive), EndpointSlice fallback, routing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rauta.model.config import (
    Backend,
    ListenerRoutes,
    Match,
    PathMatch,
    PortConfig,
    RouterConfig,
    Rule,
)
from rauta.model.config import (
    Endpoint as MEndpoint,
)
from rauta.model.routing import RequestView, route
from rauta.observe.attribute import Attributor, FlowRecord, JoinTable, RouteIds
from rauta.observe.events import Endpoint, HttpEvent

PROXY = Endpoint("10.0.0.1", 41000)
BACK = Endpoint("10.0.1.5", 8080)


def mk_rule(i: int, path: str, method: str | None, svc: str) -> Rule:
    eps = (MEndpoint(address=f"10.0.1.{i + 1}", port=8080),)
    return Rule(
        route=f"ns/r{i}", rule_index=0, match_index=0, hostname="",
        match=Match(path=PathMatch(type="PathPrefix", value=path), method=method),
        backends=(Backend(name=f"ns/{svc}:80", weight=1, endpoints=eps),),
    )


def mk_config(rules: tuple[Rule, ...], port: int = 80) -> RouterConfig:
    lr = ListenerRoutes(gateway="gw/gw", listener="l", hostname="", rules=rules)
    return RouterConfig(ports=(PortConfig(port=port, protocol="HTTP", listeners=(lr,)),))


def event(client=PROXY, server=BACK, start=100, leg="upstream", path="/", method="GET",
          host="example.com") -> HttpEvent:
    return HttpEvent(source="xdp", leg=leg, client=client, server=server, method=method,
                     path=path, path_hash=0, path_truncated=False, status=200,
                     start_ns=start, end_ns=start + 50, host=host)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=1, max_size=30), st.integers(-5, 1100))
def test_join_picks_the_latest_record_not_after_the_event(starts, at):
    table = JoinTable()
    for s in starts:
        table.add((PROXY, BACK), FlowRecord(s, f"ns/r{s}", "0", "ns/svc:80"))
    rec = table.lookup((PROXY, BACK), at)
    earlier = [s for s in starts if s <= at]
    if not earlier:
        assert rec is None
    else:
        assert rec is not None and rec.start_ns == max(earlier)


def test_upstream_event_joins_and_falls_back_to_the_endpoint_index():
    cfg = mk_config((mk_rule(4, "/", None, "svc"),))
    table = JoinTable()
    table.add((PROXY, BACK), FlowRecord(90, "ns/a", "x", "ns/svc:80", connect_ns=7))
    att = Attributor(cfg, table, pods={"10.0.1.5:8080": "ns/pod-5"})
    ev = att.attribute(event(start=100))
    assert (ev.route, ev.rule, ev.backend, ev.service, ev.pod, ev.connect_ns) == (
        "ns/a", "x", "ns/svc:80", "ns/svc", "ns/pod-5", 7)
    other = att.attribute(event(client=Endpoint("10.0.0.1", 41001), start=100))
    # No record: the one rule sending to the endpoint names route, rule and backend.
    assert (other.route, other.rule, other.backend, other.service, other.pod) == (
        "ns/r4", "0", "ns/svc:80", "ns/svc", "ns/pod-5")
    none = att.attribute(event(server=Endpoint("10.9.9.9", 1)))
    assert (none.route, none.backend, none.service) == ("", "", "")


def test_an_endpoint_of_several_rules_names_only_their_shared_backend():
    a, b = mk_rule(4, "/a", None, "svc"), mk_rule(4, "/b", None, "svc")
    cfg = mk_config((a, b.model_copy(update={"route": "ns/other"})))
    ev = Attributor(cfg, JoinTable()).attribute(event(client=Endpoint("10.0.0.1", 41001)))
    assert (ev.route, ev.rule, ev.backend, ev.service) == ("", "", "ns/svc:80", "ns/svc")
    two = mk_config((a, mk_rule(4, "/b", None, "svc2").model_copy(update={"route": "ns/o"})))
    ev = Attributor(two, JoinTable()).attribute(event(client=Endpoint("10.0.0.1", 41001)))
    assert (ev.route, ev.backend) == ("", "")


def test_kernel_event_joins_the_record_stamped_just_after_the_write_it_saw():
    # Keep-alive: record A at 90, the kernel sees request B at 200 (before the proxy's
    # stamp of B at 205), B's response at 250; the next request C is stamped at 300.
    table = JoinTable()
    for start, name in ((90, "ns/a"), (205, "ns/b"), (300, "ns/c")):
        table.add((PROXY, BACK), FlowRecord(start, name, "0", f"{name}:80"))
    att = Attributor(mk_config(()), table)
    ev = att.attribute(event(start=200))  # end_ns = 250
    assert (ev.route, ev.backend) == ("ns/b", "ns/b:80")


PATHS = st.sampled_from(["/", "/a", "/a/b", "/b", "/api", "/api/v1"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(PATHS, st.sampled_from([None, "GET", "POST"])), min_size=1, max_size=6),
    PATHS, st.sampled_from(["/x", "", "/v1/z"]), st.sampled_from(["GET", "POST", "PUT"]),
)
def test_downstream_attribution_agrees_with_routing(specs, base, tail, method):
    cfg = mk_config(tuple(mk_rule(i, p, m, f"s{i}") for i, (p, m) in enumerate(specs)))
    att = Attributor(cfg, JoinTable())
    path = (base.rstrip("/") + tail) or "/"
    ev = att.attribute(event(leg="downstream", server=Endpoint("10.0.0.1", 80),
                             path=path, method=method))
    d = route(cfg, RequestView(method=method, host="example.com", path=path, query="",
                               headers=(), port=80), choice=0)
    if d.rule is None:
        assert ev.route == ""
    else:
        assert (ev.route, ev.rule) == (d.rule.route, "0")
        assert d.backend is not None and ev.backend == d.backend.name


def test_route_ids_are_stable_and_deterministic():
    a, b = RouteIds(), RouteIds()
    a.register(["ns/b#0", "ns/a#0"])
    b.register(["ns/a#0", "ns/b#0"])
    assert a.id("ns/a", "0") == b.id("ns/a", "0") == 1
    a.register(["ns/0#0"])
    assert a.id("ns/a", "0") == 1 and a.id("ns/0", "0") == 3
    assert a.name(2) == ("ns/b", "0") and a.name(0) == ("", "") and a.name(99) == ("", "")


def test_the_pod_comes_from_the_endpointslice_target_ref():
    from rauta.model.snapshot import Snapshot
    from rauta.model.translate import translate

    gw = "gateway.networking.k8s.io/v1"
    objs = [
        {"apiVersion": gw, "kind": "GatewayClass", "metadata": {"name": "rauta"},
         "spec": {"controllerName": "rauta.io/gateway-controller"}},
        {"apiVersion": gw, "kind": "Gateway", "metadata": {"name": "gw", "namespace": "ns"},
         "spec": {"gatewayClassName": "rauta",
                  "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
        {"apiVersion": gw, "kind": "HTTPRoute", "metadata": {"name": "web", "namespace": "ns"},
         "spec": {"parentRefs": [{"name": "gw"}],
                  "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": "ns"},
         "spec": {"ports": [{"name": "http", "port": 80}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "svc-1", "namespace": "ns",
                      "labels": {"kubernetes.io/service-name": "svc"}},
         "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
         "endpoints": [{"addresses": ["10.0.1.5"], "targetRef": {"kind": "Pod", "name": "web-7"}},
                       {"addresses": ["10.0.1.6"],
                        "targetRef": {"kind": "Node", "name": "n1"}}]},
    ]
    config = translate(Snapshot.from_dicts(objs)).config
    (b,) = config.ports[0].listeners[0].rules[0].backends
    assert [(e.address, e.pod) for e in b.endpoints] == [("10.0.1.5", "ns/web-7"), ("10.0.1.6", "")]
    att = Attributor(config, JoinTable())
    ev = att.attribute(event(client=Endpoint("10.0.0.1", 41001)))  # server 10.0.1.5:8080
    assert (ev.service, ev.pod, ev.route) == ("ns/svc", "ns/web-7", "ns/web")
    assert att.index.service(Endpoint("10.0.1.6", 8080)) == ("ns/svc", "")
