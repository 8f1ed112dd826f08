"""Pure header handling (rauta.proxy.headers): no sockets, no event loop."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rauta.model.config import Header, HeaderModifier
from rauta.proxy import headers as hdr
from rauta.proxy.metrics import code_class

pytestmark = pytest.mark.timeout(10)


def test_hop_by_hop_and_connection_listed_names_removed() -> None:
    headers = [
        ("Host", "a"), ("Connection", "keep-alive, X-Private , Upgrade"), ("X-Private", "1"),
        ("keep-alive", "timeout=5"), ("Proxy-Connection", "x"), ("TE", "trailers"),
        ("Trailer", "X"), ("Transfer-Encoding", "chunked"), ("Upgrade", "websocket"),
        ("x-private", "2"), ("Accept", "*/*"), ("Content-Length", "3"),
    ]
    assert hdr.strip_hop_by_hop(headers) == [
        ("Host", "a"), ("Accept", "*/*"), ("Content-Length", "3")]
    assert hdr.strip_hop_by_hop(headers, also=("HOST",)) == [
        ("Accept", "*/*"), ("Content-Length", "3")]


def test_connection_tokens_over_several_lines() -> None:
    tokens = hdr.connection_tokens([("connection", "A, b"), ("Connection", "c"), ("x", "d")])
    assert tokens == {"a", "b", "c"}


def test_forwarded_headers_append_and_replace() -> None:
    headers = [("X-Forwarded-For", "1.1.1.1"), ("x-forwarded-for", "2.2.2.2, 3.3.3.3"),
               ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil"), ("A", "b")]
    out = hdr.add_forwarded(headers, client_ip="10.0.0.9", proto="http", host="h.example:80")
    assert out == [("A", "b"), ("X-Forwarded-For", "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9"),
                   ("X-Forwarded-Proto", "http"), ("X-Forwarded-Host", "h.example:80")]
    assert hdr.add_forwarded([], client_ip="::1", proto="https", host="") == [
        ("X-Forwarded-For", "::1"), ("X-Forwarded-Proto", "https")]


def test_modifier_set_add_remove_case_insensitive() -> None:
    headers = [("My-Header", "foo"), ("my-header", "again"), ("Keep", "k"), ("Gone", "g")]
    mod = HeaderModifier(
        set=(Header(name="MY-HEADER", value="set"), Header(name="New", value="n")),
        add=(Header(name="keep", value="more"), Header(name="Added", value="a")),
        remove=("GONE", "absent"),
    )
    assert hdr.apply_modifier(headers, mod) == [
        ("My-Header", "set"), ("Keep", "k,more"), ("New", "n"), ("Added", "a")]
    assert headers[0] == ("My-Header", "foo")  # input untouched


def test_modifier_spec_example_and_set_cookie() -> None:
    add = HeaderModifier(add=(Header(name="my-header", value="bar,baz"),))
    assert hdr.apply_modifier([("my-header", "foo")], add) == [("my-header", "foo,bar,baz")]
    cookie = HeaderModifier(add=(Header(name="Set-Cookie", value="b=2"),))
    assert hdr.apply_modifier([("set-cookie", "a=1")], cookie) == [
        ("set-cookie", "a=1"), ("Set-Cookie", "b=2")]


def test_modifier_rejects_header_injection() -> None:
    mod = HeaderModifier(set=(Header(name="X", value="a\r\nEvil: 1"),),
                         add=(Header(name="Y\n", value="v"),))
    assert hdr.apply_modifier([("A", "b")], mod) == [("A", "b")]


def test_modifiers_apply_in_order() -> None:
    first = HeaderModifier(set=(Header(name="X", value="rule"),))
    second = HeaderModifier(add=(Header(name="x", value="backend"),))
    assert hdr.apply_modifiers([], (first, second)) == [("X", "rule,backend")]
    assert hdr.apply_modifier([("a", "b")], None) == [("a", "b")]


def test_heads_are_exact_bytes() -> None:
    assert hdr.request_head("GET", "/p?q=%20", [("Host", "a"), ("Content-Length", "0")]) == (
        b"GET /p?q=%20 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
    assert hdr.response_head(404, "", [("A", "b")]) == b"HTTP/1.1 404 Not Found\r\nA: b\r\n\r\n"
    assert hdr.response_head(200, "Fine", []) == b"HTTP/1.1 200 Fine\r\n\r\n"
    assert hdr.response_head(299, "", []) == b"HTTP/1.1 299 Unknown\r\n\r\n"
    # Received bytes (decoded latin-1) go out unchanged; a non-latin-1 configured value as UTF-8.
    head = hdr.request_head("GET", "/", [("X", "caf\xe9"), ("Y", "\u2713")])
    assert head == b"GET / HTTP/1.1\r\nX: caf\xe9\r\nY: \xe2\x9c\x93\r\n\r\n"


def test_simple_response_connection_handling() -> None:
    keep = hdr.simple_response(404, "no route")
    assert keep.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert b"Content-Length: 9\r\n" in keep and keep.endswith(b"\r\n\r\nno route\n")
    assert b"Connection" not in keep
    close = hdr.simple_response(400, "bad", keep_alive=False)
    assert b"Connection: close\r\n" in close
    old = hdr.simple_response(503, "x", version="1.0")
    assert b"Connection: keep-alive\r\n" in old
    head = hdr.simple_response(500, "boom", head_only=True)
    assert head.endswith(b"\r\n\r\n") and b"Content-Length: 5" in head


def test_redirect_response_has_empty_body() -> None:
    out = hdr.simple_response(302, "", headers=[("Location", "http://x/")])
    assert out == b"HTTP/1.1 302 Found\r\nLocation: http://x/\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize(("target", "expected"), [
    ("/a/b?x=1&y=%2F", ("/a/b", "x=1&y=%2F")),
    ("/a?", ("/a", "")),
    ("/a", ("/a", "")),
    ("http://h:8/p/q?z", ("/p/q", "z")),
    ("http://h", ("/", "")),
    ("http://h?z=1", ("/", "z=1")),
    ("*", ("*", "")),
])
def test_split_target_keeps_query_untouched(target: str, expected: tuple[str, str]) -> None:
    assert hdr.split_target(target) == expected


def test_small_helpers() -> None:
    assert hdr.content_length([("content-length", " 12 ")]) == 12
    assert hdr.content_length([("Content-Length", "x")]) is None
    assert hdr.content_length([]) is None
    assert hdr.chunk(b"abc") == (b"3\r\n", b"abc", b"\r\n")
    assert hdr.has_token([("TE", "gzip, Chunked")], "te", "chunked")
    assert hdr.get_all([("a", "1"), ("A", "2")], "a") == ["1", "2"]
    assert hdr.connection_header(True, "1.1") == []
    assert [code_class(s) for s in (101, 200, 302, 404, 503, 700)] == [
        "1xx", "2xx", "3xx", "4xx", "5xx", "5xx"]


_NAMES = st.sampled_from(["Host", "host", "Connection", "X-Forwarded-For", "x-forwarded-proto",
                          "X-Forwarded-Host", "Expect", "TE", "Keep-Alive", "X-A", "x-b",
                          "Content-Length", "Upgrade"])
_VALUES = st.sampled_from(["", "a", "keep-alive", "close", "X-A", "x-a, x-b", "1.2.3.4",
                           "5.6.7.8, 9.9.9.9", "100-continue", "host"])


@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=12))
@settings(max_examples=300)
def test_upstream_headers_is_the_composition(headers: list[tuple[str, str]]) -> None:
    fused = hdr.upstream_headers(headers, host="up.example", client_ip="10.0.0.1",
                                 proto="https", forwarded_host="h")
    composed = [("Host", "up.example"), *hdr.add_forwarded(
        hdr.strip_hop_by_hop(headers, also=("host", "expect")),
        client_ip="10.0.0.1", proto="https", host="h")]
    assert fused == composed
