"""rauta.model.rule_index against a linear scan: same first matching rule, always.

The oracle here is written out from the Gateway API's definitions (hostname, Exact,
element-wise PathPrefix, full-match RegularExpression), not taken from the router.
"""

from __future__ import annotations

import re

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
from rauta.model.routing import RequestView, route
from rauta.model.rule_index import RuleIndex, index_for, port_index, prepare

HOSTS = ["", "a.example.com", "b.example.com", "*.example.com", "*.a.example.com",
         "example.com", "*.com", "other.org", "A.Example.com"]
REQ_HOSTS = ["a.example.com", "b.example.com", "x.a.example.com", "example.com", "com",
             "other.org", "z.other.org", "a.example.com.evil"]
PATHS = ["/", "/a", "/a/", "/a/b", "/ab", "/a/b/c", "/b", "/a/bc"]


def _host_ok(pattern: str, host: str) -> bool:
    pattern = pattern.lower()
    if not pattern:
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def _path_ok(match: PathMatch, path: str) -> bool:
    if match.type == "Exact":
        return path == match.value
    if match.type == "PathPrefix":
        base = match.value.rstrip("/")
        return path == base or path.startswith(base + "/") or base == ""
    return re.fullmatch(match.value, path) is not None


path_matches = st.one_of(
    st.builds(PathMatch, type=st.just("Exact"), value=st.sampled_from(PATHS)),
    st.builds(PathMatch, type=st.just("PathPrefix"), value=st.sampled_from(PATHS)),
    st.builds(PathMatch, type=st.just("RegularExpression"),
              value=st.sampled_from(["/a.*", "/[ab]", ".*c", "/"])),
)
rules = st.lists(st.tuples(st.sampled_from(HOSTS), path_matches,
                           st.sampled_from([None, "GET", "POST"])), max_size=40)


def _rules(spec: list[tuple[str, PathMatch, str | None]]) -> tuple[Rule, ...]:
    return tuple(Rule(route=f"default/r{i}", rule_index=0, match_index=i, hostname=h,
                      match=Match(path=pm, method=m), backends=(Backend(name="s", weight=1),))
                 for i, (h, pm, m) in enumerate(spec))


@settings(max_examples=300, deadline=None)
@given(spec=rules, host=st.sampled_from(REQ_HOSTS), path=st.sampled_from(PATHS))
def test_candidates_are_a_sorted_superset_of_the_matching_rules(spec, host, path) -> None:
    rs = _rules(spec)
    got = RuleIndex(rs).candidates(host, path)
    assert got == sorted(set(got))
    wanted = [i for i, r in enumerate(rs)
              if _host_ok(r.hostname, host) and _path_ok(r.match.path, path)]
    assert set(wanted) <= set(got), (wanted, got)


@settings(max_examples=300, deadline=None)
@given(spec=rules, host=st.sampled_from(REQ_HOSTS), path=st.sampled_from(PATHS),
       method=st.sampled_from(["GET", "POST"]))
def test_route_finds_the_linear_scans_first_rule(spec, host, path, method) -> None:
    rs = _rules(spec)
    lis = ListenerRoutes(gateway="default/gw", listener="http", hostname="", rules=rs)
    config = RouterConfig(ports=(PortConfig(port=80, protocol="HTTP", listeners=(lis,)),))
    req = RequestView(method=method, host=host, path=path, query="", headers=(), port=80,
                      scheme="http", client_ip="10.0.0.1", client_port=1)
    decision = route(config, req, choice=0)
    first = next((r for r in rs if _host_ok(r.hostname, host) and _path_ok(r.match.path, path)
                  and (r.match.method is None or r.match.method == method)), None)
    assert decision.rule == first


def test_many_routes_on_one_listener_give_few_candidates() -> None:
    rs = _rules([(f"h{i}.example.com", PathMatch(type="PathPrefix", value=f"/p{i % 50}"), None)
                 for i in range(5000)])
    index = RuleIndex(rs)
    got = index.candidates("h4321.example.com", "/p21/x")
    assert got == [4321]
    assert index.candidates("nobody.example.com", "/p1") == []


def test_indexes_are_cached_by_identity_and_prepare_keeps_only_the_config() -> None:
    rs = _rules([("", PathMatch(type="PathPrefix", value="/"), None)])
    lis = ListenerRoutes(gateway="default/gw", listener="http", hostname="", rules=rs)
    config = RouterConfig(ports=(PortConfig(port=80, protocol="HTTP", listeners=(lis,)),
                                 PortConfig(address="127.0.1.1", port=80, protocol="HTTP")))
    assert prepare(config) == 1
    assert index_for(lis) is index_for(lis)
    equal_copy = lis.model_copy()
    assert index_for(equal_copy) is not index_for(lis)  # identity, not equality
    ports = port_index(config)
    assert ports[("", 80)] is config.ports[0]
    assert ports[("127.0.1.1", 80)] is config.ports[1]
    assert ("", 443) not in ports


def test_prepare_keeps_the_serving_generation_and_no_older(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """prepare(next) runs while the current config still serves: the current config's
    listener indexes and port table stay cached until one more prepare, so its requests
    never build an index on the event loop; two generations back is dropped."""
    from rauta.model import rule_index

    def cfg(n: int) -> tuple[RouterConfig, ListenerRoutes]:
        rs = _rules([("", PathMatch(type="PathPrefix", value=f"/g{n}"), None)])
        lis = ListenerRoutes(gateway="default/gw", listener="http", hostname="", rules=rs)
        return RouterConfig(ports=(PortConfig(port=80, protocol="HTTP", listeners=(lis,)),)), lis

    (c1, l1), (c2, l2), (c3, _l3) = cfg(1), cfg(2), cfg(3)
    prepare(c1)
    prepare(c2)
    built = []

    class Counting(RuleIndex):
        def __init__(self, rules):  # type: ignore[no-untyped-def]
            built.append(1)
            super().__init__(rules)

    monkeypatch.setattr(rule_index, "RuleIndex", Counting)
    index_for(l1)
    index_for(l2)
    assert port_index(c1)[("", 80)] is c1.ports[0]
    assert built == []  # both generations cached
    prepare(c3)
    assert built == [1]  # c3's own listener, nothing else
    index_for(l2)
    assert built == [1]
    index_for(l1)
    assert built == [1, 1]  # two generations back: rebuilt on demand
