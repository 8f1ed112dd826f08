"""The cached and fused steps of ``rauta.proxy.headers`` answer exactly as the plain ones.

Role: the hot path caches what a Connection value lists and whether a backend's reason
phrase is clean, and builds a head in one join. These tests repeat the same and
different inputs through the public functions so a cache keyed wrongly (a value cached
for another input, a caller's list changed) shows up, and check the exact head bytes,
including a value outside latin-1 and headers given as a generator.

Rules: expected values are written out here, never computed with the module.
"""

from __future__ import annotations

import pytest

from rauta.proxy import headers as hdr


@pytest.mark.parametrize("connection, kept", [
    ("keep-alive", ["A", "X-B"]),
    ("close", ["A", "X-B"]),
    ("X-B", ["A"]),
    ("keep-alive, x-b", ["A"]),
    ("Keep-Alive , X-B ,", ["A"]),
    ("a", ["X-B"]),
    ("keep-alive", ["A", "X-B"]),  # again after the others: nothing stale from the cache
])
def test_response_headers_drop_what_connection_lists(connection: str, kept: list[str]) -> None:
    for _ in range(3):
        headers = [("A", "1"), ("Connection", connection), ("X-B", "2")]
        original = list(headers)
        out = hdr.response_headers(headers)
        assert [n for n, _ in out] == kept
        assert headers == original  # the input is never changed


def test_request_side_never_drops_host_whatever_connection_lists() -> None:
    for listed in ("host", "keep-alive", "host", "x-a"):
        out = hdr.upstream_headers([("Connection", listed), ("X-A", "1")], host="h.test",
                                   client_ip="", proto="http", forwarded_host="")
        names = [n for n, _ in out]
        assert names[0] == "Host"
        assert ("X-A" in names) == (listed != "x-a")


def test_reason_phrases_cached_or_not_are_checked_each_time() -> None:
    for _ in range(2):
        assert hdr.response_head(200, "OK", []) == b"HTTP/1.1 200 OK\r\n\r\n"
        assert hdr.response_head(200, "Fine\r\nX: y", []) == b"HTTP/1.1 200 OK\r\n\r\n"
        assert hdr.response_head(404, "", []) == b"HTTP/1.1 404 Not Found\r\n\r\n"
        assert hdr.response_head(503, "Busy", []) == b"HTTP/1.1 503 Busy\r\n\r\n"
        assert hdr.response_head(200, "a\x00b", []) == b"HTTP/1.1 200 OK\r\n\r\n"


def test_heads_from_lists_tuples_and_generators_are_the_same_bytes() -> None:
    rows = [("A", "1"), ("B", "two words")]
    want = b"GET /x HTTP/1.1\r\nA: 1\r\nB: two words\r\n\r\n"
    assert hdr.request_head("GET", "/x", rows) == want
    assert hdr.request_head("GET", "/x", tuple(rows)) == want
    assert hdr.request_head("GET", "/x", (r for r in rows)) == want
    assert hdr.request_head("GET", "/x", []) == b"GET /x HTTP/1.1\r\n\r\n"


def test_a_value_outside_latin1_goes_out_as_utf8() -> None:
    rows = (r for r in [("X-Name", "caf\u00e9 \u20ac"), ("A", "1")])
    assert hdr.response_head(200, "OK", rows) == (
        b"HTTP/1.1 200 OK\r\nX-Name: caf\xc3\xa9 \xe2\x82\xac\r\nA: 1\r\n\r\n")
