"""Per-request routing decisions (rauta.model.routing) over hand-built RouterConfigs."""

from __future__ import annotations

import collections

import pytest

from rauta.model.config import (
    Backend,
    Endpoint,
    Filters,
    Header,
    HeaderMatch,
    HeaderModifier,
    ListenerRoutes,
    Match,
    Mirror,
    PathMatch,
    PathModifier,
    PortConfig,
    QueryMatch,
    Redirect,
    Rewrite,
    RouterConfig,
    Rule,
    Timeouts,
)
from rauta.model.routing import Decision, RequestView, flow_key, pick_weighted, route

# --- builders -----------------------------------------------------------------------------

EPS = tuple(Endpoint(address=f"10.0.0.{i}", port=8080) for i in range(1, 6))


def backend(name: str = "default/svc:80", weight: int = 1, **kw: object) -> Backend:
    kw.setdefault("endpoints", EPS)
    return Backend(name=name, weight=weight, **kw)  # type: ignore[arg-type]


def rule(
    path: str = "/",
    ptype: str = "PathPrefix",
    *,
    route_name: str = "default/r",
    hostname: str = "",
    method: str | None = None,
    headers: tuple[HeaderMatch, ...] = (),
    query: tuple[QueryMatch, ...] = (),
    filters: Filters | None = None,
    backends: tuple[Backend, ...] | None = None,
    timeouts: Timeouts | None = None,
    index: int = 0,
) -> Rule:
    return Rule(
        route=route_name,
        rule_index=index,
        match_index=0,
        hostname=hostname,
        match=Match(
            path=PathMatch(type=ptype, value=path),  # type: ignore[arg-type]
            method=method,
            headers=headers,
            query=query,
        ),
        filters=filters or Filters(),
        backends=(backend(),) if backends is None else backends,
        timeouts=timeouts or Timeouts(),
    )


def config(
    *rules: Rule, hostname: str = "", port: int = 80, protocol: str = "HTTP"
) -> RouterConfig:
    return RouterConfig(
        ports=(
            PortConfig(
                port=port,
                protocol=protocol,  # type: ignore[arg-type]
                listeners=(
                    ListenerRoutes(gateway="gw/gw", listener="l", hostname=hostname, rules=rules),
                ),
            ),
        )
    )


def req(
    path: str = "/",
    *,
    host: str = "example.com",
    method: str = "GET",
    query: str = "",
    headers: tuple[tuple[str, str], ...] = (),
    port: int = 80,
    scheme: str = "http",
    client_ip: str = "192.0.2.1",
    client_port: int = 40000,
) -> RequestView:
    return RequestView(
        method=method,
        host=host,
        path=path,
        query=query,
        headers=headers,
        port=port,
        scheme=scheme,
        client_ip=client_ip,
        client_port=client_port,
    )


def routed_rule(cfg: RouterConfig, r: RequestView) -> str | None:
    d = route(cfg, r)
    return d.rule.route if d.kind == "forward" and d.rule else None


# --- errors before matching ---------------------------------------------------------------


def test_unknown_port_is_404() -> None:
    d = route(config(rule()), req(port=8080))
    assert (d.kind, d.status) == ("error", 404)
    assert d.port is None


def test_bad_path_is_400() -> None:
    for path in ("/a%2Fb", "/a%00", "/a%zz", "relative", "/a\\b"):
        d = route(config(rule()), req(path))
        assert (d.kind, d.status, d.reason) == ("error", 400, "bad request path"), path


def test_no_matching_route_is_404() -> None:
    d = route(config(rule("/abc")), req("/other"))
    assert (d.kind, d.status, d.reason) == ("error", 404, "no matching route")
    assert d.rule is None


def test_empty_listener_is_404() -> None:
    d = route(config(), req("/"))
    assert (d.kind, d.status) == ("error", 404)


# --- path matching ------------------------------------------------------------------------


def test_prefix_abc_does_not_match_abcd() -> None:
    cfg = config(rule("/abc"))
    assert route(cfg, req("/abcd")).status == 404
    for path in ("/abc", "/abc/", "/abc/def"):
        assert route(cfg, req(path)).kind == "forward", path


def test_exact_abc_does_not_match_abc_slash() -> None:
    cfg = config(rule("/abc", "Exact"))
    assert route(cfg, req("/abc")).kind == "forward"
    for path in ("/abc/", "/Abc", "/abcd"):
        assert route(cfg, req(path)).status == 404, path


def test_exact_match_sees_normalized_path() -> None:
    cfg = config(rule("/a/b", "Exact"))
    assert route(cfg, req("//a/./b")).kind == "forward"
    assert route(cfg, req("/a/x/../b")).kind == "forward"


def test_dotdot_public_admin_never_matches_public_prefix() -> None:
    cfg = config(
        rule("/public", route_name="ns/public"),
        rule("/admin", route_name="ns/admin"),
    )
    assert routed_rule(cfg, req("/public/../admin")) == "ns/admin"
    assert routed_rule(cfg, req("/public/%2e%2e/admin")) == "ns/admin"
    assert routed_rule(cfg, req("/public/x")) == "ns/public"
    only_public = config(rule("/public"))
    assert route(only_public, req("/public/../admin")).status == 404
    assert route(only_public, req("/public/%2E%2E/admin")).status == 404


def test_dotdot_upstream_path_is_normalized() -> None:
    d = route(config(rule("/")), req("/public/../admin", query="a=1"))
    assert d.upstream_path == "/admin?a=1"


def test_regex_path_fullmatch() -> None:
    cfg = config(rule(r"/v[0-9]+/items", "RegularExpression"))
    assert route(cfg, req("/v2/items")).kind == "forward"
    assert route(cfg, req("/v2/items/x")).status == 404
    assert route(cfg, req("/x/v2/items")).status == 404


def test_regex_path_sees_normalized_path() -> None:
    cfg = config(rule(r"/admin(/.*)?", "RegularExpression"))
    assert route(cfg, req("/public/%2e%2e/admin/x")).kind == "forward"


def test_invalid_regex_never_matches() -> None:
    cfg = config(rule("/(unclosed", "RegularExpression"), rule("/", route_name="ns/fallback"))
    assert routed_rule(cfg, req("/(unclosed")) == "ns/fallback"


def test_first_matching_rule_wins() -> None:
    cfg = config(
        rule("/a/b", route_name="ns/long"),
        rule("/a", route_name="ns/short"),
    )
    assert routed_rule(cfg, req("/a/b/c")) == "ns/long"
    assert routed_rule(cfg, req("/a/c")) == "ns/short"


# --- hostnames ----------------------------------------------------------------------------


def test_wildcard_host_matches_a_b_example_com_not_example_com() -> None:
    cfg = config(rule(hostname="*.example.com"))
    assert route(cfg, req(host="a.example.com")).kind == "forward"
    assert route(cfg, req(host="a.b.example.com")).kind == "forward"
    assert route(cfg, req(host="example.com")).status == 404


def test_wildcard_listener_matches_a_b_example_com_not_example_com() -> None:
    cfg = config(rule(), hostname="*.example.com")
    assert route(cfg, req(host="a.b.example.com")).kind == "forward"
    assert route(cfg, req(host="example.com")).status == 404


def test_host_header_port_ignored() -> None:
    cfg = config(rule(hostname="foo.example.com"))
    d = route(cfg, req(host="foo.example.com:8080"))
    assert d.kind == "forward"
    assert d.upstream_host == "foo.example.com:8080"  # forwarded unmodified


def test_host_header_case_ignored() -> None:
    cfg = config(rule(hostname="foo.example.com"))
    assert route(cfg, req(host="FOO.Example.COM")).kind == "forward"


def test_rule_hostname_mismatch_is_404() -> None:
    cfg = config(rule(hostname="foo.example.com"))
    assert route(cfg, req(host="bar.example.com")).status == 404


def test_listener_isolation_first_matching_listener_only() -> None:
    specific = ListenerRoutes(
        gateway="gw/gw",
        listener="specific",
        hostname="foo.example.com",
        rules=(rule("/foo", route_name="ns/specific"),),
    )
    catch_all = ListenerRoutes(
        gateway="gw/gw",
        listener="any",
        hostname="",
        rules=(rule("/", route_name="ns/any"),),
    )
    cfg = RouterConfig(
        ports=(PortConfig(port=80, protocol="HTTP", listeners=(specific, catch_all)),)
    )
    assert routed_rule(cfg, req("/foo", host="foo.example.com")) == "ns/specific"
    # /bar on foo.example.com belongs to the specific listener, which has no such route:
    d = route(cfg, req("/bar", host="foo.example.com"))
    assert (d.status, d.listener) == (404, specific)
    assert routed_rule(cfg, req("/bar", host="other.example.com")) == "ns/any"


# --- method, headers, query ---------------------------------------------------------------


def test_method_match() -> None:
    cfg = config(rule(method="POST", route_name="ns/post"), rule(route_name="ns/any"))
    assert routed_rule(cfg, req(method="POST")) == "ns/post"
    assert routed_rule(cfg, req(method="GET")) == "ns/any"
    assert routed_rule(cfg, req(method="post")) == "ns/any"  # methods are case-sensitive


def test_header_name_case_insensitive_value_case_sensitive() -> None:
    cfg = config(rule(headers=(HeaderMatch(type="Exact", name="version", value="v2"),)))
    assert route(cfg, req(headers=(("Version", "v2"),))).kind == "forward"
    assert route(cfg, req(headers=(("VERSION", "v2"),))).kind == "forward"
    assert route(cfg, req(headers=(("version", "V2"),))).status == 404
    assert route(cfg, req()).status == 404


def test_header_regex_fullmatch() -> None:
    cfg = config(
        rule(headers=(HeaderMatch(type="RegularExpression", name="x-id", value=r"[0-9]+"),))
    )
    assert route(cfg, req(headers=(("X-Id", "123"),))).kind == "forward"
    assert route(cfg, req(headers=(("X-Id", "123a"),))).status == 404


def test_repeated_header_values_joined_with_comma() -> None:
    cfg = config(rule(headers=(HeaderMatch(type="Exact", name="x-a", value="1,2"),)))
    assert route(cfg, req(headers=(("X-A", "1"), ("x-a", "2")))).kind == "forward"
    assert route(cfg, req(headers=(("X-A", "1"),))).status == 404


def test_all_header_matches_required() -> None:
    cfg = config(
        rule(
            headers=(
                HeaderMatch(type="Exact", name="a", value="1"),
                HeaderMatch(type="Exact", name="b", value="2"),
            )
        )
    )
    assert route(cfg, req(headers=(("a", "1"), ("b", "2")))).kind == "forward"
    assert route(cfg, req(headers=(("a", "1"),))).status == 404


def test_query_match_exact_name_case_sensitive() -> None:
    cfg = config(rule(query=(QueryMatch(type="Exact", name="animal", value="whale"),)))
    assert route(cfg, req(query="animal=whale")).kind == "forward"
    assert route(cfg, req(query="ANIMAL=whale")).status == 404
    assert route(cfg, req(query="animal=Whale")).status == 404
    assert route(cfg, req(query="")).status == 404


def test_query_first_occurrence_wins() -> None:
    cfg = config(rule(query=(QueryMatch(type="Exact", name="a", value="1"),)))
    assert route(cfg, req(query="a=1&a=2")).kind == "forward"
    assert route(cfg, req(query="a=2&a=1")).status == 404


def test_query_values_percent_decoded() -> None:
    cfg = config(rule(query=(QueryMatch(type="Exact", name="q", value="a b/c"),)))
    assert route(cfg, req(query="q=a%20b%2Fc")).kind == "forward"
    assert route(cfg, req(query="q=a+b/c")).kind == "forward"


def test_query_blank_value_kept() -> None:
    cfg = config(rule(query=(QueryMatch(type="RegularExpression", name="flag", value=".*"),)))
    assert route(cfg, req(query="flag")).kind == "forward"
    assert route(cfg, req(query="flag=")).kind == "forward"


def test_query_regex_fullmatch() -> None:
    cfg = config(rule(query=(QueryMatch(type="RegularExpression", name="id", value=r"\d{3}"),)))
    assert route(cfg, req(query="id=123")).kind == "forward"
    assert route(cfg, req(query="id=1234")).status == 404


# --- redirects ----------------------------------------------------------------------------


def redirect_rule(match_path: str = "/", **kw: object) -> Rule:
    return rule(match_path, filters=Filters(redirect=Redirect(**kw)), backends=())  # type: ignore[arg-type]


def location(cfg: RouterConfig, r: RequestView) -> str | None:
    d = route(cfg, r)
    assert d.kind == "redirect", d
    return d.location


def test_redirect_hostname_default_status_302() -> None:
    d = route(config(redirect_rule(hostname="example.org")), req("/x", host="example.com"))
    assert (d.kind, d.status, d.location) == ("redirect", 302, "http://example.org/x")


def test_redirect_status_code() -> None:
    for code in (301, 302, 303, 307, 308):
        d = route(config(redirect_rule(status_code=code)), req("/"))
        assert d.status == code


def test_redirect_keeps_host_without_port_and_listener_port() -> None:
    cfg = config(redirect_rule(hostname="example.org"), port=8080)
    assert location(cfg, req("/a", host="x.com:8080", port=8080)) == "http://example.org:8080/a"
    cfg2 = config(redirect_rule(path=PathModifier(type="ReplaceFullPath", value="/b")), port=8080)
    assert location(cfg2, req("/a", host="x.com:8080", port=8080)) == "http://x.com:8080/b"


def test_redirect_listener_port_80_omitted() -> None:
    assert location(config(redirect_rule()), req("/a", host="x.com:80")) == "http://x.com/a"


def test_redirect_scheme_https_uses_443_and_omits_it() -> None:
    cfg = config(redirect_rule(scheme="https"))
    assert location(cfg, req("/a", host="x.com")) == "https://x.com/a"
    cfg8080 = config(redirect_rule(scheme="https"), port=8080)
    assert location(cfg8080, req("/a", host="x.com:8080", port=8080)) == "https://x.com/a"


def test_redirect_scheme_http_set_uses_port_80_even_on_8080_listener() -> None:
    # Spec: a non-empty redirect scheme selects its well-known port.
    cfg = config(redirect_rule(scheme="http"), port=8080)
    assert location(cfg, req("/a", host="x.com:8080", port=8080)) == "http://x.com/a"


def test_redirect_https_request_to_http() -> None:
    cfg = config(redirect_rule(scheme="http"), port=443, protocol="HTTPS")
    assert location(cfg, req("/a", host="x.com", port=443, scheme="https")) == "http://x.com/a"


def test_redirect_https_listener_port_443_omitted_without_scheme() -> None:
    cfg = config(redirect_rule(hostname="y.com"), port=443, protocol="HTTPS")
    assert location(cfg, req("/a", host="x.com", port=443, scheme="https")) == "https://y.com/a"


def test_redirect_explicit_port() -> None:
    cfg = config(redirect_rule(port=8443, scheme="https"))
    assert location(cfg, req("/a")) == "https://example.com:8443/a"
    cfg2 = config(redirect_rule(port=443, scheme="https"))
    assert location(cfg2, req("/a")) == "https://example.com/a"
    cfg3 = config(redirect_rule(port=80))
    assert location(cfg3, req("/a")) == "http://example.com/a"
    cfg4 = config(redirect_rule(port=443))  # http on 443 keeps the port
    assert location(cfg4, req("/a")) == "http://example.com:443/a"


def test_redirect_replace_full_path_keeps_query() -> None:
    cfg = config(redirect_rule(path=PathModifier(type="ReplaceFullPath", value="/new")))
    assert location(cfg, req("/old/x", query="a=1&b=%20")) == "http://example.com/new?a=1&b=%20"


def test_redirect_replace_prefix_match() -> None:
    cfg = config(redirect_rule("/foo", path=PathModifier(type="ReplacePrefixMatch", value="/xyz")))
    assert location(cfg, req("/foo/bar")) == "http://example.com/xyz/bar"
    assert location(cfg, req("/foo")) == "http://example.com/xyz"
    assert location(cfg, req("/foo/")) == "http://example.com/xyz/"


def test_redirect_replace_prefix_with_slash_foo_bar_to_bar() -> None:
    cfg = config(redirect_rule("/foo", path=PathModifier(type="ReplacePrefixMatch", value="/")))
    assert location(cfg, req("/foo/bar")) == "http://example.com/bar"
    assert location(cfg, req("/foo")) == "http://example.com/"


def test_redirect_path_unchanged_is_normalized() -> None:
    assert location(config(redirect_rule()), req("//a/./b")) == "http://example.com/a/b"


def test_redirect_carries_rule_response_headers() -> None:
    mod = HeaderModifier(set=(Header(name="x-r", value="1"),))
    r = rule(filters=Filters(redirect=Redirect(), response_headers=mod), backends=())
    d = route(config(r), req("/"))
    assert d.kind == "redirect"
    assert d.response_headers == (mod,)


# --- backends: 500 / 503 ------------------------------------------------------------------


def test_no_backends_is_500() -> None:
    d = route(config(rule(backends=())), req("/"))
    assert (d.kind, d.status, d.reason) == ("error", 500, "no backends")
    assert d.rule is not None


def test_all_weights_zero_is_500() -> None:
    d = route(config(rule(backends=(backend(weight=0), backend("b", weight=0)))), req("/"))
    assert (d.kind, d.status) == ("error", 500)


def test_invalid_backend_is_500() -> None:
    bad = backend("ns/missing:80", invalid="BackendNotFound", endpoints=())
    d = route(config(rule(backends=(bad,))), req("/"))
    assert (d.kind, d.status, d.reason, d.backend) == ("error", 500, "invalid backend", bad)


def test_no_ready_endpoints_is_503() -> None:
    empty = backend(endpoints=())
    d = route(config(rule(backends=(empty,))), req("/"))
    assert (d.kind, d.status, d.reason, d.backend) == ("error", 503, "no ready endpoints", empty)


def test_invalid_backend_gets_500_in_proportion_to_weight() -> None:
    good = backend("ns/good:80", weight=3)
    bad = backend("ns/bad:80", weight=1, invalid="BackendNotFound", endpoints=())
    cfg = config(rule(backends=(good, bad)))
    statuses = collections.Counter(route(cfg, req("/"), choice=c).status for c in range(4))
    assert statuses == {0: 3, 500: 1}


# --- weighted choice ----------------------------------------------------------------------


def test_weighted_choice_exactly_matches_weights() -> None:
    backends = (
        backend("a", weight=1),
        backend("zero", weight=0),
        backend("b", weight=3),
        backend("c", weight=6),
    )
    cfg = config(rule(backends=backends))
    counts = collections.Counter(
        d.backend.name for c in range(10) if (d := route(cfg, req("/"), choice=c)).backend
    )
    assert counts == {"a": 1, "b": 3, "c": 6}
    # choice is taken modulo the total weight, walking cumulative weights in order
    names = [route(cfg, req("/"), choice=c).backend.name for c in range(20)]  # type: ignore[union-attr]
    assert names[:10] == ["a"] + ["b"] * 3 + ["c"] * 6
    assert names[10:] == names[:10]


def test_pick_weighted_zero_total_is_none() -> None:
    assert pick_weighted((backend(weight=0),), 7) is None
    assert pick_weighted((), 0) is None


def test_weighted_choice_from_flow_hash_is_roughly_proportional() -> None:
    cfg = config(rule(backends=(backend("a", weight=1), backend("b", weight=3))))
    counts = collections.Counter(
        route(cfg, req("/", client_port=p)).backend.name  # type: ignore[union-attr]
        for p in range(4000)
    )
    assert 800 <= counts["a"] <= 1200
    assert counts["a"] + counts["b"] == 4000


def test_weighted_choice_without_choice_is_deterministic() -> None:
    cfg = config(rule(backends=(backend("a"), backend("b"))))
    r = req("/x", client_port=1234)
    assert route(cfg, r) == route(cfg, r)


# --- Maglev endpoint choice and hash_on ---------------------------------------------------


def test_maglev_stickiness_same_flow_same_endpoint() -> None:
    cfg = config(rule())
    r = req("/x", client_ip="198.51.100.7", client_port=5555)
    first = route(cfg, r).endpoint
    assert first in EPS
    for _ in range(20):
        assert route(cfg, r).endpoint == first
    # also stable when the endpoint tuple is rebuilt (a new but equal config)
    assert route(config(rule()), r).endpoint == first


def test_maglev_spreads_flows_over_endpoints() -> None:
    cfg = config(rule())
    seen = {route(cfg, req("/", client_port=p)).endpoint for p in range(500)}
    assert seen == set(EPS)


def test_single_endpoint_always_chosen() -> None:
    only = (Endpoint(address="10.1.1.1", port=80),)
    d = route(config(rule(backends=(backend(endpoints=only),))), req("/"))
    assert d.endpoint == only[0]


def test_hash_on_flow_key_format() -> None:
    r = req("/a/./b", method="PUT", client_ip="192.0.2.9", client_port=77)
    assert flow_key(r, "/a/b", "flow") == b"PUT /a/b 192.0.2.9 77"


def test_hash_on_client_ip_ignores_port_and_path() -> None:
    cfg = config(rule())
    endpoints = {
        route(
            cfg, req(f"/p{p}", client_ip="203.0.113.5", client_port=p), hash_on="client-ip"
        ).endpoint
        for p in range(200)
    }
    assert len(endpoints) == 1
    assert flow_key(req(client_ip="203.0.113.5"), "/", "client-ip") == b"203.0.113.5"


def test_hash_on_header_uses_header_value() -> None:
    cfg = config(rule())
    endpoints = {
        route(
            cfg, req(client_port=p, headers=(("X-User", "alice"),)), hash_on="header:x-user"
        ).endpoint
        for p in range(200)
    }
    assert len(endpoints) == 1
    r = req(headers=(("x-user", "alice"), ("X-USER", "bob")))
    assert flow_key(r, "/", "header:X-User") == b"alice,bob"


def test_hash_on_header_absent_falls_back_to_flow() -> None:
    r = req("/z", client_ip="192.0.2.1", client_port=9)
    assert flow_key(r, "/z", "header:x-user") == flow_key(r, "/z", "flow")


def test_hash_on_also_drives_weighted_choice() -> None:
    cfg = config(rule(backends=(backend("a"), backend("b"), backend("c"))))
    names = {
        route(cfg, req(client_ip="203.0.113.5", client_port=p), hash_on="client-ip").backend.name  # type: ignore[union-attr]
        for p in range(100)
    }
    assert len(names) == 1


# --- forward: rewrite, headers, mirrors, timeouts -----------------------------------------


def test_forward_defaults() -> None:
    d = route(config(rule()), req("/a", host="Example.com:8080", query="x=1"))
    assert d.kind == "forward" and d.status == 0
    assert d.upstream_path == "/a?x=1"
    assert d.upstream_host == "Example.com:8080"
    assert d.location is None
    assert d.request_headers == () and d.response_headers == () and d.mirrors == ()


def test_forward_empty_query_has_no_question_mark() -> None:
    assert route(config(rule()), req("/a")).upstream_path == "/a"


def test_query_appended_untouched() -> None:
    d = route(config(rule()), req("/a", query="b=%2F&c=d+e&&f"))
    assert d.upstream_path == "/a?b=%2F&c=d+e&&f"


def test_rewrite_hostname() -> None:
    r = rule(filters=Filters(rewrite=Rewrite(hostname="internal.svc")))
    d = route(config(r), req("/a", host="example.com:8080"))
    assert (d.upstream_host, d.upstream_path) == ("internal.svc", "/a")


def test_rewrite_full_path_keeps_query() -> None:
    r = rule(
        "/full",
        filters=Filters(rewrite=Rewrite(path=PathModifier(type="ReplaceFullPath", value="/one"))),
    )
    d = route(config(r), req("/full/x/y", query="q=1"))
    assert d.upstream_path == "/one?q=1"
    assert d.upstream_host == "example.com"


def test_rewrite_replace_prefix_match() -> None:
    r = rule(
        "/prefix/one",
        filters=Filters(
            rewrite=Rewrite(path=PathModifier(type="ReplacePrefixMatch", value="/one"))
        ),
    )
    cfg = config(r)
    assert route(cfg, req("/prefix/one/two")).upstream_path == "/one/two"
    assert route(cfg, req("/prefix/one")).upstream_path == "/one"
    assert route(cfg, req("/prefix/one/")).upstream_path == "/one/"


def test_rewrite_strip_prefix_with_slash() -> None:
    r = rule(
        "/strip-prefix",
        filters=Filters(rewrite=Rewrite(path=PathModifier(type="ReplacePrefixMatch", value="/"))),
    )
    cfg = config(r)
    assert route(cfg, req("/strip-prefix/three")).upstream_path == "/three"
    assert route(cfg, req("/strip-prefix")).upstream_path == "/"


def test_header_modifiers_rule_then_backend() -> None:
    rule_req = HeaderModifier(set=(Header(name="x-rule", value="1"),))
    rule_resp = HeaderModifier(add=(Header(name="x-rule-resp", value="1"),))
    be_req = HeaderModifier(remove=("x-secret",))
    be_resp = HeaderModifier(set=(Header(name="x-be", value="2"),))
    r = rule(
        filters=Filters(request_headers=rule_req, response_headers=rule_resp),
        backends=(backend(request_headers=be_req, response_headers=be_resp),),
    )
    d = route(config(r), req("/"))
    assert d.request_headers == (rule_req, be_req)
    assert d.response_headers == (rule_resp, be_resp)


def test_mirrors_and_timeouts_carried() -> None:
    mirror = Mirror(backend=backend("ns/mirror:80"), numerator=50)
    timeouts = Timeouts(request_ms=1000, backend_request_ms=500)
    r = rule(filters=Filters(mirrors=(mirror,)), timeouts=timeouts)
    d = route(config(r), req("/"))
    assert d.mirrors == (mirror,)
    assert d.timeouts == timeouts


def test_decision_is_frozen() -> None:
    d = route(config(rule()), req("/"))
    with pytest.raises(AttributeError):
        d.status = 1  # type: ignore[misc]
    assert isinstance(d, Decision)


def test_prepare_builds_every_maglev_table_before_traffic(monkeypatch: pytest.MonkeyPatch) -> None:
    """After prepare(config), routing a request never builds a Maglev table."""
    from rauta.model import maglev, routing

    sets = [tuple(Endpoint(address=f"10.9.{i}.{j}", port=80) for j in range(1, 4))
            for i in range(1, 40)]
    cfg_ = config(*(rule(f"/s{i}", backends=(backend(endpoints=eps),), index=i)
                    for i, eps in enumerate(sets)))
    assert routing.prepare(cfg_) == len(sets)
    calls = []
    real_build = maglev.build
    monkeypatch.setattr(maglev, "build", lambda *a, **k: calls.append(1) or real_build(*a, **k))
    maglev.cached.cache_clear()
    for i in range(len(sets)):
        d = route(cfg_, req(f"/s{i}/x"))
        assert d.kind == "forward" and d.endpoint in sets[i]
    assert calls == []


def test_prepare_again_with_reused_and_new_rules_indexes_exactly_the_new_config() -> None:
    """A config that reuses Rule objects of the previous one (incremental translation)
    gets the same index as a config built from scratch: reused rules' sets stay, a
    replaced rule's old set goes, its new set comes."""
    from rauta.model import routing

    def eps(i: int) -> tuple[Endpoint, ...]:
        return tuple(Endpoint(address=f"10.8.{i}.{j}", port=80) for j in range(1, 3))

    rules = [rule(f"/s{i}", backends=(backend(endpoints=eps(i)),), index=i) for i in range(5)]
    assert routing.prepare(config(*rules)) == 5
    replaced = rule("/s2", backends=(backend(endpoints=eps(9)),), index=2)
    again = config(*rules[:2], replaced, *rules[3:])
    assert routing.prepare(again) == 5
    indexed = {entry[0] for entry in routing._ENDPOINT_INDEX.values()}
    # The new config's sets, and the replaced rule's old one: the config prepared before
    # keeps serving until the swap.
    assert indexed == {eps(i) for i in (0, 1, 9, 3, 4, 2)}
    assert routing.prepare(config(*rules[:1])) == 1
    indexed = {entry[0] for entry in routing._ENDPOINT_INDEX.values()}
    assert indexed == {eps(i) for i in (0, 1, 9, 3, 4)}  # eps(2): two generations back


def test_the_serving_config_builds_no_table_while_the_next_one_is_prepared(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare(next) runs before the swap, while the current config still serves: its
    requests must still find their Maglev tables (not rebuild them on the event loop)."""
    from rauta.model import maglev, routing

    old_eps = tuple(Endpoint(address=f"10.6.0.{j}", port=80) for j in range(1, 4))
    new_eps = tuple(Endpoint(address=f"10.6.1.{j}", port=80) for j in range(1, 4))
    serving = config(rule("/s", backends=(backend(endpoints=old_eps),)))
    following = config(rule("/s", backends=(backend(endpoints=new_eps),)))
    routing.prepare(serving)
    routing.prepare(following)
    calls = []
    real_build = maglev.build
    monkeypatch.setattr(maglev, "build", lambda *a, **k: calls.append(1) or real_build(*a, **k))
    maglev.cached.cache_clear()
    assert route(serving, req("/s/x")).endpoint in old_eps
    assert route(following, req("/s/x")).endpoint in new_eps
    assert calls == []


def test_endpoint_keys_are_every_backend_and_mirror_address() -> None:
    from rauta.model import routing

    mirror = Mirror(backend=backend("ns/m:80", endpoints=(Endpoint(address="10.7.0.9",
                                                                     port=81),)))
    r1 = rule("/a", backends=(backend(endpoints=(Endpoint(address="10.7.0.1", port=80),
                                                 Endpoint(address="10.7.0.2", port=80))),),
              filters=Filters(mirrors=(mirror,)))
    cfg_ = config(r1, rule("/b", backends=(backend(endpoints=()),), index=1))
    want = {("10.7.0.1", 80), ("10.7.0.2", 80), ("10.7.0.9", 81)}
    assert routing.endpoint_keys(cfg_) == want  # not prepared: computed
    routing.prepare(cfg_)
    assert routing.endpoint_keys(cfg_) == want  # prepared: the cached set
    assert routing.endpoint_keys(config()) == frozenset()
