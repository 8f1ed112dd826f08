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


# ---------------------------------------------------------------- upstream request headers

_FWD = dict(host="up.test", client_ip="10.0.0.9", proto="https", forwarded_host="h.test")
_EDGE_TAIL = [("X-Forwarded-For", "10.0.0.9"), ("X-Real-IP", "10.0.0.9"),
              ("Forwarded", "for=10.0.0.9;host=h.test;proto=https"),
              ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "h.test")]


def test_upstream_headers_order_and_what_is_dropped() -> None:
    headers = [
        ("host", "h.test"), ("Accept", "*/*"), ("Connection", "keep-alive, X-Private"),
        ("X-Private", "1"), ("Keep-Alive", "timeout=5"), ("Proxy-Connection", "x"),
        ("TE", "trailers"), ("Trailer", "X"), ("Upgrade", "websocket"), ("Expect", "100-continue"),
        ("Content-Length", "3"), ("Transfer-Encoding", "chunked"), ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "evil"), ("x-b", "2"), ("HOST", "second"),
    ]
    assert hdr.upstream_headers(headers, **_FWD) == [
        ("Host", "up.test"), ("Accept", "*/*"), ("x-b", "2"), *_EDGE_TAIL]


@pytest.mark.parametrize(("connection", "kept"), [
    # Connection can never remove the framing (it is never copied), Host or forwarding headers.
    ("content-length", [("X-A", "a")]),
    ("Transfer-Encoding", [("X-A", "a")]),
    ("host", [("X-A", "a")]),
    ("x-forwarded-for, X-Real-IP, forwarded", [("X-A", "a")]),
    ("x-forwarded-proto, x-forwarded-host", [("X-A", "a")]),
    # ... but it removes any other header it names, wherever the header stands.
    ("x-a", []),
    ("close, , X-A ", []),
])
def test_upstream_headers_connection_listed_names(connection: str, kept: hdr.Headers) -> None:
    headers = [("X-A", "a"), ("Content-Length", "5"), ("X-Forwarded-For", "6.6.6.6"),
               ("Connection", connection)]
    assert hdr.upstream_headers(headers, **_FWD) == [("Host", "up.test"), *kept, *_EDGE_TAIL]
    hop = hdr.upstream_headers(headers, **_FWD, trusted_hops=1)
    assert ("X-Forwarded-For", "6.6.6.6, 10.0.0.9") in hop
    assert ("X-Real-IP", "6.6.6.6") in hop


_CLIENT_CHAIN = [("X-Forwarded-For", "1.1.1.1, 2.2.2.2"), ("x-forwarded-for", " 3.3.3.3 ,, "),
                 ("Forwarded", "for=1.1.1.1"), ("forwarded", "for=3.3.3.3;proto=http"),
                 ("X-Real-IP", "6.6.6.6"), ("A", "b")]
_OURS = "for=10.0.0.9;host=h.test;proto=https"


@pytest.mark.parametrize(("hops", "xff", "real_ip", "forwarded"), [
    (0, "10.0.0.9", "10.0.0.9", _OURS),
    (1, "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9", "3.3.3.3",
     f"for=1.1.1.1, for=3.3.3.3;proto=http, {_OURS}"),
    (2, "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9", "2.2.2.2",
     f"for=1.1.1.1, for=3.3.3.3;proto=http, {_OURS}"),
    (3, "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9", "1.1.1.1",
     f"for=1.1.1.1, for=3.3.3.3;proto=http, {_OURS}"),
    (9, "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9", "1.1.1.1",  # chain shorter: the leftmost
     f"for=1.1.1.1, for=3.3.3.3;proto=http, {_OURS}"),
])
def test_forwarding_chain_by_trusted_hops(hops: int, xff: str, real_ip: str,
                                          forwarded: str) -> None:
    out = hdr.upstream_headers(_CLIENT_CHAIN, **_FWD, trusted_hops=hops)
    assert out == [("Host", "up.test"), ("A", "b"), ("X-Forwarded-For", xff),
                   ("X-Real-IP", real_ip), ("Forwarded", forwarded),
                   ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "h.test")]


def test_forwarding_with_trusted_hops_and_no_incoming_chain() -> None:
    out = hdr.upstream_headers([("A", "b")], **_FWD, trusted_hops=1)
    assert out == [("Host", "up.test"), ("A", "b"), *_EDGE_TAIL]


@pytest.mark.parametrize(("client_ip", "host", "proto", "element"), [
    ("192.0.2.1", "h.test", "http", "for=192.0.2.1;host=h.test;proto=http"),
    ("2001:db8::1", "h.test", "https", 'for="[2001:db8::1]";host=h.test;proto=https'),
    ("10.0.0.1", "h.test:8080", "http", 'for=10.0.0.1;host="h.test:8080";proto=http'),
    ("10.0.0.1", "[::1]:8080", "http", 'for=10.0.0.1;host="[::1]:8080";proto=http'),
    ("10.0.0.1", 'a"b\\', "http", 'for=10.0.0.1;host="a\\"b\\\\";proto=http'),
    ("10.0.0.1", "", "http", "for=10.0.0.1;proto=http"),
    ("", "h.test", "http", "for=unknown;host=h.test;proto=http"),
])
def test_forwarded_element_rfc7239(client_ip: str, host: str, proto: str,
                                   element: str) -> None:
    assert hdr.forwarded_element(client_ip, host, proto) == element


def test_upstream_headers_without_forwarded_host_or_client_ip() -> None:
    out = hdr.upstream_headers([("X-Forwarded-Host", "evil"), ("X-Real-IP", "1.2.3.4")],
                               host="up", client_ip="", proto="http", forwarded_host="")
    assert out == [("Host", "up"), ("Forwarded", "for=unknown;proto=http"),
                   ("X-Forwarded-Proto", "http")]
    out = hdr.upstream_headers([], host="up", client_ip="::1", proto="http",
                               forwarded_host="")
    assert out == [("Host", "up"), ("X-Forwarded-For", "::1"), ("X-Real-IP", "::1"),
                   ("Forwarded", 'for="[::1]";proto=http'), ("X-Forwarded-Proto", "http")]


def test_framing_headers() -> None:
    assert hdr.framing_headers(None, False) == []
    assert hdr.framing_headers(0, False) == [("Content-Length", "0")]
    assert hdr.framing_headers(12, False) == [("Content-Length", "12")]
    assert hdr.framing_headers(None, True) == [("Transfer-Encoding", "chunked")]
    assert hdr.framing_headers(5, True) == [("Transfer-Encoding", "chunked")]
    hdr.framing_headers(None, True).append(("X", "y"))  # a new list every time
    assert hdr.framing_headers(None, True) == [("Transfer-Encoding", "chunked")]


_PROTECTED = {"host", "content-length", "transfer-encoding", "connection", "keep-alive",
              "proxy-connection", "te", "trailer", "upgrade", "expect"}
_ANY_NAMES = st.one_of(
    st.sampled_from(["Host", "host", "HOST", "Connection", "connection", "Content-Length",
                     "content-length", "Transfer-Encoding", "transfer-encoding", "Expect",
                     "TE", "Keep-Alive", "Upgrade", "Trailer", "Proxy-Connection",
                     "X-Forwarded-For", "x-real-ip", "Forwarded", "X-Forwarded-Proto",
                     "X-Forwarded-Host", "X-A", "x-b"]),
    st.text(alphabet="abcdefghostnrleg-TCH", min_size=1, max_size=18))
_ANY_VALUES = st.one_of(
    st.sampled_from(["", "close", "keep-alive", "content-length", "Content-Length, host",
                     "transfer-encoding", "chunked", "x-a, x-b", "1.2.3.4", "5.6.7.8, ::1",
                     "for=1.2.3.4", "host", "x-forwarded-for", "100-continue"]),
    st.text(max_size=20))


@given(st.lists(st.tuples(_ANY_NAMES, _ANY_VALUES), max_size=14),
       st.integers(min_value=0, max_value=3))
@settings(max_examples=400, deadline=None)
def test_upstream_headers_never_framing_nor_second_host(headers: hdr.Headers,
                                                        hops: int) -> None:
    out = hdr.upstream_headers(headers, **_FWD, trusted_hops=hops)
    names = [n.lower() for n, _ in out]
    assert out[0] == ("Host", "up.test")
    assert not _PROTECTED.intersection(names[1:])
    for name in ("x-forwarded-for", "x-real-ip", "forwarded", "x-forwarded-proto",
                 "x-forwarded-host"):
        assert names.count(name) == 1
    assert names[-5:] == ["x-forwarded-for", "x-real-ip", "forwarded", "x-forwarded-proto",
                          "x-forwarded-host"]
    if hops == 0:
        assert out[-5:] == _EDGE_TAIL
    else:
        assert out[-5][1].endswith("10.0.0.9") and out[-3][1].endswith(_OURS)
    # Kept client headers are exactly the ones that are not dropped, in their order.
    listed = {t.strip().lower() for n, v in headers if n.lower() == "connection"
              for t in v.split(",")}
    dropped = _PROTECTED | {"x-forwarded-for", "x-real-ip", "forwarded", "x-forwarded-proto",
                            "x-forwarded-host"}
    expected = [h for h in headers if h[0].lower() not in dropped
                and h[0].lower() not in listed]
    assert out[1:-5] == expected
    # Modifiers cannot bring any of it back; the caller's framing is then the only one.
    evil = HeaderModifier(set=(Header(name="Content-Length", value="0"),
                               Header(name="host", value="evil")),
                          add=(Header(name="Transfer-Encoding", value="chunked"),
                               Header(name="Connection", value="close")),
                          remove=("Host",))
    final = hdr.apply_modifier(out, evil) + hdr.framing_headers(7, False)
    names = [n.lower() for n, _ in final]
    assert names.count("host") == 1 and names.count("content-length") == 1
    assert "transfer-encoding" not in names and "connection" not in names


# ---------------------------------------------------------------- response headers

@pytest.mark.parametrize(("headers", "expected"), [
    ([("Content-Type", "text/plain"), ("Content-Length", "5"), ("Date", "d")],
     [("Content-Type", "text/plain"), ("Date", "d")]),
    ([("Transfer-Encoding", "chunked"), ("Connection", "keep-alive"), ("Keep-Alive", "t=5"),
      ("Upgrade", "h2c"), ("Trailer", "X"), ("TE", "x"), ("Proxy-Connection", "y"),
      ("Set-Cookie", "a=1")],
     [("Set-Cookie", "a=1")]),
    # A backend's `Connection: content-length` cannot leave the response unframed: the
    # framing is never copied anyway and the caller emits it from the parser's state.
    ([("Content-Length", "5"), ("Connection", "content-length"), ("X", "1")], [("X", "1")]),
    ([("X-Secret", "s"), ("Connection", "close"), ("connection", "x-secret"), ("Y", "2")],
     [("Y", "2")]),
    ([], []),
])
def test_response_headers(headers: hdr.Headers, expected: hdr.Headers) -> None:
    assert hdr.response_headers(headers) == expected


# ---------------------------------------------------------------- Host

@pytest.mark.parametrize(("value", "expected"), [
    ("h.test", ("h.test", None)),
    ("H.Test:8080", ("H.Test", 8080)),
    ("h.test.", ("h.test.", None)),
    ("h.test:", ("h.test", None)),
    ("my_host-1.example", ("my_host-1.example", None)),
    ("localhost:1", ("localhost", 1)),
    ("h.test:65535", ("h.test", 65535)),
    ("h.test:00080", ("h.test", 80)),
    ("192.0.2.1:80", ("192.0.2.1", 80)),
    ("[::1]:8080", ("[::1]", 8080)),
    ("[2001:DB8::1]", ("[2001:DB8::1]", None)),
    ("[::ffff:192.0.2.1]:", ("[::ffff:192.0.2.1]", None)),
    ("a" * 255, ("a" * 255, None)),
])
def test_parse_host_valid(value: str, expected: tuple[str, int | None]) -> None:
    assert hdr.parse_host(value) == expected


@pytest.mark.parametrize("value", [
    "", ":80", "evil.com@good.com", "evil.com/x?", "h.test:99999", "h.test:abc",
    "h.test:65536", "h.test:123456", "h.test:-1", "h.test:+80", "h.test:8 0", "h.test:80:80",
    "h.test#x", "h.test?", "h%2e.test", "h test", " h.test", "h.test ", "h\\x", "h\tx",
    "h\x00x", "h\r\nx", "h\x7fx", "h\u00e9.test", "h\u0661.test", "h.test:\u0661",
    ".h.test", "h..test", "h.test..", ".", "a" * 256, "[::1", "::1", "[::1]x", "[::1]:abc",
    "[]", "[1.2.3.4]", "[::1%eth0]", "[fe80::1%25eth0]", "[v1.x]", "[::g]", "[:::1]",
    "h.test:1/x", "*",
])
def test_parse_host_invalid(value: str) -> None:
    assert hdr.parse_host(value) is None


@given(st.text(max_size=30))
@settings(max_examples=300, deadline=None)
def test_parse_host_never_accepts_dangerous_characters(value: str) -> None:
    parsed = hdr.parse_host(value)
    if parsed is not None:
        host, port = parsed
        assert not any(c in value for c in "@/?#%\\ \t\r\n\x00")
        assert value.isascii() and host and value.startswith(host)
        assert port is None or 0 <= port <= 65535


# ---------------------------------------------------------------- request target

@pytest.mark.parametrize(("target", "expected"), [
    ("/", (None, "/", "")),
    ("/a/b?x=1&y=%2F", (None, "/a/b", "x=1&y=%2F")),
    ("/a?", (None, "/a", "")),
    ("/a?b?c", (None, "/a", "b?c")),
    ("//x/y", (None, "//x/y", "")),
    ("/caf\xc3\xa9\x85", (None, "/caf\xc3\xa9\x85", "")),  # bytes above 0x7F pass
    ("http://other.test/admin", ("other.test", "/admin", "")),
    ("HTTPS://Other.Test:8443/p/q?z=%20", ("Other.Test:8443", "/p/q", "z=%20")),
    ("http://h", ("h", "/", "")),
    ("http://h?z=1", ("h", "/", "z=1")),
    ("http://h:/p", ("h:", "/p", "")),
    ("http://[::1]:8080/x", ("[::1]:8080", "/x", "")),
    ("*", (None, "*", "")),
])
def test_parse_target_valid(target: str, expected: tuple[str | None, str, str]) -> None:
    assert hdr.parse_target(target) == expected


@pytest.mark.parametrize("target", [
    "", "/admin#x", "/#/../admin", "/a?b#c", "#", "http://other.test/#x",
    "http://u@other.test/", "http://u:p@other.test/admin", "http://evil.com@good.com/",
    "http://", "http:///p", "http://h.test:99999/", "http://h.test:abc/", "http://h%2e/",
    "http://h\\x/", "ftp://other.test/", "ws://h/", "other.test:443", "other.test/a", "a",
    "http:/x", "**", "*/", "/a b", "/a\tb", "/a\x00", "/a\r\n", "/a\x7f",
    " /", "http://h /",
])
def test_parse_target_invalid(target: str) -> None:
    assert hdr.parse_target(target) is None


@given(st.text(max_size=30))
@settings(max_examples=300, deadline=None)
def test_parse_target_accepts_no_fragment_and_keeps_the_query(target: str) -> None:
    parsed = hdr.parse_target(target)
    if parsed is not None:
        authority, path, query = parsed
        assert "#" not in target and " " not in target
        assert path.startswith("/") or path == "*"
        assert target.endswith(path + ("?" + query if query else "")) or path == "/"
        assert authority is None or hdr.parse_host(authority) is not None


# ---------------------------------------------------------------- modifiers cannot touch the proxy's headers

@pytest.mark.parametrize("name", ["Host", "content-length", "Transfer-Encoding", "Connection",
                                  "Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Connection"])
def test_modifier_ignores_protected_names(name: str) -> None:
    base = [("Host", "up"), ("Content-Length", "3"), ("A", "b")]
    for mod in (HeaderModifier(set=(Header(name=name, value="x"),)),
                HeaderModifier(add=(Header(name=name, value="x"),)),
                HeaderModifier(remove=(name,))):
        assert hdr.apply_modifier(base, mod) == base


@pytest.mark.parametrize("name", ["", "X Y", "Host ", " Content-Length", "X:Y", "X\u00e9",
                                  "X\x00", "X\r\nHost"])
def test_modifier_ignores_names_that_are_not_tokens(name: str) -> None:
    base = [("A", "b")]
    mod = HeaderModifier(set=(Header(name=name, value="v"),),
                         add=(Header(name=name, value="v"),), remove=(name,))
    assert hdr.apply_modifier(base, mod) == base
    ok = HeaderModifier(set=(Header(name="X-Ok!", value="v"),), remove=("a",))
    assert hdr.apply_modifier(base, ok) == [("X-Ok!", "v")]
