"""The (Host, path) memo of ``routing.route``: a memoised answer is the answer.

``route`` keeps, per PortConfig, the outcome of listener and rule selection for a raw
(Host, path) when nothing else (method, headers, query) took part in it. These tests run
request sequences against one config (so earlier requests fill the memo) and compare
every Decision with the one a fresh, equal config gives (an empty memo).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rauta.model import routing
from rauta.model.config import (
    Backend,
    Endpoint,
    HeaderMatch,
    ListenerRoutes,
    Match,
    PathMatch,
    PortConfig,
    QueryMatch,
    RouterConfig,
    Rule,
)
from rauta.model.routing import RequestView, route

HOSTS = ["", "a.example.com", "*.example.com", "b.example.com"]
REQ_HOSTS = ["a.example.com", "A.example.com:80", "b.example.com", "x.example.com", "other"]
PATHS = ["/", "/a", "/a/", "/a/b", "/b", "/a/../b", "/%61", "/a;x", "//a"]
EPS = tuple(Endpoint(address="10.0.0.1", port=p) for p in (80, 81, 82))

matches = st.builds(
    Match,
    path=st.builds(PathMatch, type=st.sampled_from(["Exact", "PathPrefix"]),
                   value=st.sampled_from(["/", "/a", "/a/b", "/b"])),
    method=st.sampled_from([None, None, "GET", "POST"]),
    headers=st.sampled_from([(), (), (HeaderMatch(type="Exact", name="x", value="1"),)]),
    query=st.sampled_from([(), (), (QueryMatch(type="Exact", name="q", value="1"),)]),
)
rules = st.lists(st.tuples(st.sampled_from(HOSTS), matches), max_size=12)
requests = st.lists(st.tuples(st.sampled_from(REQ_HOSTS), st.sampled_from(PATHS),
                              st.sampled_from(["GET", "POST"]),
                              st.sampled_from([(), (("X", "1"),), (("x", "2"),)]),
                              st.sampled_from(["", "q=1", "q=2"])), min_size=1, max_size=30)
listener_hosts = st.sampled_from([("",), ("b.example.com", ""), ("*.example.com",)])


def config_of(spec: list[tuple[str, Match]], names: tuple[str, ...]) -> RouterConfig:
    rs = tuple(Rule(route=f"default/r{i}", rule_index=0, match_index=i, hostname=h, match=m,
                    backends=(Backend(name="s", weight=1, endpoints=EPS),))
               for i, (h, m) in enumerate(spec))
    listeners = tuple(ListenerRoutes(gateway="default/gw", listener=f"l{j}", hostname=name,
                                     rules=rs) for j, name in enumerate(names))
    return RouterConfig(ports=(PortConfig(port=80, protocol="HTTP", listeners=listeners),))


@settings(max_examples=400, deadline=None)
@given(spec=rules, names=listener_hosts, reqs=requests)
def test_memoised_decisions_equal_fresh_ones(spec, names, reqs) -> None:  # type: ignore[no-untyped-def]
    config = config_of(spec, names)
    for host, path, method, headers, query in reqs:
        req = RequestView(method=method, host=host, path=path, query=query, headers=headers,
                          port=80, client_ip="192.0.2.1", client_port=4242)
        fresh = config_of(spec, names)  # equal, not identical: an empty memo
        assert route(config, req, choice=7) == route(fresh, req, choice=7)


def test_the_memo_is_used_bounded_and_skips_method_dependent_outcomes() -> None:
    plain = Match(path=PathMatch(type="PathPrefix", value="/"))
    by_method = Match(path=PathMatch(type="PathPrefix", value="/m"), method="POST")
    config = config_of([("", by_method), ("", plain)], ("",))
    port = config.ports[0]

    def req(path: str, method: str = "GET") -> RequestView:
        return RequestView(method=method, host="h", path=path, query="", headers=(), port=80)

    route(config, req("/x"))
    memo = routing._memo_for(port)  # noqa: SLF001
    assert set(memo) == {("h", "/x")}
    assert route(config, req("/m", "POST")).rule.match is by_method  # type: ignore[union-attr]
    assert ("h", "/m") not in memo  # a POST-only rule was tested: method-dependent
    assert route(config, req("/m")).rule.match is plain  # type: ignore[union-attr]
    for i in range(routing.MEMO_MAX + 10):
        route(config, req(f"/p{i}"))
    assert len(memo) <= routing.MEMO_MAX


def test_prepare_keeps_the_memos_of_two_generations_only() -> None:
    plain = Match(path=PathMatch(type="PathPrefix", value="/"))
    c1, c2, c3 = (config_of([("", plain)], ("",)) for _ in range(3))
    req = RequestView(method="GET", host="h", path="/", query="", headers=(), port=80)
    for c in (c1, c2):
        routing.prepare(c)
        route(c, req)
    routing.prepare(c3)  # c2 still serves until the swap: its memo stays, c1's goes
    ids = set(routing._MEMO)  # noqa: SLF001
    assert id(c2.ports[0]) in ids and id(c1.ports[0]) not in ids
