"""ruleindex: a listener's candidate rules for a Host are exactly the rules that can match
it, in the listener's order, whatever that order; routing with the index picks the same
rule as a scan of every rule."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rauta.model import ruleindex
from rauta.model.config import ListenerRoutes
from rauta.model.hostnames import matches
from rauta.model.routing import _Lazy, _rule_matches, route

from .test_routing import config, req, rule

HOSTS = ("a.example.com", "b.example.com", "A.Example.com", "*.example.com", "", "c.test")
REQUEST_HOSTS = ("a.example.com", "b.example.com", "x.example.com", "c.test", "other.net")

rules = st.lists(st.tuples(st.sampled_from(HOSTS), st.sampled_from(("/", "/a", "/a/b"))),
                 min_size=ruleindex.MIN_RULES, max_size=3 * ruleindex.MIN_RULES).map(
    lambda drawn: tuple(rule(path, hostname=host, index=i, route_name=f"ns/r{i}")
                        for i, (host, path) in enumerate(drawn)))


@given(rules, st.sampled_from(REQUEST_HOSTS))
def test_candidates_are_the_rules_that_can_match_in_order(drawn: tuple, host: str) -> None:
    listener = ListenerRoutes(gateway="g/g", listener="l", hostname="", rules=drawn)
    got = ruleindex.candidates(listener, host)
    want = tuple(r for r in drawn if matches(r.hostname, host))
    assert tuple(r for r in got if matches(r.hostname, host)) == want
    assert all(r in drawn for r in got)
    positions = [drawn.index(r) for r in got]
    assert positions == sorted(positions)
    assert ruleindex.candidates(listener, host) == got  # cached or not: the same


@given(rules, st.sampled_from(REQUEST_HOSTS), st.sampled_from(("/", "/a/b/c", "/z")))
def test_route_with_the_index_equals_a_scan_of_every_rule(drawn: tuple, host: str,
                                                          path: str) -> None:
    cfg = config(*drawn)
    ruleindex.prepare(cfg)
    r = req(path, host=host)
    lazy = _Lazy(r)
    scanned = next((x for x in drawn if _rule_matches(x, host, path, r, lazy)), None)
    assert route(cfg, r).rule == scanned


def test_prepare_reuses_the_index_of_an_identical_listener_only() -> None:
    many = tuple(rule(hostname=f"h{i}.test", index=i) for i in range(ruleindex.MIN_RULES))
    cfg = config(*many)
    assert ruleindex.prepare(cfg) == 1
    index = ruleindex._INDEX[id(cfg.ports[0].listeners[0])]
    assert ruleindex.prepare(cfg) == 1
    assert ruleindex._INDEX[id(cfg.ports[0].listeners[0])] is index
    assert tuple(ruleindex.candidates(cfg.ports[0].listeners[0], "h3.test")) == (many[3],)
    assert tuple(ruleindex.candidates(cfg.ports[0].listeners[0], "nope.test")) == ()
    small = config(*many[:3])
    assert ruleindex.prepare(small) == 0
    assert tuple(ruleindex.candidates(small.ports[0].listeners[0], "h1.test")) == many[:3]


def test_the_previous_config_stays_indexed_until_the_next_prepare() -> None:
    many = tuple(rule(hostname=f"h{i}.test", index=i) for i in range(ruleindex.MIN_RULES))
    old, new = config(*many), config(*many[1:], rule(hostname="z.test"))
    ruleindex.prepare(old)
    index = ruleindex._INDEX[id(old.ports[0].listeners[0])]
    ruleindex.prepare(new)  # old still serves until new is installed: still indexed
    assert ruleindex._PREVIOUS[id(old.ports[0].listeners[0])] is index
    assert tuple(ruleindex.candidates(old.ports[0].listeners[0], "h0.test")) == many[:1]


EXACT = tuple(f"h{i}.test" for i in range(12))


@given(st.lists(st.tuples(st.sampled_from(EXACT), st.sampled_from(("/", "/a"))),
                min_size=ruleindex.MIN_RULES, max_size=2 * ruleindex.MIN_RULES),
       st.data())
def test_a_derived_index_equals_a_fresh_one(drawn: list, data: st.DataObject) -> None:
    old_rules = [rule(path, hostname=host, index=i, route_name=f"ns/r{i}")
                 for i, (host, path) in enumerate(drawn)]
    new_rules = list(old_rules)
    for _ in range(data.draw(st.integers(0, 6), label="edits")):
        if new_rules and data.draw(st.booleans(), label="remove"):
            new_rules.pop(data.draw(st.integers(0, len(new_rules) - 1), label="at"))
        else:
            host = data.draw(st.sampled_from((*EXACT, "*.test", "")), label="host")
            at = data.draw(st.integers(0, len(new_rules)), label="at")
            new_rules.insert(at, rule("/b", hostname=host, index=1000 + at))
    if data.draw(st.booleans(), label="swap") and len(new_rules) > 2:
        new_rules[0], new_rules[-1] = new_rules[-1], new_rules[0]
    old = ListenerRoutes(gateway="g/g", listener="l", hostname="", rules=tuple(old_rules))
    new = ListenerRoutes(gateway="g/g", listener="l", hostname="", rules=tuple(new_rules))
    index = ruleindex.derived(ruleindex.HostIndex(old), new)
    if index is None:
        return  # declined: the caller builds afresh
    fresh = ruleindex.HostIndex(new)
    for host in (*EXACT, "other.test"):
        assert list(index.candidates(host)) == list(fresh.candidates(host))


def test_exact_rules_interleave_with_wildcard_ones_in_listener_order() -> None:
    hosts = ["a.test", "*.test", "b.test", "", "a.test"] * (ruleindex.MIN_RULES // 5 + 1)
    rules = tuple(rule(hostname=h, index=i) for i, h in enumerate(hosts))
    listener = ListenerRoutes(gateway="g/g", listener="l", hostname="", rules=rules)
    got = ruleindex.candidates(listener, "a.test")
    assert tuple(got) == tuple(r for r in rules if r.hostname in ("a.test", "*.test", ""))
    assert ruleindex.candidates(listener, "a.test") is got  # merged once, then kept
    assert tuple(ruleindex.candidates(listener, "zzz.net")) == tuple(
        r for r in rules if r.hostname in ("*.test", ""))
