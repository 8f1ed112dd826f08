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
        # a listener name per generation: nothing to patch, every index is built whole
        lis = ListenerRoutes(gateway="default/gw", listener=f"http{n}", hostname="", rules=rs)
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


ALL_QUERIES = [(h, p) for h in REQ_HOSTS for p in PATHS]
edits = st.lists(st.tuples(st.integers(0, 39), st.sampled_from(HOSTS), path_matches,
                           st.sampled_from([None, "GET", "POST"])), max_size=8)


@settings(max_examples=300, deadline=None)
@given(spec=rules, changes=edits)
def test_a_patched_index_equals_a_full_build_and_leaves_the_old_one_alone(spec, changes) -> None:
    old = _rules(spec)
    new = list(old)
    for pos, host, pm, method in changes:
        if pos < len(new):
            new[pos] = Rule(route=f"default/e{pos}", rule_index=0, match_index=pos,
                            hostname=host, match=Match(path=pm, method=method),
                            backends=(Backend(name="s", weight=1),))
    index = RuleIndex(old)
    before = [index.candidates(h, p) for h, p in ALL_QUERIES]
    patched = index.patched(old, tuple(new))
    assert patched is not None
    fresh = RuleIndex(tuple(new))
    assert [patched.candidates(h, p) for h, p in ALL_QUERIES] == \
        [fresh.candidates(h, p) for h, p in ALL_QUERIES]
    assert [index.candidates(h, p) for h, p in ALL_QUERIES] == before
    # A name no rule uses any more leaves no bucket behind.
    assert set(patched._exact) == set(fresh._exact)  # noqa: SLF001
    assert set(patched._suffix) == set(fresh._suffix)  # noqa: SLF001


def test_patching_gives_up_on_a_length_change_or_too_many_changes() -> None:
    from rauta.model.rule_index import PATCH_MAX

    spec = [(f"h{i}.example.com", PathMatch(type="PathPrefix", value="/"), None)
            for i in range(PATCH_MAX + 1)]
    old, other = _rules(spec), _rules([(h, pm, "GET") for h, pm, _ in spec])
    assert RuleIndex(old).patched(old, old[:-1]) is None
    assert RuleIndex(old).patched(old, other) is None  # every position changed
    assert RuleIndex(old).patched(old, (*other[:1], *old[1:])) is not None


def test_prepare_patches_a_listener_whose_rules_changed_in_place(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A changed route replaces a few Rule objects of a big listener: prepare re-files
    those positions in a copy of the serving index instead of building one whole
    (about 6 ms at 3,000 rules, holding the GIL the serving loop needs)."""
    from rauta.model import rule_index

    spec = [(f"h{i}.example.com", PathMatch(type="PathPrefix", value="/"), None)
            for i in range(300)]
    rs = _rules(spec)

    def cfg(rules: tuple[Rule, ...]) -> tuple[RouterConfig, ListenerRoutes]:
        lis = ListenerRoutes(gateway="default/gw", listener="http", hostname="", rules=rules)
        return RouterConfig(ports=(PortConfig(port=80, protocol="HTTP", listeners=(lis,)),)), lis

    c1, l1 = cfg(rs)
    prepare(c1)
    changed = list(rs)
    changed[7] = _rules([("moved.example.com", PathMatch(type="Exact", value="/x"), None)])[0]
    c2, l2 = cfg(tuple(changed))
    built = []

    class Counting(RuleIndex):
        def __init__(self, rules):  # type: ignore[no-untyped-def]
            built.append(len(rules))
            super().__init__(rules)

    monkeypatch.setattr(rule_index, "RuleIndex", Counting)
    prepare(c2)
    assert built == []
    assert index_for(l2).candidates("moved.example.com", "/x") == [7]
    assert index_for(l2).candidates("h7.example.com", "/") == []
    assert index_for(l1).candidates("h7.example.com", "/") == [7]  # still serving
    assert route(c2, RequestView(method="GET", host="moved.example.com", path="/x",
                                 query="", headers=(), port=80)).rule is changed[7]
