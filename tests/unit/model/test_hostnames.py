"""Hostname helpers (rauta.model.hostnames), with the spec's examples."""

from __future__ import annotations

import pytest

from rauta.model.hostnames import intersect, is_wildcard, matches, specificity, strip_port


@pytest.mark.parametrize(("host", "expected"), [
    ("example.com", "example.com"),
    ("Example.COM:8080", "example.com"),
    ("example.com:80", "example.com"),
    ("example.com.", "example.com"),
    ("example.com.:443", "example.com"),
    ("  foo.example.com  ", "foo.example.com"),
    ("[::1]:8080", "[::1]"),
    ("[::1]", "[::1]"),
    ("[2001:DB8::1]:443", "[2001:db8::1]"),
    ("10.0.0.1:80", "10.0.0.1"),
])
def test_strip_port_drops_port_lowercases_and_keeps_ipv6_literals(host: str, expected: str) -> None:
    assert strip_port(host) == expected


def test_wildcard_star_example_com_matches_a_b_example_com_but_not_example_com() -> None:
    assert matches("*.example.com", "a.example.com")
    assert matches("*.example.com", "a.b.example.com")
    assert not matches("*.example.com", "example.com")
    assert not matches("*.example.com", ".example.com")
    assert not matches("*.example.com", "aexample.com")


def test_exact_pattern_matches_only_itself_case_insensitively() -> None:
    assert matches("foo.example.com", "foo.example.com")
    assert matches("Foo.Example.com", "foo.example.com")
    assert not matches("foo.example.com", "bar.example.com")
    assert not matches("foo.example.com", "a.foo.example.com")


def test_empty_or_none_pattern_matches_every_host() -> None:
    assert matches("", "anything.example")
    assert matches(None, "x")


@pytest.mark.parametrize(("listener", "route", "expected"), [
    # The spec's examples (Listener.hostname / HTTPRoute.hostnames docs).
    ("*.example.com", "foo.example.com", "foo.example.com"),
    ("foo.example.com", "*.example.com", "foo.example.com"),
    ("*.example.com", "*.foo.example.com", "*.foo.example.com"),
    ("*.foo.example.com", "*.example.com", "*.foo.example.com"),
    ("*.example.com", "*.example.com", "*.example.com"),
    ("foo.example.com", "foo.example.com", "foo.example.com"),
    ("*.example.com", "a.b.example.com", "a.b.example.com"),
    # Disjoint names.
    ("*.example.com", "example.com", None),
    ("example.com", "*.example.com", None),
    ("foo.example.com", "bar.example.com", None),
    ("*.example.com", "*.example.net", None),
    ("*.example.com", "foo.example.net", None),
    # No listener hostname: the route's own name.
    (None, "Foo.Example.com", "foo.example.com"),
    ("", "*.example.com", "*.example.com"),
])
def test_intersect_all_wildcard_combinations(listener: str | None, route: str,
                                             expected: str | None) -> None:
    assert intersect(listener, route) == expected


def test_listener_wildcard_times_route_foo_gives_foo() -> None:
    assert intersect("*.example.com", "foo.example.com") == "foo.example.com"


def test_is_wildcard_only_for_leading_star_dot() -> None:
    assert is_wildcard("*.example.com")
    assert not is_wildcard("example.com")
    assert not is_wildcard("")


def test_specificity_orders_exact_then_longer_wildcard_then_catch_all() -> None:
    names = ["", "*.example.com", "a.example.com", "*.foo.example.com", "foo.example.com"]
    ordered = sorted(names, key=lambda h: tuple(-x for x in specificity(h)))
    assert ordered == ["foo.example.com", "a.example.com", "*.foo.example.com",
                       "*.example.com", ""]


def test_specificity_counts_non_wildcard_characters_first() -> None:
    # A short exact name beats a long wildcard (spec: non-wildcard characters first).
    assert specificity("a.io") > specificity("*.very.long.example.com")
    assert specificity("*.example.com") == (0, len("*.example.com"))
    assert specificity("") == (0, 0)
