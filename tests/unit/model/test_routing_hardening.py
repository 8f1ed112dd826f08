"""Hardening of rauta.model.routing: RegularExpression matches run on RE2, in linear time
(issue 21); rules marked invalid by the translator answer 500 (issue 20); fragments and
path parameters are a 400 (issue 13).

No wall-clock assertions: linearity is checked through the engine (an RE2 object, whose
compiled program size is bounded by the pattern, not the input) and by inputs long
enough that a backtracking engine could not return within any test timeout.
"""

from __future__ import annotations

import re

import pytest

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
from rauta.model.routing import REGEX_MAX_MEM, RequestView, compile_regex, regex_error, route

BACKEND = Backend(name="default/svc:80", weight=1,
                  endpoints=(Endpoint(address="10.0.0.1", port=8080),))


def rule(path: str, ptype: str = "RegularExpression", *, name: str = "default/r",
         headers: tuple[HeaderMatch, ...] = (), query: tuple[QueryMatch, ...] = (),
         invalid: str | None = None) -> Rule:
    return Rule(route=name, rule_index=0, match_index=0, hostname="",
                match=Match(path=PathMatch(type=ptype, value=path),  # type: ignore[arg-type]
                            headers=headers, query=query),
                backends=() if invalid else (BACKEND,), invalid=invalid)


def config(*rules: Rule) -> RouterConfig:
    return RouterConfig(ports=(PortConfig(port=80, protocol="HTTP", listeners=(
        ListenerRoutes(gateway="default/gw", listener="http", hostname="", rules=rules),)),))


def req(path: str, query: str = "", headers: tuple[tuple[str, str], ...] = ()) -> RequestView:
    return RequestView(method="GET", host="example.com", path=path, query=query,
                       headers=headers, port=80)


# --- the engine ---------------------------------------------------------------------------


def test_compiled_matcher_is_re2_not_python_re() -> None:
    compiled = compile_regex(r"/(a+)+")
    assert compiled is not None
    assert not isinstance(compiled, re.Pattern)
    assert type(compiled).__module__.split(".")[0] == "re2"


def test_nested_quantifier_program_is_small_and_independent_of_the_input() -> None:
    """RE2 compiles ``/(a+)+`` to a fixed automaton of a few instructions; matching walks
    the input once, so cost is bounded by len(input) x programsize."""
    compiled = compile_regex(r"/(a+)+")
    assert compiled is not None
    assert compiled.programsize <= 16


@pytest.mark.parametrize("pattern", [r"/(a+)+", r"/(a|aa)+", r"/(a*)*b", r"/(.*a){20}"])
def test_pathological_patterns_return_on_long_inputs(pattern: str) -> None:
    """With Python's ``re`` each of these takes exponential time on the input below (25
    bytes already block for a second); RE2 returns at once for 100 000 bytes."""
    cfg = config(rule(pattern), rule("/", "PathPrefix", name="default/fallback"))
    d = route(cfg, req("/" + "a" * 100_000 + "!"))
    assert d.kind == "forward" and d.rule is not None and d.rule.route == "default/fallback"


def test_pathological_header_and_query_patterns_return_on_long_values() -> None:
    evil = "a" * 100_000 + "!"
    cfg = config(rule("/", "PathPrefix",
                      headers=(HeaderMatch(type="RegularExpression", name="x", value="(a+)+"),)),
                 rule("/", "PathPrefix", name="default/q",
                      query=(QueryMatch(type="RegularExpression", name="q", value="(a+)+"),)))
    assert route(cfg, req("/", query=f"q={evil}", headers=(("x", evil),))).status == 404


def test_full_match_semantics_are_kept() -> None:
    cfg = config(rule("/a|/ab"))
    assert route(cfg, req("/ab")).kind == "forward"  # an alternative covering the whole path
    assert route(cfg, req("/abc")).status == 404  # no prefix match
    assert route(cfg, req("/x/a")).status == 404  # no search
    cfg = config(rule("/", "PathPrefix",
                      headers=(HeaderMatch(type="RegularExpression", name="x", value="[0-9]+"),)))
    assert route(cfg, req("/", headers=(("x", "123"),))).kind == "forward"
    assert route(cfg, req("/", headers=(("x", "123a"),))).status == 404


@pytest.mark.parametrize("pattern", [r"/(a)\1", r"/(?=a)a", r"/(?!b)a", r"/(?<=a)b",
                                     r"/(?<!a)b", r"/a{1001}", "/(unclosed"])
def test_patterns_re2_rejects_are_errors_and_never_match(pattern: str) -> None:
    assert regex_error(pattern) is not None
    assert compile_regex(pattern) is None
    cfg = config(rule(pattern), rule("/", "PathPrefix", name="default/fallback"))
    assert route(cfg, req("/a")).rule.route == "default/fallback"  # type: ignore[union-attr]


def test_pattern_over_the_memory_budget_is_rejected() -> None:
    assert REGEX_MAX_MEM <= 1 << 20
    assert regex_error(r"\pL{1000}") is not None  # a 1000-fold Unicode class: too large
    assert regex_error(r"[a-z]{1000}") is None


def test_value_that_is_not_utf8_text_never_matches_and_does_not_crash() -> None:
    cfg = config(rule("/", "PathPrefix",
                      headers=(HeaderMatch(type="RegularExpression", name="x", value=".*"),)))
    assert route(cfg, req("/", headers=(("x", "\udcff"),))).status == 404


# --- rules the translator marked invalid (issue 20) ---------------------------------------


def test_invalid_rule_answers_500_and_never_falls_through() -> None:
    cfg = config(rule("/admin", "PathPrefix", name="app/admin",
                      invalid="rule 0: filter type 'ExtensionRef' is not supported"),
                 rule("/", "PathPrefix", name="other/all"))
    d = route(cfg, req("/admin/x"))
    assert (d.kind, d.status, d.reason) == ("error", 500, "invalid rule")
    assert d.rule is not None and d.rule.route == "app/admin" and d.backend is None
    assert route(cfg, req("/public")).rule.route == "other/all"  # type: ignore[union-attr]


# --- fragments and path parameters (issue 13) ---------------------------------------------


@pytest.mark.parametrize("path", ["/admin#x", "/#/../admin", "/admin;jsessionid=x",
                                  "/public/..;/admin"])
def test_fragment_or_path_parameters_answer_400_before_any_rule(path: str) -> None:
    cfg = config(rule("/admin", "PathPrefix", name="app/admin"),
                 rule("/", "PathPrefix", name="other/all"))
    d = route(cfg, req(path))
    assert (d.kind, d.status, d.reason) == ("error", 400, "bad request path")
    assert d.rule is None
