"""Upstream pool desync over real sockets: scripted backends that write exact bytes.

Backends here send extra bytes after a complete response, a body on a HEAD response,
responses split at awkward boundaries, close-delimited bodies cut by a reset, oversized
heads, and bytes on an idle pooled connection. Whatever they do, the next client always
gets its own response, and a connection that carried stray bytes is never pooled again.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable

import httptools
import pytest

from rauta.proxy import Proxy
from rauta.proxy import upstream as upstream_mod

from .conftest import Client, backend, config, free_port, get, port_config, rule

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]

EVIL = b"HTTP/1.1 302 Found\r\nLocation: http://evil/\r\nContent-Length: 0\r\n\r\n"

# answer(conn_no, req_no_on_conn, request_head, writer) writes the response itself.
Answer = Callable[[int, int, bytes, asyncio.StreamWriter], Awaitable[None]]


def fresh(path: bytes) -> bytes:
    body = b"fresh " + path
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def path_of(head: bytes) -> bytes:
    return head.split(b" ", 2)[1]


class Scripted:
    """A raw backend: counts accepted connections and hands each request to ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.accepts = 0
        self.requests: list[tuple[int, bytes]] = []  # (connection number, request head)
        self.writers: list[asyncio.StreamWriter] = []
        self.port = free_port()
        self.server: asyncio.Server | None = None

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepts += 1
        conn_no = self.accepts
        self.writers.append(writer)
        n = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append((conn_no, head))
                await self.answer(conn_no, n, head, writer)
                n += 1
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def start(self) -> Scripted:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", self.port)
        return self

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def write(writer: asyncio.StreamWriter, *pieces: bytes, gap: float = 0.0) -> None:
    """Write each piece as its own segment (TCP_NODELAY is on), pausing ``gap`` between."""
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        if gap:
            await asyncio.sleep(gap)


async def start(proxy: Proxy, answer: Answer) -> tuple[Scripted, int]:
    b = await Scripted(answer).start()
    port = free_port()
    applied = await proxy.apply(config(port_config(port, rule(backend(b.port)))))
    assert applied.ports == (port,)
    return b, port


async def until(cond: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not cond():
            await asyncio.sleep(0.01)


# ---------------------------------------------------------------------- extra bytes


async def extra_after_first(conn_no: int, n: int, head: bytes,
                            writer: asyncio.StreamWriter) -> None:
    if conn_no == 1 and n == 0:  # a complete 200, then a stray 302 in the same write
        await write(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + EVIL)
    else:
        await write(writer, fresh(path_of(head)))


async def test_extra_response_is_not_spliced_into_pipelined_request(proxy: Proxy) -> None:
    b, port = await start(proxy, extra_after_first)
    client = await Client.open(port)
    await client.send(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    first = await client.read_response()
    second = await client.read_response()
    assert first.status == 200 and first.body == b"hello"
    assert second.status == 200 and second.body == b"fresh /2", second
    assert b.accepts == 2 and [c for c, _ in b.requests] == [1, 2]  # never reused
    await client.close()
    b.close()


async def test_extra_response_never_reaches_another_client(proxy: Proxy) -> None:
    b, port = await start(proxy, extra_after_first)
    resp = await get(port, "/a")
    assert resp.status == 200 and resp.body == b"hello"
    resp = await get(port, "/b")
    assert resp.status == 200 and resp.body == b"fresh /b"
    assert proxy.pool.opened == 2 and b.accepts == 2
    resp = await get(port, "/c")  # the clean connection is reused
    assert resp.status == 200 and resp.body == b"fresh /c"
    assert proxy.pool.opened == 2
    b.close()


async def head_with_body(conn_no: int, n: int, head: bytes,
                         writer: asyncio.StreamWriter) -> None:
    if head.startswith(b"HEAD "):  # a body on a HEAD response, in the same write
        await write(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    else:
        await write(writer, fresh(path_of(head)))


async def test_body_on_head_response_does_not_corrupt_the_next_one(proxy: Proxy) -> None:
    b, port = await start(proxy, head_with_body)
    client = await Client.open(port)
    await client.send(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /g HTTP/1.1\r\nHost: x\r\n\r\n")
    first = await client.read_response(head_only=True)
    second = await client.read_response()
    assert first.status == 200 and first.header("Content-Length") == "5"
    assert second.status == 200 and second.body == b"fresh /g", second
    resp = await client.request("HEAD", "/h2")
    assert resp.status == 200
    await client.close()
    resp = await get(port, "/other")  # a different client
    assert resp.status == 200 and resp.body == b"fresh /other"
    # Each HEAD connection carried stray bytes and was dropped.
    assert [c for c, h in b.requests if h.startswith(b"HEAD ")] == [1, 2]
    assert b.accepts == 3
    b.close()


async def test_bytes_on_idle_pooled_connection_discard_it(proxy: Proxy) -> None:
    stray = asyncio.Event()

    async def answer(conn_no: int, n: int, head: bytes, writer: asyncio.StreamWriter) -> None:
        await write(writer, fresh(path_of(head)))
        if conn_no == 1:
            await stray.wait()
            await write(writer, EVIL)  # while the connection sits idle in the pool

    b, port = await start(proxy, answer)
    key = ("127.0.0.1", b.port)
    resp = await get(port, "/1")
    assert resp.body == b"fresh /1"
    await until(lambda: proxy.pool.idle_count(key) == 1)
    stray.set()
    await until(lambda: proxy.pool.idle_count(key) == 0)
    resp = await get(port, "/2")
    assert resp.status == 200 and resp.body == b"fresh /2"
    assert b.accepts == 2 and proxy.pool.opened == 2
    b.close()


# ---------------------------------------------------------------------- split writes

CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n")
INTERIM = (b"HTTP/1.1 100 Continue\r\n\r\n"
           b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabc")


async def test_split_responses_parse_and_reuse(proxy: Proxy) -> None:
    async def answer(conn_no: int, n: int, head: bytes, writer: asyncio.StreamWriter) -> None:
        path = path_of(head)
        if path == b"/bytes":  # every byte its own segment
            data = fresh(path)
            await write(writer, *(data[i:i + 1] for i in range(len(data))), gap=0.002)
        elif path == b"/chunked":  # mid head, mid chunk size, mid CRLF, before the end
            await write(writer, CHUNKED[:20], CHUNKED[20:52], CHUNKED[52:61],
                        CHUNKED[61:62], CHUNKED[62:-3], CHUNKED[-3:], gap=0.005)
        elif path == b"/interim":  # the split falls right after the 100's end
            await write(writer, INTERIM[:25], INTERIM[25:40], INTERIM[40:], gap=0.005)
        elif head.startswith(b"HEAD "):
            data = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n"
            await write(writer, data[:17], data[17:-1], data[-1:], gap=0.005)
        else:
            await write(writer, fresh(path))

    b, port = await start(proxy, answer)
    client = await Client.open(port)
    resp = await client.request("GET", "/bytes")
    assert resp.status == 200 and resp.body == b"fresh /bytes" and resp.complete
    resp = await client.request("GET", "/chunked")
    assert resp.status == 200 and resp.body == b"hello0123456789abcdef" and resp.complete
    resp = await client.request("GET", "/interim")
    assert resp.status == 200 and resp.body == b"abc" and resp.header("X-A") == "b"
    resp = await client.request("HEAD", "/head")
    assert resp.status == 200 and resp.header("Content-Length") == "7"
    resp = await client.request("GET", "/last")
    assert resp.status == 200 and resp.body == b"fresh /last"
    await client.close()
    assert b.accepts == 1 and proxy.pool.opened == 1  # clean every time: always reused
    b.close()


# ---------------------------------------------------------------------- reset


async def test_close_delimited_body_cut_by_reset_is_a_failure(proxy: Proxy) -> None:
    cut = asyncio.Event()

    async def answer(conn_no: int, n: int, head: bytes, writer: asyncio.StreamWriter) -> None:
        await write(writer, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npartial")
        await cut.wait()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST, not FIN

    b, port = await start(proxy, answer)
    client = await Client.open(port)
    await client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await client.reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower()
    assert await client.reader.readuntil(b"partial\r\n")
    cut.set()
    rest = b""
    try:  # read until EOF or reset (or a terminating chunk, which must not come)
        async with asyncio.timeout(5):
            while b"0\r\n\r\n" not in rest and (data := await client.reader.read(1 << 16)):
                rest += data
    except ConnectionError:
        pass
    assert b"0\r\n\r\n" not in rest  # never presented as a complete response
    await client.close()
    b.close()


# ---------------------------------------------------------------------- head limits


class CountingParser:
    """Wraps httptools' response parser to record the most bytes one parser was fed."""

    most = 0

    def __init__(self, proto: object) -> None:
        self._p = httptools.HttpResponseParser(proto)
        self.fed = 0

    def feed_data(self, data: bytes | memoryview) -> None:
        self.fed += len(data)
        CountingParser.most = max(CountingParser.most, self.fed)
        self._p.feed_data(data)

    def get_status_code(self) -> int:
        return self._p.get_status_code()

    def should_keep_alive(self) -> bool:
        return self._p.should_keep_alive()


class _Httptools:
    HttpResponseParser = CountingParser
    HttpParserError = httptools.HttpParserError
    HttpParserUpgrade = httptools.HttpParserUpgrade
    HttpParserCallbackError = httptools.HttpParserCallbackError


@pytest.mark.parametrize("kind", ["huge-value", "many-headers", "endless-interim"])
async def test_oversized_upstream_head_is_502(proxy: Proxy, kind: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream_mod, "httptools", _Httptools)
    CountingParser.most = 0

    async def answer(conn_no: int, n: int, head: bytes, writer: asyncio.StreamWriter) -> None:
        if path_of(head) == b"/ok":
            await write(writer, fresh(b"/ok"))
        elif kind == "huge-value":  # one 1 MiB header, written in pieces
            await write(writer, b"HTTP/1.1 200 OK\r\nX-Big: ")
            for _ in range(16):
                await write(writer, b"v" * 65536)
            await write(writer, b"\r\nContent-Length: 0\r\n\r\n")
        elif kind == "many-headers":
            await write(writer, b"HTTP/1.1 200 OK\r\n"
                        + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
                        + b"Content-Length: 0\r\n\r\n")
        else:  # interim heads count towards the limit too
            for _ in range(16):
                await write(writer, b"HTTP/1.1 100 Continue\r\nX-Pad: " + b"p" * 8000
                            + b"\r\n\r\n")
            await write(writer, fresh(b"/late"))

    b, port = await start(proxy, answer)
    client = await Client.open(port)
    resp = await client.request("GET", "/big")
    assert resp.status == 502
    if kind == "huge-value":
        # The parser (which buffers a header value whole) never got more than the limit.
        assert CountingParser.most <= 64 * 1024
    resp = await client.request("GET", "/ok")  # the client connection is still usable
    assert resp.status == 200 and resp.body == b"fresh /ok"
    await client.close()
    b.close()
