"""The resource graph (rauta.model.graph): ownership, listeners, attachment, backends."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from rauta.model.conditions import Reason
from rauta.model.config import Endpoint
from rauta.model.graph import Graph, ListenerState
from rauta.model.resources import HTTPRoute, parse_object
from rauta.model.snapshot import Snapshot

CTRL = "rauta.io/gateway-controller"

# --------------------------------------------------------------------------- builders


def gclass(name: str = "rauta", controller: str = CTRL) -> dict:
    return {"kind": "GatewayClass", "metadata": {"name": name},
            "spec": {"controllerName": controller}}


def listener(name: str = "http", port: int = 80, protocol: str = "HTTP", **kw: Any) -> dict:
    return {"name": name, "port": port, "protocol": protocol, **kw}


def gateway(name: str = "gw", ns: str = "infra", listeners: list | None = None,
            cls: str = "rauta", created: str = "2024-01-01T00:00:00Z", **spec: Any) -> dict:
    return {"kind": "Gateway",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
            "spec": {"gatewayClassName": cls, "listeners": listeners or [listener()], **spec}}


def route(name: str = "web", ns: str = "infra", parents: list | None = None,
          hostnames: list | None = None, rules: list | None = None) -> dict:
    spec: dict = {"parentRefs": parents if parents is not None else [
        {"name": "gw", "namespace": "infra"}]}
    if hostnames is not None:
        spec["hostnames"] = hostnames
    if rules is not None:
        spec["rules"] = rules
    return {"kind": "HTTPRoute", "metadata": {"name": name, "namespace": ns}, "spec": spec}


def service(name: str = "web", ns: str = "app", ports: list | None = None, **spec: Any) -> dict:
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": ports if ports is not None else [
                {"name": "http", "port": 80, "targetPort": 8080}], **spec}}


def ep(*addrs: str, ready: bool | None = True) -> dict:
    cond = {} if ready is None else {"ready": ready}
    return {"addresses": list(addrs), "conditions": cond}


def eslice(name: str, svc: str = "web", ns: str = "app", endpoints: list | None = None,
           ports: list | None = None) -> dict:
    obj: dict = {"kind": "EndpointSlice",
                 "metadata": {"name": name, "namespace": ns,
                              "labels": {"kubernetes.io/service-name": svc}},
                 "addressType": "IPv4", "endpoints": endpoints or []}
    if ports is not None:
        obj["ports"] = ports
    return obj


def namespace(name: str, **labels: str) -> dict:
    return {"kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def grant(ns: str, from_ns: str, from_kind: str = "HTTPRoute", to_kind: str = "Service",
          to_name: str | None = None, name: str = "grant") -> dict:
    to: dict = {"group": "", "kind": to_kind}
    if to_name is not None:
        to["name"] = to_name
    return {"kind": "ReferenceGrant", "metadata": {"name": name, "namespace": ns},
            "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": from_kind,
                               "namespace": from_ns}], "to": [to]}}


def secret(name: str = "cert", ns: str = "infra", type_: str = "kubernetes.io/tls",
           keys: tuple[str, ...] = ("tls.crt", "tls.key")) -> dict:
    return {"kind": "Secret", "metadata": {"name": name, "namespace": ns}, "type": type_,
            "data": {k: PEM[k] for k in keys}}


PEM = {  # structurally valid PEM (the model checks structure only), base64 as in a Secret
    "tls.crt": base64.b64encode(
        b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode(),
    "tls.key": base64.b64encode(
        b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n").decode(),
}


def graph(*objs: dict, controller_name: str = CTRL) -> Graph:
    return Graph(Snapshot.from_dicts([gclass(), *objs]), controller_name)


def lis(g: Graph, gw: str = "infra/gw", name: str = "http") -> ListenerState:
    state = next(s for s in g.gateways if s.key == gw)
    return next(x for x in state.listeners if x.spec.name == name)


def attach(g: Graph, obj: dict):  # noqa: ANN201
    r = parse_object(obj)
    assert isinstance(r, HTTPRoute)
    return g.attach(r)


# --------------------------------------------------------------------------- ownership


def test_gateway_classes_are_owned_by_controller_name() -> None:
    g = graph(gclass("other", "example.com/not-us"), gateway(),
              gateway("foreign", cls="other"))
    assert set(g.classes) == {"rauta"}
    assert [s.key for s in g.gateways] == ["infra/gw"]


def test_controller_name_is_configurable() -> None:
    g = graph(gclass("mine", "example.com/mine"), gateway(cls="mine"),
              controller_name="example.com/mine")
    assert set(g.classes) == {"mine"}
    assert [s.key for s in g.gateways] == ["infra/gw"]


def test_route_to_a_gateway_of_another_controller_gets_no_attachment() -> None:
    g = graph(gclass("other", "example.com/not-us"), gateway("foreign", cls="other"))
    assert attach(g, route(parents=[{"name": "foreign"}])) == []
    assert attach(g, route(parents=[{"name": "gw", "kind": "Service", "group": ""}])) == []


# --------------------------------------------------------------------------- listeners


def test_same_port_different_protocol_is_protocol_conflict() -> None:
    g = graph(secret(), gateway(listeners=[
        listener("a", 80, "HTTP"),
        listener("b", 80, "HTTPS", tls={"certificateRefs": [{"name": "cert"}]}),
        listener("c", 81, "HTTP")]))
    assert lis(g, name="a").conflicted == Reason.PROTOCOL_CONFLICT
    assert lis(g, name="b").conflicted == Reason.PROTOCOL_CONFLICT
    assert lis(g, name="c").conflicted is None and lis(g, name="c").valid


def test_same_port_same_hostname_is_hostname_conflict_distinct_hostnames_are_fine() -> None:
    g = graph(gateway(listeners=[
        listener("a", 80, hostname="foo.example.com"),
        listener("b", 80, hostname="foo.example.com"),
        listener("c", 80, hostname="*.example.com"),
        listener("d", 80)]))
    assert lis(g, name="a").conflicted == Reason.HOSTNAME_CONFLICT
    assert lis(g, name="b").conflicted == Reason.HOSTNAME_CONFLICT
    assert lis(g, name="c").conflicted is None
    assert lis(g, name="d").conflicted is None


def test_across_gateways_the_older_keeps_the_port() -> None:
    old = gateway("old", created="2024-01-01T00:00:00Z",
                  listeners=[listener("http", 80, hostname="a.example.com")])
    clash = gateway("new", created="2024-02-01T00:00:00Z", listeners=[
        listener("tls", 80, "HTTPS", tls={"certificateRefs": [{"name": "cert"}]})])
    same_host = gateway("newer", created="2024-03-01T00:00:00Z",
                        listeners=[listener("http", 80, hostname="a.example.com")])
    other_host = gateway("newest", created="2024-04-01T00:00:00Z",
                         listeners=[listener("http", 80, hostname="b.example.com")])
    g = graph(secret(), clash, same_host, other_host, old)
    assert lis(g, "infra/old").valid
    tls = lis(g, "infra/new", "tls")
    assert tls.accepted[:2] == (False, Reason.PORT_UNAVAILABLE)
    assert "infra/old" in tls.accepted[2]
    assert lis(g, "infra/newer").conflicted == Reason.HOSTNAME_CONFLICT
    assert lis(g, "infra/newest").valid


def test_unsupported_protocol_is_not_accepted_and_supports_no_kinds() -> None:
    g = graph(gateway(listeners=[listener("tcp", 9000, "TCP")]))
    state = lis(g, name="tcp")
    assert state.accepted[:2] == (False, Reason.UNSUPPORTED_PROTOCOL)
    assert state.supported_kinds == ()


@pytest.mark.parametrize("hostname", ["Foo.example.com", "10.0.0.1", "foo_bar.example.com",
                                      "*.", "-a.example.com"])
def test_invalid_listener_hostname_is_unsupported_value(hostname: str) -> None:
    g = graph(gateway(listeners=[listener(hostname=hostname)]))
    assert lis(g).accepted[:2] == (False, Reason.UNSUPPORTED_VALUE)


def test_invalid_route_kinds_keep_only_httproute_in_supported_kinds() -> None:
    g = graph(gateway(listeners=[listener(allowedRoutes={"kinds": [
        {"kind": "HTTPRoute"}, {"kind": "TCPRoute"}]})]))
    state = lis(g)
    assert state.supported_kinds == (("gateway.networking.k8s.io", "HTTPRoute"),)
    assert state.resolved[:2] == (False, Reason.INVALID_ROUTE_KINDS)


def _https(**tls: Any) -> dict:
    return gateway(listeners=[listener("https", 443, "HTTPS", tls=tls)])


def test_https_listener_with_a_valid_tls_secret_resolves() -> None:
    g = graph(secret(), _https(certificateRefs=[{"name": "cert"}]))
    assert lis(g, name="https").valid
    assert lis(g, name="https").certificates == ("infra/cert",)


@pytest.mark.parametrize(("objs", "ref", "reason"), [
    ([], {"name": "cert"}, Reason.INVALID_CERTIFICATE_REF),
    ([secret(type_="Opaque")], {"name": "cert"}, Reason.INVALID_CERTIFICATE_REF),
    ([secret(keys=("tls.crt",))], {"name": "cert"}, Reason.INVALID_CERTIFICATE_REF),
    ([secret(ns="certs")], {"name": "cert", "namespace": "certs"}, Reason.REF_NOT_PERMITTED),
    ([secret()], {"name": "cert", "kind": "ConfigMap"}, Reason.INVALID_CERTIFICATE_REF),
])
def test_https_listener_certificate_ref_problems(objs: list, ref: dict, reason: Reason) -> None:
    g = graph(*objs, _https(certificateRefs=[ref]))
    state = lis(g, name="https")
    assert state.resolved[:2] == (False, reason)
    assert not state.valid


def test_cross_namespace_certificate_ref_allowed_by_reference_grant() -> None:
    g = graph(secret(ns="certs"), grant("certs", "infra", from_kind="Gateway", to_kind="Secret"),
              _https(certificateRefs=[{"name": "cert", "namespace": "certs"}]))
    assert lis(g, name="https").valid
    assert lis(g, name="https").certificates == ("certs/cert",)


# --------------------------------------------------------------------------- attachment


TWO = [listener("a", 80), listener("b", 8080)]


def test_attach_by_section_name_selects_only_that_listener() -> None:
    g = graph(gateway(listeners=TWO))
    (att,) = attach(g, route(parents=[{"name": "gw", "sectionName": "b"}]))
    assert att.accepted[0]
    assert [x.spec.name for x, _ in att.listeners] == ["b"]


def test_attach_by_port_selects_listeners_on_that_port() -> None:
    g = graph(gateway(listeners=TWO))
    (att,) = attach(g, route(parents=[{"name": "gw", "port": 8080}]))
    assert [x.spec.name for x, _ in att.listeners] == ["b"]


def test_attach_without_section_name_or_port_selects_all_listeners() -> None:
    g = graph(gateway(listeners=TWO))
    (att,) = attach(g, route())
    assert [x.spec.name for x, _ in att.listeners] == ["a", "b"]


@pytest.mark.parametrize("ref", [
    {"name": "gw", "sectionName": "nope"},
    {"name": "gw", "port": 9999},
    {"name": "gw", "sectionName": "a", "port": 8080},  # both must match the same listener
])
def test_no_listener_matching_section_name_or_port_is_no_matching_parent(ref: dict) -> None:
    g = graph(gateway(listeners=TWO))
    (att,) = attach(g, route(parents=[ref]))
    assert att.accepted[:2] == (False, Reason.NO_MATCHING_PARENT)
    assert att.listeners == []


def test_allowed_routes_same_rejects_other_namespace() -> None:
    g = graph(gateway())
    (att,) = attach(g, route(ns="app"))
    assert att.accepted[:2] == (False, Reason.NOT_ALLOWED_BY_LISTENERS)
    (att,) = attach(g, route(ns="infra"))
    assert att.accepted[0]


def test_allowed_routes_all_accepts_any_namespace() -> None:
    g = graph(gateway(listeners=[listener(allowedRoutes={"namespaces": {"from": "All"}})]))
    (att,) = attach(g, route(ns="anywhere"))
    assert att.accepted[0]


def test_allowed_routes_selector_uses_namespace_labels() -> None:
    sel = {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "web"}}}}
    g = graph(namespace("app", team="web"), namespace("db", team="data"),
              gateway(listeners=[listener(allowedRoutes=sel)]))
    assert attach(g, route(ns="app"))[0].accepted[0]
    assert attach(g, route(ns="db"))[0].accepted[:2] == (False, Reason.NOT_ALLOWED_BY_LISTENERS)
    assert not attach(g, route(ns="unknown"))[0].accepted[0]


def test_allowed_routes_selector_sees_implicit_metadata_name_label() -> None:
    sel = {"namespaces": {"from": "Selector", "selector": {
        "matchLabels": {"kubernetes.io/metadata.name": "app"}}}}
    # No Namespace object at all: the implicit label still applies.
    g = graph(gateway(listeners=[listener(allowedRoutes=sel)]))
    assert attach(g, route(ns="app"))[0].accepted[0]
    assert not attach(g, route(ns="other"))[0].accepted[0]
    assert g.namespace_labels("app") == {"kubernetes.io/metadata.name": "app"}


def test_allowed_routes_selector_match_expressions() -> None:
    sel = {"namespaces": {"from": "Selector", "selector": {"matchExpressions": [
        {"key": "env", "operator": "NotIn", "values": ["prod"]}]}}}
    g = graph(namespace("dev", env="dev"), namespace("prod", env="prod"),
              gateway(listeners=[listener(allowedRoutes=sel)]))
    assert attach(g, route(ns="dev"))[0].accepted[0]
    assert not attach(g, route(ns="prod"))[0].accepted[0]


def test_listener_without_httproute_support_does_not_allow_the_route() -> None:
    g = graph(gateway(listeners=[listener("tcp", 80, "TCP")]))
    (att,) = attach(g, route())
    assert att.accepted[:2] == (False, Reason.NOT_ALLOWED_BY_LISTENERS)
    assert att.listeners == []


def test_conflicted_listener_still_attaches_the_route_but_is_not_valid() -> None:
    # ListenerStatus.AttachedRoutes: "Listener or Route status does not impact successful
    # attachment".
    g = graph(gateway(listeners=[listener("a", 80), listener("b", 80)]))
    (att,) = attach(g, route(parents=[{"name": "gw", "namespace": "infra", "sectionName": "a"}]))
    assert att.accepted[0]
    assert [x.spec.name for x, _ in att.listeners] == ["a"]
    assert not lis(g, name="a").valid


def test_listener_wildcard_times_route_hostnames_gives_the_intersection() -> None:
    g = graph(gateway(listeners=[listener(hostname="*.example.com")]))
    (att,) = attach(g, route(hostnames=["foo.example.com", "example.com", "bar.example.com"]))
    assert att.accepted[0]
    ((_, names),) = att.listeners
    assert names == ("bar.example.com", "foo.example.com")


def test_route_without_hostnames_inherits_the_listener_hostname() -> None:
    g = graph(gateway(listeners=[listener(hostname="foo.example.com")]))
    ((_, names),) = attach(g, route())[0].listeners
    assert names == ("foo.example.com",)


def test_no_intersecting_hostname_is_no_matching_listener_hostname() -> None:
    g = graph(gateway(listeners=[listener(hostname="foo.example.com")]))
    (att,) = attach(g, route(hostnames=["bar.example.com"]))
    assert att.accepted[:2] == (False, Reason.NO_MATCHING_LISTENER_HOSTNAME)


def test_parent_ref_namespace_defaults_to_the_route_namespace() -> None:
    g = graph(gateway(ns="app"))
    (att,) = attach(g, route(ns="app", parents=[{"name": "gw"}]))
    assert att.accepted[0]


# --------------------------------------------------------------------------- backends


def _resolve(g: Graph, name: str = "web", port: int | None = 80, route_ns: str = "app",
             **ref: Any):  # noqa: ANN202
    r = parse_object(route(ns=route_ns, rules=[{"backendRefs": [
        {"name": name, **({"port": port} if port is not None else {}), **ref}]}]))
    assert isinstance(r, HTTPRoute)
    b = r.spec.rules[0].backend_refs[0]
    return g.resolve_backend(b, route_ns, b.weight)


def test_backend_ready_true_and_unset_are_used_ready_false_is_not() -> None:
    g = graph(service(), eslice("web-1", ports=[{"name": "http", "port": 8080}], endpoints=[
        ep("10.0.0.1", ready=True), ep("10.0.0.2", ready=None), ep("10.0.0.3", ready=False)]))
    rb = _resolve(g)
    assert rb.invalid is None
    assert rb.name == "app/web:80"
    assert rb.endpoints == (Endpoint(address="10.0.0.1", port=8080),
                            Endpoint(address="10.0.0.2", port=8080))


def test_backend_port_is_mapped_through_the_service_port_name() -> None:
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": "web"},
                         {"name": "admin", "port": 81, "targetPort": 9000}])
    eps = eslice("web-1", ports=[{"name": "admin", "port": 9000}, {"name": "http", "port": 8080}],
                 endpoints=[ep("10.0.0.1")])
    g = graph(svc, eps)
    assert _resolve(g, port=80).endpoints == (Endpoint(address="10.0.0.1", port=8080),)
    assert _resolve(g, port=81).endpoints == (Endpoint(address="10.0.0.1", port=9000),)


def test_multiple_slices_are_merged_deduplicated_and_sorted() -> None:
    ports = [{"name": "http", "port": 8080}]
    g = graph(service(),
              eslice("web-b", ports=ports, endpoints=[ep("10.0.0.3"), ep("10.0.0.1")]),
              eslice("web-a", ports=ports, endpoints=[ep("10.0.0.2", "10.0.0.1")]),
              eslice("other", svc="other", ports=ports, endpoints=[ep("10.9.9.9")]))
    assert [e.address for e in _resolve(g).endpoints] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_slice_without_ports_uses_the_numeric_target_port() -> None:
    g = graph(service(), eslice("web-1", endpoints=[ep("10.0.0.1")]))
    assert _resolve(g).endpoints == (Endpoint(address="10.0.0.1", port=8080),)


def test_valid_service_without_endpoints_resolves_with_no_endpoints() -> None:
    rb = _resolve(graph(service()))
    assert rb.invalid is None and rb.endpoints == ()


@pytest.mark.parametrize(("objs", "kw", "reason"), [
    ([], {}, Reason.BACKEND_NOT_FOUND),
    ([service(type="ExternalName", externalName="example.com")], {}, Reason.BACKEND_NOT_FOUND),
    ([service()], {"port": 9999}, Reason.BACKEND_NOT_FOUND),
    ([service()], {"port": None}, Reason.BACKEND_NOT_FOUND),
    ([service()], {"kind": "ConfigMap"}, Reason.INVALID_KIND),
    ([service()], {"group": "example.com", "kind": "Service"}, Reason.INVALID_KIND),
    ([service(ports=[{"name": "h", "port": 80, "appProtocol": "kubernetes.io/h2c"}])], {},
     Reason.UNSUPPORTED_PROTOCOL),
])
def test_invalid_backend_refs(objs: list, kw: dict, reason: Reason) -> None:
    rb = _resolve(graph(*objs), **kw)
    assert rb.invalid is not None and rb.invalid[0] == reason
    assert rb.weight == 1


def test_websocket_app_protocol_is_unsupported_until_upgrade_is_tunnelled() -> None:
    g = graph(service(ports=[{"name": "ws", "port": 80, "appProtocol": "kubernetes.io/ws"}]))
    rb = _resolve(g)
    assert rb.invalid is not None and rb.invalid[0] == Reason.UNSUPPORTED_PROTOCOL


def test_cross_namespace_backend_without_grant_is_ref_not_permitted() -> None:
    rb = _resolve(graph(service(ns="data")), namespace="data")
    assert rb.invalid is not None and rb.invalid[0] == Reason.REF_NOT_PERMITTED
    assert rb.name == "data/web:80"


@pytest.mark.parametrize("to_name", [None, "web"])
def test_cross_namespace_backend_allowed_by_grant(to_name: str | None) -> None:
    g = graph(service(ns="data"), grant("data", "app", to_name=to_name))
    assert _resolve(g, namespace="data").invalid is None


@pytest.mark.parametrize("g_obj", [
    grant("data", "app", to_name="other"),  # grant names a different Service
    grant("data", "elsewhere"),  # grant from another namespace
    grant("app", "app"),  # grant in the wrong (source) namespace
    grant("data", "app", from_kind="Gateway"),  # grant for another kind
])
def test_reference_grant_must_match_exactly(g_obj: dict) -> None:
    g = graph(service(ns="data"), g_obj)
    rb = _resolve(g, namespace="data")
    assert rb.invalid is not None and rb.invalid[0] == Reason.REF_NOT_PERMITTED
