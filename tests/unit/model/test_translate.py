"""The translator (rauta.model.translate): snapshot -> RouterConfig + statuses."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from rauta.model import config as cfg
from rauta.model.conditions import Condition, CondType, Reason
from rauta.model.resources import parse_object
from rauta.model.snapshot import Snapshot
from rauta.model.status import Applied, GatewayStatus, RouteParentStatus
from rauta.model.translate import (
    RuleError,
    Translation,
    parse_duration_ms,
    precedence_key,
    translate,
)

CTRL = "rauta.io/gateway-controller"

# --------------------------------------------------------------------------- builders


def gclass(name: str = "rauta", controller: str = CTRL) -> dict:
    return {"kind": "GatewayClass", "metadata": {"name": name},
            "spec": {"controllerName": controller}}


def listener(name: str = "http", port: int = 80, protocol: str = "HTTP", **kw: Any) -> dict:
    return {"name": name, "port": port, "protocol": protocol,
            "allowedRoutes": {"namespaces": {"from": "All"}}, **kw}


def gateway(name: str = "gw", ns: str = "infra", listeners: list | None = None,
            cls: str = "rauta", **spec: Any) -> dict:
    return {"kind": "Gateway",
            "metadata": {"name": name, "namespace": ns, "generation": 3,
                         "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"gatewayClassName": cls, "listeners": listeners or [listener()], **spec}}


def route(name: str = "web", ns: str = "app", rules: list | None = None,
          hostnames: list | None = None, parents: list | None = None,
          created: str = "2024-01-01T00:00:00Z") -> dict:
    spec: dict = {"parentRefs": parents or [{"name": "gw", "namespace": "infra"}],
                  "rules": rules if rules is not None else [
                      {"backendRefs": [{"name": "web", "port": 80}]}]}
    if hostnames is not None:
        spec["hostnames"] = hostnames
    return {"kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created,
                         "generation": 2},
            "spec": spec}


def service(name: str = "web", ns: str = "app") -> dict:
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def eslice(svc: str = "web", ns: str = "app", *addrs: str) -> dict:
    return {"kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-1", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}}
                          for a in (addrs or ("10.0.0.1",))]}


BASE = [gclass(), gateway(), service(), eslice()]


def snap(*objs: dict) -> Snapshot:
    """BASE plus ``objs``; an object in ``objs`` replaces a BASE object with the same key."""
    def key(o: dict) -> tuple[str, str, str]:
        return (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
    merged = {key(o): o for o in [*BASE, *objs]}
    return Snapshot.from_dicts(list(merged.values()))


def gw_status(t: Translation, key: str = "infra/gw") -> GatewayStatus:
    return next(g for g in t.statuses.gateways if f"{g.namespace}/{g.name}" == key)


def conds(items: tuple[Condition, ...]) -> dict[str, Condition]:
    return {c.type.value: c for c in items}


def parent(t: Translation, key: str = "app/web", index: int = 0) -> RouteParentStatus:
    r = next(r for r in t.statuses.routes if f"{r.namespace}/{r.name}" == key)
    return r.parents[index]


def rules(t: Translation, port: int = 80, listener_index: int = 0) -> tuple[cfg.Rule, ...]:
    p = t.config.port(port)
    assert p is not None
    return p.listeners[listener_index].rules


# --------------------------------------------------------------------------- basics


def test_simple_route_compiles_to_one_rule_with_resolved_backend() -> None:
    t = translate(snap(route()))
    (rule,) = rules(t)
    assert rule.route == "app/web"
    assert rule.match.path == cfg.PathMatch(type="PathPrefix", value="/")
    (backend,) = rule.backends
    assert backend.name == "app/web:80" and backend.weight == 1 and backend.invalid is None
    assert backend.endpoints == (cfg.Endpoint(address="10.0.0.1", port=8080),)
    c = conds(parent(t).conditions)
    assert (c["Accepted"].status, c["Accepted"].reason) == ("True", Reason.ACCEPTED)
    assert (c["ResolvedRefs"].status, c["ResolvedRefs"].reason) == ("True", Reason.RESOLVED_REFS)
    assert "PartiallyInvalid" not in c


def test_route_parent_status_names_parent_ref_with_defaults_and_our_controller() -> None:
    t = translate(snap(route(parents=[{"name": "gw", "namespace": "infra",
                                        "sectionName": "http"}])))
    p = parent(t)
    assert dict(p.parent_ref) == {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                  "namespace": "infra", "name": "gw", "sectionName": "http"}
    assert p.controller_name == CTRL


def test_custom_controller_name_owns_its_class_and_signs_route_status() -> None:
    s = Snapshot.from_dicts([gclass("mine", "example.com/mine"), gateway(cls="mine"),
                             service(), eslice(), route()])
    assert translate(s).config.ports == ()
    t = translate(s, controller_name="example.com/mine")
    assert [g.name for g in t.statuses.gateway_classes] == ["mine"]
    assert parent(t).controller_name == "example.com/mine"


def test_gateway_class_status_only_for_our_classes() -> None:
    t = translate(snap(gclass("other", "example.com/x"), route()))
    (gc,) = t.statuses.gateway_classes
    assert gc.name == "rauta"
    assert conds(gc.conditions)["Accepted"].status == "True"


def test_route_for_foreign_gateway_gets_no_status_from_us() -> None:
    t = translate(snap(route(parents=[{"name": "nope", "namespace": "infra"}])))
    assert t.statuses.routes == ()


def test_prefix_path_is_normalised_and_empty_matches_means_prefix_slash() -> None:
    t = translate(snap(route(rules=[
        {"matches": [{"path": {"type": "PathPrefix", "value": "/api/"}}]},
        {"matches": []}])))
    values = [r.match.path.value for r in rules(t)]
    assert values == ["/api", "/"]


def test_header_and_query_matches_dedupe_by_name_first_wins() -> None:
    t = translate(snap(route(rules=[{"matches": [{
        "headers": [{"name": "X-Env", "value": "a"}, {"name": "x-env", "value": "b"}],
        "queryParams": [{"name": "q", "value": "1"}, {"name": "q", "value": "2"},
                        {"name": "Q", "value": "3"}]}]}])))
    (rule,) = rules(t)
    assert rule.match.headers == (cfg.HeaderMatch(type="Exact", name="x-env", value="a"),)
    assert [(q.name, q.value) for q in rule.match.query] == [("q", "1"), ("Q", "3")]


# --------------------------------------------------------------------------- precedence


def _rule(route: str = "ns/r", *, hostname: str = "", ptype: str = "PathPrefix",
          path: str = "/", method: str | None = None, headers: int = 0, query: int = 0,
          rule_index: int = 0, match_index: int = 0) -> cfg.Rule:
    return cfg.Rule(
        route=route, rule_index=rule_index, match_index=match_index, hostname=hostname,
        match=cfg.Match(
            path=cfg.PathMatch(type=ptype, value=path), method=method,  # type: ignore[arg-type]
            headers=tuple(cfg.HeaderMatch(type="Exact", name=f"h{i}", value="v")
                          for i in range(headers)),
            query=tuple(cfg.QueryMatch(type="Exact", name=f"q{i}", value="v")
                        for i in range(query))))


def _winner(*candidates: tuple[cfg.Rule, str]) -> cfg.Rule:
    return min(candidates, key=lambda rc: precedence_key(rc[0], rc[1]))[0]


T0, T1 = "2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z"


def test_precedence_exact_hostname_foo_example_com_beats_wildcard_star_example_com() -> None:
    exact, wild = _rule(hostname="foo.example.com"), _rule(hostname="*.example.com", path="/long")
    assert _winner((wild, T0), (exact, T1)) is exact


def test_precedence_longer_wildcard_beats_shorter_wildcard_and_catch_all() -> None:
    long_, short, none = (_rule(hostname="*.foo.example.com"), _rule(hostname="*.example.com"),
                          _rule(hostname=""))
    assert _winner((none, T0), (short, T0), (long_, T1)) is long_
    assert _winner((none, T0), (short, T1)) is short


def test_precedence_exact_path_beats_any_prefix() -> None:
    exact = _rule(ptype="Exact", path="/a")
    prefix = _rule(path="/a/very/long/prefix", method="GET", headers=3)
    assert _winner((prefix, T0), (exact, T1)) is exact


def test_precedence_longer_prefix_beats_shorter() -> None:
    longer, shorter = _rule(path="/foo/bar"), _rule(path="/foo", headers=2)
    assert _winner((shorter, T0), (longer, T1)) is longer


def test_precedence_regular_expression_sits_between_exact_and_prefix() -> None:
    exact = _rule(ptype="Exact", path="/x")
    regex = _rule(ptype="RegularExpression", path="/.*")
    prefix = _rule(path="/some/long/prefix")
    assert _winner((regex, T0), (exact, T1)) is exact
    assert _winner((prefix, T0), (regex, T1)) is regex
    longer_regex = _rule(ptype="RegularExpression", path="/api/.*")
    assert _winner((regex, T0), (longer_regex, T1)) is longer_regex


def test_precedence_method_match_beats_none() -> None:
    with_method, without = _rule(method="GET"), _rule(headers=2, query=2)
    assert _winner((without, T0), (with_method, T1)) is with_method


def test_precedence_more_headers_win_then_more_query_params() -> None:
    two_h, one_h = _rule(headers=2), _rule(headers=1, query=5)
    assert _winner((one_h, T0), (two_h, T1)) is two_h
    two_q, one_q = _rule(query=2), _rule(query=1)
    assert _winner((one_q, T0), (two_q, T1)) is two_q


def test_precedence_older_route_wins_ties() -> None:
    old, new = _rule("b/b"), _rule("a/a")
    assert _winner((new, T1), (old, T0)) is old


def test_precedence_namespace_name_alphabetical_on_equal_age() -> None:
    a, b = _rule("alpha/web"), _rule("beta/web")
    assert _winner((b, T0), (a, T0)) is a
    x, y = _rule("ns/a"), _rule("ns/b")
    assert _winner((y, T0), (x, T0)) is x


def test_precedence_alphabetical_by_namespace_slash_name_string_team_a_before_team() -> None:
    team, team_a = _rule("team/web"), _rule("team-a/web")
    assert _winner((team, T0), (team_a, T0)) is team_a


def test_precedence_within_a_route_first_rule_then_first_match_wins() -> None:
    r0m1 = _rule(rule_index=0, match_index=1)
    r1m0 = _rule(rule_index=1, match_index=0)
    r0m0 = _rule(rule_index=0, match_index=0)
    assert _winner((r1m0, T0), (r0m1, T0), (r0m0, T0)) is r0m0
    assert _winner((r1m0, T0), (r0m1, T0)) is r0m1


def test_translated_rules_are_sorted_by_precedence_across_routes() -> None:
    t = translate(snap(
        route("new", created=T1, rules=[{"matches": [{"path": {"type": "Exact", "value": "/x"}}]}]),
        route("old", created=T0, rules=[
            {"matches": [{"path": {"value": "/"}}]},
            {"matches": [{"path": {"value": "/api"}}, {"path": {"value": "/api"},
                                                        "method": "GET"}]}]),
        route("twin", created=T0, rules=[{"matches": [{"path": {"value": "/api"}}]}]),
    ))
    order = [(r.route, r.rule_index, r.match_index) for r in rules(t)]
    assert order == [("app/new", 0, 0), ("app/old", 1, 1), ("app/old", 1, 0),
                     ("app/twin", 0, 0), ("app/old", 0, 0)]


# --------------------------------------------------------------------------- invalid rules


BAD_MATCHES = [
    {"matches": [{"path": {"type": "RegularExpression", "value": "(unclosed"}}]},
    {"matches": [{"headers": [{"type": "RegularExpression", "name": "x", "value": "[a"}]}]},
    {"matches": [{"path": {"type": "PathPrefix", "value": "no-slash"}}]},
]
BAD_FILTERS_OR_TIMEOUTS = [
    {"filters": [{"type": "ExtensionRef",
                  "extensionRef": {"group": "example.com", "kind": "Foo", "name": "f"}}]},
    {"filters": [{"type": "NoSuchFilter"}]},
    {"matches": [{"path": {"type": "Exact", "value": "/x"}}],
     "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {
         "type": "ReplacePrefixMatch", "replacePrefixMatch": "/y"}}}]},
    {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}},
                 {"type": "URLRewrite", "urlRewrite": {"hostname": "x.example.com"}}]},
    {"filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {}},
                 {"type": "RequestHeaderModifier", "requestHeaderModifier": {}}]},
    {"timeouts": {"request": "10 seconds"}},
    {"timeouts": {"request": "1s", "backendRequest": "2s"}},
]
GOOD_RULE = {"matches": [{"path": {"value": "/ok"}}], "backendRefs": [{"name": "web", "port": 80}]}


def _partially_invalid(t) -> None:
    c = conds(parent(t).conditions)
    assert (c["Accepted"].status, c["Accepted"].reason) == ("True", Reason.ACCEPTED)
    pi = c["PartiallyInvalid"]
    assert (pi.status, pi.reason) == ("True", Reason.UNSUPPORTED_VALUE)
    assert "rule 0: " in pi.message


@pytest.mark.parametrize("bad_rule", BAD_MATCHES)
def test_rule_with_invalid_matches_is_dropped_with_partially_invalid(bad_rule: dict) -> None:
    t = translate(snap(route(rules=[bad_rule, GOOD_RULE])))
    assert [(r.rule_index, r.match.path.value) for r in rules(t)] == [(1, "/ok")]
    _partially_invalid(t)


@pytest.mark.parametrize("bad_rule", BAD_FILTERS_OR_TIMEOUTS)
def test_rule_with_unsupported_filter_or_timeout_answers_500_not_fall_through(
        bad_rule: dict) -> None:
    """httproute_types.go HTTPRouteFilter: a filter MUST NOT be skipped; its requests get an
    error. So the rule keeps its matches, marked invalid, without filters or backends."""
    t = translate(snap(route(rules=[bad_rule, GOOD_RULE])))
    compiled = {r.rule_index: r for r in rules(t)}
    assert set(compiled) == {0, 1}
    assert compiled[0].invalid is not None and compiled[0].invalid.startswith("rule 0: ")
    assert compiled[0].backends == () and compiled[0].filters == cfg.Filters()
    assert compiled[1].invalid is None
    _partially_invalid(t)
    assert "(answers 500)" in conds(parent(t).conditions)["PartiallyInvalid"].message


def test_route_with_every_rule_invalid_is_not_accepted_unsupported_value() -> None:
    """Issue 20: the only rule of the route has an unsupported filter. The route is fully
    invalid (Accepted=False, no PartiallyInvalid) but its rule is still programmed, as a
    500, and the route still counts as attached (ListenerStatus.AttachedRoutes counts
    routes "that may themselves have Accepted: false conditions")."""
    t = translate(snap(route(rules=[{"filters": [{"type": "Bogus"}]}])))
    c = conds(parent(t).conditions)
    assert (c["Accepted"].status, c["Accepted"].reason) == ("False", Reason.UNSUPPORTED_VALUE)
    assert c["Accepted"].message.startswith("All rules are invalid: rule 0: ")
    assert "PartiallyInvalid" not in c
    (only,) = rules(t)
    assert only.invalid is not None and only.backends == ()
    assert gw_status(t).listeners[0].attached_routes == 1


def test_named_rule_is_named_in_the_partially_invalid_message() -> None:
    t = translate(snap(route(rules=[{"name": "broken", "filters": [{"type": "Bogus"}]}, {}])))
    assert "rule broken: " in conds(parent(t).conditions)["PartiallyInvalid"].message


def test_partially_invalid_message_starts_with_dropped_rule() -> None:
    # shared_types.go RouteConditionPartiallyInvalid: "The message for this condition MUST
    # start with the prefix "Dropped Rule"".
    t = translate(snap(route(rules=[{"filters": [{"type": "Bogus"}]}, {}])))
    assert conds(parent(t).conditions)["PartiallyInvalid"].message.startswith("Dropped Rule")


def test_partially_invalid_is_not_set_on_a_parent_that_did_not_accept_the_route() -> None:
    t = translate(snap(route(parents=[{"name": "gw", "namespace": "infra", "sectionName": "x"}],
                             rules=[{"filters": [{"type": "Bogus"}]}, {}])))
    c = conds(parent(t).conditions)
    assert (c["Accepted"].status, c["Accepted"].reason) == ("False", Reason.NO_MATCHING_PARENT)
    assert "PartiallyInvalid" not in c


def test_unresolvable_extension_ref_rule_answers_an_error_instead_of_falling_through() -> None:
    t = translate(snap(route(rules=[
        {"matches": [{"path": {"value": "/admin"}}],
         "filters": [{"type": "ExtensionRef", "extensionRef": {
             "group": "auth.example.com", "kind": "AuthFilter", "name": "staff-only"}}],
         "backendRefs": [{"name": "web", "port": 80}]},
        {"matches": [{"path": {"value": "/"}}], "backendRefs": [{"name": "web", "port": 80}]}])))
    admin = [r for r in rules(t) if r.match.path.value == "/admin"]
    assert admin, "the /admin rule must stay so that /admin requests do not reach rule 1"
    assert admin[0].filters.redirect is None
    assert admin[0].invalid is not None and "ExtensionRef" in admin[0].invalid


# --------------------------------------------------------------------------- backends


def test_invalid_backends_stay_with_their_weight_for_500_answers() -> None:
    t = translate(snap(route(rules=[{"backendRefs": [
        {"name": "web", "port": 80, "weight": 3}, {"name": "missing", "port": 80, "weight": 1},
        {"name": "web", "port": 80, "weight": 0, "kind": "ConfigMap", "group": ""}]}])))
    (rule,) = rules(t)
    assert [(b.name, b.weight, b.invalid is not None) for b in rule.backends] == [
        ("app/web:80", 3, False), ("app/missing:80", 1, True), ("app/web:80", 0, True)]
    rr = conds(parent(t).conditions)["ResolvedRefs"]
    assert (rr.status, rr.reason) == ("False", Reason.BACKEND_NOT_FOUND)
    assert "app/missing" in rr.message
    # Reference problems do not make the route unaccepted.
    assert conds(parent(t).conditions)["Accepted"].status == "True"


def test_rule_without_backend_refs_compiles_with_no_backends() -> None:
    t = translate(snap(route(rules=[{}])))
    (rule,) = rules(t)
    assert rule.backends == ()


def test_cross_namespace_backend_ref_not_permitted_without_grant() -> None:
    t = translate(snap(service("db", "data"),
                       route(rules=[{"backendRefs": [{"name": "db", "namespace": "data",
                                                      "port": 80}]}])))
    rr = conds(parent(t).conditions)["ResolvedRefs"]
    assert (rr.status, rr.reason) == ("False", Reason.REF_NOT_PERMITTED)
    assert rules(t)[0].backends[0].invalid is not None


def test_mirror_to_invalid_backend_is_dropped_and_reported() -> None:
    t = translate(snap(route(rules=[{
        "filters": [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"name": "missing", "port": 80}}}],
        "backendRefs": [{"name": "web", "port": 80}]}])))
    (rule,) = rules(t)
    assert rule.filters.mirrors == ()
    assert conds(parent(t).conditions)["ResolvedRefs"].reason == Reason.BACKEND_NOT_FOUND


def test_timeouts_in_milliseconds_and_zero_means_none() -> None:
    t = translate(snap(route(rules=[
        {"timeouts": {"request": "10s", "backendRequest": "500ms"}},
        {"matches": [{"path": {"value": "/z"}}], "timeouts": {"request": "0s"}}])))
    by_index = {r.rule_index: r.timeouts for r in rules(t)}
    assert by_index[0] == cfg.Timeouts(request_ms=10_000, backend_request_ms=500)
    assert by_index[1] == cfg.Timeouts()


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(("text", "ms"), [
    ("10s", 10_000), ("500ms", 500), ("1h", 3_600_000), ("2m", 120_000),
    ("1h2m3s", 3_723_000), ("1m30s", 90_000), ("0s", 0), ("1h1m1s1ms", 3_661_001),
    ("99999ms", 99_999),
])
def test_parse_duration_ms_accepts_gateway_api_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "1", "1d", "1.5s", "-1s", "s", "123456s", "1h1m1s1ms1h",
                                  "1 s", "1S"])
def test_parse_duration_ms_rejects_invalid_text(text: str) -> None:
    with pytest.raises(RuleError):
        parse_duration_ms(text)


# --------------------------------------------------------------------------- listeners, ports


def test_attached_routes_counts_distinct_accepted_routes_per_listener() -> None:
    t = translate(snap(
        gateway("two", listeners=[listener("a", 81), listener("b", 82)]),
        route("r1", parents=[{"name": "two", "namespace": "infra", "sectionName": "a"},
                             {"name": "two", "namespace": "infra"}]),
        route("r2", parents=[{"name": "two", "namespace": "infra", "port": 82}]),
        route("r3", parents=[{"name": "two", "namespace": "infra", "sectionName": "zzz"}]),
    ))
    counts = {ls.name: ls.attached_routes for ls in gw_status(t, "infra/two").listeners}
    assert counts == {"a": 1, "b": 2}


def test_attached_routes_counted_on_listener_with_unresolved_certificate_ref() -> None:
    # Conformance GatewayWithAttachedRoutes: "AttachedRoutes set even when Gateway has
    # unresolved refs" (listener tls: ResolvedRefs False, Programmed False, attachedRoutes 1).
    t = translate(snap(
        gateway("unresolved", listeners=[listener(
            "tls", 443, "HTTPS",
            tls={"mode": "Terminate", "certificateRefs": [{"name": "does-not-exist"}]})]),
        route("http-route-4", parents=[{"name": "unresolved", "namespace": "infra",
                                        "sectionName": "tls"}],
              rules=[{"backendRefs": [{"name": "does-not-exist", "port": 8080}]}])))
    (ls,) = gw_status(t, "infra/unresolved").listeners
    c = conds(ls.conditions)
    assert (c["ResolvedRefs"].status, c["Programmed"].status) == ("False", "False")
    assert ls.attached_routes == 1


def test_listeners_on_a_port_are_ordered_exact_then_wildcard_then_catch_all() -> None:
    t = translate(snap(gateway("many", listeners=[
        listener("any", 8080), listener("wild", 8080, hostname="*.example.com"),
        listener("foo", 8080, hostname="foo.example.com")])))
    p = t.config.port(8080)
    assert p is not None and p.protocol == "HTTP"
    assert [ls.listener for ls in p.listeners] == ["foo", "wild", "any"]


def test_invalid_listeners_get_no_port_config_and_gateway_lists_not_valid() -> None:
    t = translate(snap(gateway(listeners=[listener("tcp", 9000, "TCP")])))
    assert t.config.port(9000) is None
    gs = conds(gw_status(t).conditions)
    assert (gs["Accepted"].status, gs["Accepted"].reason) == ("False", Reason.LISTENERS_NOT_VALID)
    assert (gs["Programmed"].status, gs["Programmed"].reason) == ("False", Reason.INVALID)
    ls = conds(gw_status(t).listeners[0].conditions)
    assert (ls["Accepted"].status, ls["Accepted"].reason) == ("False",
                                                             Reason.UNSUPPORTED_PROTOCOL)


def test_some_invalid_listeners_keep_gateway_accepted_with_listeners_not_valid() -> None:
    t = translate(snap(gateway(listeners=[listener("http", 80), listener("tcp", 9000, "TCP")])))
    gs = conds(gw_status(t).conditions)
    assert (gs["Accepted"].status, gs["Accepted"].reason) == ("True", Reason.LISTENERS_NOT_VALID)


def test_unsupported_address_type_is_unsupported_address() -> None:
    t = translate(snap(gateway(addresses=[{"type": "example.com/Named", "value": "x"}])))
    acc = conds(gw_status(t).conditions)["Accepted"]
    assert (acc.status, acc.reason) == ("False", Reason.UNSUPPORTED_ADDRESS)


def test_https_port_config_lists_certificates() -> None:
    sec = {"kind": "Secret", "metadata": {"name": "cert", "namespace": "infra"},
           "type": "kubernetes.io/tls", "stringData": {"tls.crt": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n", "tls.key": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"}}
    t = translate(snap(sec, gateway(listeners=[listener(
        "https", 443, "HTTPS", hostname="a.example.com",
        tls={"certificateRefs": [{"name": "cert"}]})])))
    p = t.config.port(443)
    assert p is not None and p.protocol == "HTTPS"
    assert p.certificates == (cfg.TLSCertificate(hostname="a.example.com",
                                                 secrets=("infra/cert",)),)


def _https_with(secret_data: dict) -> Snapshot:
    sec = {"kind": "Secret", "metadata": {"name": "cert", "namespace": "infra"},
           "type": "kubernetes.io/tls", "stringData": secret_data}
    return snap(sec, gateway(listeners=[listener(
        "https", 443, "HTTPS", tls={"certificateRefs": [{"name": "cert"}]})]))


def test_tls_secret_without_pem_blocks_is_invalid_certificate_ref() -> None:
    """gateway_types.go ListenerReasonInvalidCertificateRef: the referenced data is malformed."""
    t = translate(_https_with({"tls.crt": "hello", "tls.key": "world"}))
    rr = conds(gw_status(t).listeners[0].conditions)["ResolvedRefs"]
    assert (rr.status, rr.reason) == ("False", Reason.INVALID_CERTIFICATE_REF)
    assert "no PEM certificate" in rr.message
    assert t.config.port(443) is None


def test_certificate_the_proxy_could_not_load_is_invalid_certificate_ref() -> None:
    pem = {"tls.crt": "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
           "tls.key": "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"}
    assert translate(_https_with(pem)).config.port(443) is not None
    applied = Applied(ports=(443,), invalid_certificates=(("infra/cert", "bad key"),))
    t = translate(_https_with(pem), applied=applied)
    rr = conds(gw_status(t).listeners[0].conditions)["ResolvedRefs"]
    assert (rr.status, rr.reason) == ("False", Reason.INVALID_CERTIFICATE_REF)
    assert "bad key" in rr.message
    assert t.config.port(443) is None


def test_listener_conflict_is_reported_and_not_programmed() -> None:
    t = translate(snap(gateway(listeners=[listener("a", 80), listener("b", 80)])))
    for ls in gw_status(t).listeners:
        c = conds(ls.conditions)
        assert (c["Conflicted"].status, c["Conflicted"].reason) == ("True",
                                                                    Reason.HOSTNAME_CONFLICT)
        assert c["Programmed"].status == "False"
    assert t.config.port(80) is None


def test_valid_listener_reports_no_conflicts() -> None:
    c = conds(gw_status(translate(snap())).listeners[0].conditions)
    assert (c["Conflicted"].status, c["Conflicted"].reason) == ("False", Reason.NO_CONFLICTS)
    assert [x.type.value for x in gw_status(translate(snap())).listeners[0].conditions] == [
        "Accepted", "Programmed", "ResolvedRefs", "Conflicted"]


# --------------------------------------------------------------------------- applied


def _programmed(t: Translation) -> tuple[Condition, Condition]:
    gs = gw_status(t)
    return conds(gs.conditions)["Programmed"], conds(gs.listeners[0].conditions)["Programmed"]


def test_applied_none_means_programmed_true() -> None:
    gw, ls = _programmed(translate(snap(), applied=None))
    assert (gw.status, gw.reason) == ("True", Reason.PROGRAMMED)
    assert (ls.status, ls.reason) == ("True", Reason.PROGRAMMED)


def test_applied_with_the_port_means_programmed_true() -> None:
    gw, ls = _programmed(translate(snap(), applied=Applied(ports=(80,))))
    assert (gw.status, ls.status) == ("True", "True")


def test_applied_without_the_port_means_programmed_unknown_pending() -> None:
    gw, ls = _programmed(translate(snap(), applied=Applied(ports=())))
    assert (ls.status, ls.reason) == ("Unknown", Reason.PENDING)
    assert (gw.status, gw.reason) == ("Unknown", Reason.PENDING)


def test_applied_failure_means_programmed_false_with_the_message() -> None:
    gw, ls = _programmed(translate(snap(), applied=Applied(failed=((80, "address in use"),))))
    assert (ls.status, ls.reason, ls.message) == ("False", Reason.INVALID, "address in use")
    assert (gw.status, gw.reason) == ("False", Reason.INVALID)


# --------------------------------------------------------------------------- purity


def _world() -> list[dict]:
    return [*BASE, gateway("g2", listeners=[listener("h", 8080, hostname="*.example.com")]),
            route("a", hostnames=["x.example.com"],
                  parents=[{"name": "gw", "namespace": "infra"},
                           {"name": "g2", "namespace": "infra"}]),
            route("b", rules=[{"matches": [{"path": {"type": "Exact", "value": "/b"}}],
                               "backendRefs": [{"name": "web", "port": 80},
                                               {"name": "nope", "port": 80}]}]),
            service("other"), eslice("other", "app", "10.0.0.9", "10.0.0.8")]


def test_translate_never_mutates_its_input_snapshot() -> None:
    s = Snapshot.from_dicts(_world())
    before = [copy.deepcopy(o.model_dump()) for o in s]
    keys = s.keys()
    translate(s)
    translate(s, applied=Applied(ports=(80,)))
    assert s.keys() == keys
    assert [o.model_dump() for o in s] == before


def test_same_snapshot_gives_equal_translation() -> None:
    s = Snapshot.from_dicts(_world())
    assert translate(s) == translate(s)


def test_shuffled_input_gives_equal_translation() -> None:
    world = _world()
    expected = translate(Snapshot.from_dicts(world))
    rng = random.Random(3)
    for _ in range(5):
        rng.shuffle(world)
        assert translate(Snapshot.from_dicts(world)) == expected


def test_parse_object_of_a_translated_snapshot_is_unaffected() -> None:
    raw = route()
    original = copy.deepcopy(raw)
    translate(Snapshot.from_objects([parse_object(o) for o in [*BASE, raw]]))
    assert raw == original


def test_condition_types_are_emitted_in_catalog_order_for_routes() -> None:
    t = translate(snap(route(rules=[{"filters": [{"type": "Bogus"}]}, {}])))
    assert [c.type for c in parent(t).conditions] == [
        CondType.ACCEPTED, CondType.RESOLVED_REFS, CondType.PARTIALLY_INVALID]


# --------------------------------------------------------------------------- injection guards


@pytest.mark.parametrize("bad_filter", [
    {"type": "RequestRedirect", "requestRedirect": {"path": {
        "type": "ReplaceFullPath", "replaceFullPath": "/x\r\nSet-Cookie: pwn=1"}}},
    {"type": "URLRewrite", "urlRewrite": {"path": {
        "type": "ReplacePrefixMatch", "replacePrefixMatch": "/y HTTP/1.1\r\nHost: x\r\n\r\nGET /a"}}},
    {"type": "URLRewrite", "urlRewrite": {"path": {
        "type": "ReplaceFullPath", "replaceFullPath": "no-leading-slash"}}},
    {"type": "URLRewrite", "urlRewrite": {"hostname": "evil.example.com\r\nX: y"}},
    {"type": "RequestHeaderModifier", "requestHeaderModifier": {
        "set": [{"name": "X-Ok", "value": "a\r\nInjected: 1"}]}},
    {"type": "RequestHeaderModifier", "requestHeaderModifier": {
        "set": [{"name": "Content-Length", "value": "0"}]}},
    {"type": "RequestHeaderModifier", "requestHeaderModifier": {
        "add": [{"name": "Transfer-Encoding", "value": "chunked"}]}},
    {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"remove": ["Connection"]}},
])
def test_filters_that_could_split_messages_are_refused(bad_filter: dict) -> None:
    """CR/LF, framing headers and relative paths in filters would allow response splitting
    or request smuggling: the rule answers 500 instead (UnsupportedValue)."""
    t = translate(snap(route(rules=[{"filters": [bad_filter],
                                     "backendRefs": [{"name": "web", "port": 80}]},
                                    {"matches": [{"path": {"value": "/ok"}}],
                                     "backendRefs": [{"name": "web", "port": 80}]}])))
    compiled = {r.rule_index: r for r in rules(t)}
    assert compiled[0].invalid is not None and compiled[0].backends == ()
    pi = conds(parent(t).conditions)["PartiallyInvalid"]
    assert pi.reason == Reason.UNSUPPORTED_VALUE


def test_long_condition_messages_are_cut_to_fit_the_crd() -> None:
    many = [{"filters": [{"type": f"Bogus{i:04d}" + "x" * 60}]} for i in range(100)]
    t = translate(snap(route(rules=[*many, {}])))
    msg = conds(parent(t).conditions)["PartiallyInvalid"].message
    assert len(msg) <= 1024 and msg.endswith("...")
