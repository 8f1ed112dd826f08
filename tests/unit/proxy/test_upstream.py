"""UpstreamConnection without sockets: bytes fed to ``data_received`` in any split.

A fake transport and a fake pool stand in for asyncio; a recording sink plays the
Exchange (it releases the connection when told the response is reusable).
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rauta.proxy.upstream import UpstreamConnection

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n")
INTERIM = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: x\r\n\r\n" + OK
HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
EVIL = b"HTTP/1.1 302 Found\r\nLocation: http://evil/\r\nContent-Length: 0\r\n\r\n"


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def writelines(self, parts) -> None:  # type: ignore[no-untyped-def, override]
        self.written.extend(parts)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class FakePool:
    max_head_bytes = 64 * 1024
    max_headers = 100

    def __init__(self) -> None:
        self.released: list[UpstreamConnection] = []

    def release(self, conn: UpstreamConnection) -> None:
        self.released.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        pass


class Sink:
    """Records what it hears; releases the connection on a reusable end, like Exchange."""

    def __init__(self, conn: UpstreamConnection, release_on_body: bool = False) -> None:
        self.conn = conn
        self.release_on_body = release_on_body
        self.head: tuple[int, str, int | None] | None = None
        self.body = b""
        self.done: bool | None = None
        self.failed: BaseException | None = None

    def upstream_head(self, status: int, reason: str, headers: list[tuple[str, str]],
                      framing: str, length: int | None = None) -> None:
        assert self.head is None, "a second head reached this sink"
        self.head = (status, framing, length)

    def upstream_body(self, data: bytes) -> None:
        assert self.head is not None, "body before head"
        self.body += data
        if self.release_on_body and self.body == b"hello":
            self.conn.release()  # a sink that releases as soon as it has the body

    def upstream_done(self, reusable: bool) -> None:
        assert self.done is None
        self.done = reusable
        if reusable:
            self.conn.release()
        else:
            self.conn.close()

    def upstream_failed(self, error: BaseException, got_bytes: bool) -> None:
        self.failed = error

    def upstream_flush(self) -> None:
        pass

    def upstream_pause_writing(self) -> None:
        pass

    def upstream_resume_writing(self) -> None:
        pass


def make() -> tuple[UpstreamConnection, FakePool, FakeTransport]:
    pool = FakePool()
    conn = UpstreamConnection(pool, ("127.0.0.1", 1))  # type: ignore[arg-type]
    transport = FakeTransport()
    conn.connection_made(transport)
    return conn, pool, transport


def feed(conn: UpstreamConnection, data: bytes, cuts: list[int]) -> None:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in zip(points, points[1:], strict=False):
        conn.data_received(data[a:b])


def exchange(conn: UpstreamConnection, head_only: bool = False, **kw: bool) -> Sink:
    sink = Sink(conn, **kw)
    conn.begin(sink, b"GET / HTTP/1.1\r\n\r\n", head_only=head_only)
    return sink


CASES = [  # response bytes, head_only, expected (status, framing, length), body
    (OK, False, (200, "length", 5), b"hello"),
    (CHUNKED, False, (200, "chunked", None), b"abc0123456789abcdef"),
    (INTERIM, False, (200, "length", 5), b"hello"),
    (HEAD, True, (200, "none", None), b""),
    (b"HTTP/1.1 204 No Content\r\n\r\n", False, (204, "none", None), b""),
]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=500), max_size=12), st.data())
def test_any_split_parses_and_pools_a_clean_connection(cuts: list[int], data) -> None:
    conn, pool, transport = make()
    for response, head_only, head, body in data.draw(st.permutations(CASES)):
        sink = exchange(conn, head_only)
        feed(conn, response, cuts)
        assert (sink.head, sink.body, sink.done, sink.failed) == (head, body, True, None)
        assert pool.released[-1] is conn and not conn.closed
    assert len(pool.released) == len(CASES) and not transport.closed


@pytest.mark.parametrize("response,head_only,extra", [
    (OK, False, EVIL), (CHUNKED, False, EVIL), (INTERIM, False, EVIL),
    (OK, False, b"X"),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", False, EVIL),
    (HEAD, True, b"hello"), (HEAD, True, b"hello" + EVIL), (HEAD, True, EVIL),
])
@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=500), max_size=6))
def test_bytes_after_the_end_in_the_same_read_discard_the_connection(
        response: bytes, head_only: bool, extra: bytes, cuts: list[int]) -> None:
    conn, pool, transport = make()
    sink = exchange(conn, head_only)
    feed(conn, response[:-1], cuts)
    conn.data_received(response[-1:] + extra)  # the end and stray bytes in one read
    assert sink.done is False and sink.failed is None
    assert sink.head is not None and sink.head[0] == 200  # its own response, never the 302
    assert pool.released == [] and conn.closed and transport.closed


def test_release_asked_for_inside_a_read_waits_for_the_read() -> None:
    conn, pool, transport = make()
    exchange(conn, release_on_body=True)
    conn.data_received(OK + EVIL)
    assert pool.released == [] and transport.closed
    conn, pool, transport = make()
    exchange(conn, release_on_body=True)
    conn.data_received(OK)
    assert pool.released == [conn] and not transport.closed


def test_bytes_with_no_exchange_close_the_connection() -> None:
    conn, pool, transport = make()
    sink = exchange(conn)
    conn.data_received(OK)
    assert sink.done is True and pool.released == [conn]
    conn.data_received(EVIL)  # idle in the pool
    assert conn.closed and transport.closed
    conn, pool, transport = make()
    conn.data_received(OK)  # never began an exchange
    assert conn.closed and transport.closed


def test_head_response_then_next_exchange_uses_a_fresh_parser() -> None:
    conn, pool, _ = make()
    sink = exchange(conn, head_only=True)
    conn.data_received(HEAD)  # llhttp waits for 5 body bytes that never come
    assert sink.done is True
    sink = exchange(conn)
    conn.data_received(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    assert (sink.head, sink.body, sink.done) == ((201, "length", 2), b"ok", True)


@pytest.mark.parametrize("exc,done", [(None, False), (ConnectionResetError("rst"), None)])
def test_close_delimited_body_ends_only_on_clean_eof(exc: Exception | None,
                                                     done: bool | None) -> None:
    conn, pool, _ = make()
    sink = exchange(conn)
    conn.data_received(b"HTTP/1.1 200 OK\r\n\r\npartial")
    assert sink.head == (200, "close", None)
    conn.connection_lost(exc)
    assert sink.done is done and (sink.failed is None) == (exc is None)
    assert pool.released == []


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * (1 << 20) + b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n",
    b"HTTP/1.1 100 Continue\r\nX-Pad: " + b"p" * 40000 + b"\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nX-Pad: " + b"p" * 40000 + b"\r\nContent-Length: 0\r\n\r\n",
])
def test_oversized_head_fails_before_it_is_buffered(head: bytes) -> None:
    conn, pool, transport = make()
    sink = exchange(conn)
    fed = 0
    while sink.failed is None and fed < len(head):
        conn.data_received(head[fed:fed + 16384])
        fed += 16384
    assert sink.failed is not None and "upstream response" in str(sink.failed)
    assert fed <= FakePool.max_head_bytes + 16384  # stopped within one read of the limit
    assert sink.head is None and transport.aborted and pool.released == []


def test_head_just_within_the_limit_passes() -> None:
    conn, pool, _ = make()
    start = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: "
    end = b"\r\n\r\n"
    head = start + b"p" * (FakePool.max_head_bytes - len(start) - len(end)) + end
    assert len(head) == FakePool.max_head_bytes
    sink = exchange(conn)
    conn.data_received(head + b"ok" * 1)  # the limit falls between the head and the body
    assert (sink.head, sink.body, sink.done) == ((200, "length", 2), b"ok", True)


def test_parser_is_reused_only_after_a_whole_kept_alive_response() -> None:
    conn, _, _ = make()
    exchange(conn)
    first = conn._parser
    conn.data_received(OK)
    exchange(conn)
    assert conn._parser is first  # back at a message start: no new parser per exchange
    conn.data_received(OK)
    exchange(conn, head_only=True)
    conn.data_received(HEAD)
    sink = exchange(conn)
    assert conn._parser is not first  # llhttp still waits for a HEAD body: a fresh one
    conn.data_received(OK)
    assert (sink.head, sink.body, sink.done) == ((200, "length", 5), b"hello", True)
