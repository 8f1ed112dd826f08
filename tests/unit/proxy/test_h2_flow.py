"""HTTP/2 streams: bodies and flow control both ways, concurrency, resets, failures,
timers and drain (the h2 library as the client, over TLS: ``h2client``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
from pathlib import Path

import h2.errors
import h2.events
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from rauta.model.config import Timeouts
from rauta.proxy import Proxy

from .conftest import (
    EchoBackend,
    backend,
    config,
    free_port,
    port_config,
    raw_backend,
    read_head,
    rule,
)
from .h2client import H2Client, body_echo, https, make_pems

pytestmark = pytest.mark.timeout(60)  # asyncio_mode is "auto"


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, bytes]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    tmp: Path = tmp_path_factory.mktemp("h2certs")
    return make_pems(tmp)


# ---------------------------------------------------------------------- bodies, flow control


@pytest.mark.parametrize("with_length", [True, False])
async def test_large_post_both_ways(proxy: Proxy, echo: EchoBackend, pems: dict,
                                    with_length: bool) -> None:
    echo.handler = body_echo
    port = await https(proxy, pems, rule(backend(echo.port)))
    payload = os.urandom(5 * (1 << 20) + 123)
    client = await H2Client.open(port)
    extra = [("content-length", str(len(payload)))] if with_length else []
    sid = await client.request("POST", "/up", headers=extra, body=payload)
    resp = await client.response(sid, timeout=30)
    assert resp.status == 200 and resp.ended and resp.reset is None
    assert len(resp.body) == len(payload)
    assert hashlib.sha256(resp.body).digest() == hashlib.sha256(payload).digest()
    if with_length:
        assert (resp.header("x-req-cl"), resp.header("x-req-te")) == (str(len(payload)), "-")
    else:
        assert (resp.header("x-req-cl"), resp.header("x-req-te")) == ("-", "chunked")
    # A small body that arrives with its head goes upstream with its length.
    small = await client.response(await client.request("POST", "/s", body=b"hello"))
    assert bytes(small.body) == b"hello" and small.header("x-req-cl") == "5"
    empty = await client.response(await client.request("POST", "/e", body=b""))
    assert empty.status == 200 and empty.header("x-req-cl") == "0"
    await client.close()


async def test_download_is_bounded_by_the_client_window(proxy: Proxy, pems: dict) -> None:
    """A client that opens no window: the proxy stops reading the backend."""
    written = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (1 << 30))
        block = b"x" * (1 << 16)
        while True:
            writer.write(block)
            written += len(block)
            await writer.drain()

    server, bport = await raw_backend(handler)
    try:
        port = await https(proxy, pems, rule(backend(bport)))
        client = await H2Client.open(port, auto_ack=False)
        sid = await client.request("GET", "/big")
        await asyncio.sleep(1.0)
        resp = client.responses[sid]
        assert resp.status == 200 and len(resp.body) == 65535  # the default window
        first = written
        await asyncio.sleep(0.5)
        assert written == first  # the backend is held back ...
        assert written < 24 * (1 << 20)  # ... after socket buffers and the stream's queue
        client.conn.acknowledge_received_data(len(resp.body), sid)
        client.conn.increment_flow_control_window(1 << 24)
        client.conn.increment_flow_control_window(1 << 24, sid)
        client.flush()
        await asyncio.sleep(0.5)
        assert len(resp.body) > 65535  # the window opened: data flows again
        await client.close()
    finally:
        server.close()


async def test_upload_is_bounded_by_what_the_backend_takes(proxy: Proxy, pems: dict) -> None:
    """A backend that reads no body: the stream's window stays shut, the client waits."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if (await read_head(reader)).startswith(b"GET"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
        await asyncio.sleep(30)

    server, bport = await raw_backend(handler)
    try:
        port = await https(proxy, pems, rule(backend(bport)))
        client = await H2Client.open(port)
        size = 48 * (1 << 20)
        sid = await client.request("POST", "/", headers=[("content-length", str(size))],
                                   end=False)
        sent = 0
        block = b"u" * (1 << 16)

        async def upload() -> None:
            nonlocal sent
            while sent < size:
                await client.send(sid, block, end=False)
                sent += len(block)

        task = asyncio.create_task(upload())
        await asyncio.sleep(1.5)
        first = sent
        await asyncio.sleep(0.5)
        assert sent == first < 20 * (1 << 20)  # kernel buffers + one stream window
        other = await client.get("/x")  # the connection's other streams still flow
        assert other.status == 200 and bytes(other.body) == b"ok"
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await client.close()
    finally:
        server.close()


async def test_concurrent_streams_on_one_connection(proxy: Proxy, echo: EchoBackend,
                                                    pems: dict) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.3)
        return web.json_response({"path": request.raw_path})

    echo.handler = slow
    port = await https(proxy, pems, rule(backend(echo.port)))
    client = await H2Client.open(port)
    assert client.conn.remote_settings.max_concurrent_streams == 100
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    sids = [await client.request("GET", f"/c/{i}") for i in range(20)]
    resps = [await client.response(s) for s in sids]
    assert loop.time() - t0 < 3.0  # 20 x 0.3 s in sequence would be 6 s
    assert [r.json()["path"] for r in resps] == [f"/c/{i}" for i in range(20)]
    assert len(set(sids)) == 20 and all(r.ended for r in resps)
    await client.close()


# ---------------------------------------------------------------------- resets and failures


async def test_client_reset_cancels_the_exchange(proxy: Proxy, pems: dict) -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"4\r\nabcd\r\n4\r\nefgh\r\n")
        await writer.drain()
        try:  # then quiet: only the client's reset can end this exchange
            await reader.read()
        finally:
            closed.set()

    server, bport = await raw_backend(handler)
    try:
        port = await https(proxy, pems, rule(backend(bport), path="/stream"))
        client = await H2Client.open(port)
        sid = await client.request("GET", "/stream")
        for _ in range(100):
            if len(client.responses[sid].body) >= 8:
                break
            await asyncio.sleep(0.02)
        assert client.responses[sid].status == 200
        client.conn.reset_stream(sid)
        client.flush()
        await asyncio.wait_for(closed.wait(), 5)  # the upstream connection was dropped
        resp = await client.get("/nothing-here")  # the connection is still usable
        assert resp.status == 404 and resp.ended
        assert not client.responses[sid].ended
        await client.close()
    finally:
        server.close()


async def test_backend_dying_mid_response_resets_the_stream(proxy: Proxy, pems: dict) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        await asyncio.sleep(0.05)

    server, bport = await raw_backend(handler)
    try:
        port = await https(proxy, pems, rule(backend(bport)))
        client = await H2Client.open(port)
        resp = await client.get("/")
        assert resp.status == 200 and resp.body == b"x" * 10
        assert not resp.ended and resp.reset == h2.errors.ErrorCodes.INTERNAL_ERROR
        await client.close()
    finally:
        server.close()


async def test_fail_before_the_head_is_a_clean_error(proxy: Proxy, pems: dict) -> None:
    dead = free_port()  # nothing listens: connect refused → 502 on the stream
    port = await https(proxy, pems, rule(backend(dead)))
    client = await H2Client.open(port)
    resp = await client.get("/")
    assert resp.status == 502 and resp.ended and b"upstream" in resp.body
    await client.close()


# ---------------------------------------------------------------------- timers and drain


async def test_idle_connection_gets_goaway(pems: dict, echo: EchoBackend) -> None:
    proxy = Proxy(registry=CollectorRegistry(), client_idle_timeout=0.3)
    try:
        port = await https(proxy, pems, rule(backend(echo.port)))
        client = await H2Client.open(port)
        assert (await client.get("/")).status == 200
        await asyncio.wait_for(client.eof.wait(), 5)
        assert client.goaway is not None and client.goaway.error_code == 0
        await client.close()
    finally:
        await proxy.close(0.0)


async def test_drain_finishes_streams_in_flight(proxy: Proxy, echo: EchoBackend,
                                                pems: dict) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.5)
        return web.Response(text="late")

    echo.handler = slow
    port = await https(proxy, pems, rule(backend(echo.port)))
    client = await H2Client.open(port)
    sid = await client.request("GET", "/slow")
    await asyncio.sleep(0.1)
    other = free_port()  # the port goes away: its listener drains
    await proxy.apply(config(port_config(other, rule(backend(echo.port)))))
    for _ in range(50):
        if client.goaway is not None:
            break
        await asyncio.sleep(0.02)
    assert client.goaway is not None and client.goaway.last_stream_id == sid
    resp = await client.response(sid)
    assert resp.status == 200 and resp.ended and bytes(resp.body) == b"late"
    await asyncio.wait_for(client.eof.wait(), 5)  # closed once the stream ended
    await client.close()


async def test_route_timeout_after_head_resets(proxy: Proxy, pems: dict) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(5)

    server, bport = await raw_backend(handler)
    try:
        port = await https(proxy, pems, rule(backend(bport),
                                             timeouts=Timeouts(request_ms=300)))
        client = await H2Client.open(port)
        resp = await client.get("/")
        assert resp.status == 200 and not resp.ended and resp.reset is not None
        await client.close()
    finally:
        server.close()


async def test_rapid_reset_flood_gets_goaway(proxy: Proxy, pems: dict) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers

    server, bport = await raw_backend(handler)
    try:
        port = await https(proxy, pems, rule(backend(bport)))
        client = await H2Client.open(port)
        for i in range(300):
            if client.eof.is_set():
                break
            sid = await client.request("GET", f"/r/{i}")
            client.conn.reset_stream(sid)
            client.flush()
            await client.writer.drain()
        await asyncio.wait_for(client.eof.wait(), 5)
        assert client.goaway is not None
        assert client.goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
        await client.close()
    finally:
        server.close()


class FakeExchange:
    def __init__(self) -> None:
        self.paused = self.resumed = 0

    def pause_download(self) -> None:
        self.paused += 1

    def resume_download(self) -> None:
        self.resumed += 1

    def cancel(self) -> None:
        pass


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.reading = True

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.out += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


async def test_write_backpressure_pauses_and_resumes_every_download(proxy: Proxy) -> None:
    """Streams waiting for their response head are resumed too (not only those sending)."""
    from rauta.proxy.h2 import H2Connection, H2Stream
    from rauta.proxy.request import Request
    from rauta.proxy.server import Listener

    conn = H2Connection(Listener(proxy._rt, free_port(), "HTTPS"))
    transport = FakeTransport()
    conn.connection_made(transport)
    exchanges = []
    for sid in (1, 3):
        s = conn.streams[sid] = H2Stream(conn, sid, Request())
        exchanges.append(FakeExchange())
        s.exchange = exchanges[-1]  # type: ignore[assignment]
    conn.pause_writing()
    assert not transport.reading and [e.paused for e in exchanges] == [1, 1]
    conn.resume_writing()
    assert transport.reading and [e.resumed for e in exchanges] == [1, 1]
    conn.abort()
    conn.connection_lost(None)


@pytest.mark.parametrize("body", [None, b"abc"])
async def test_body_ended_short_of_content_length_by_headers_resets(
        proxy: Proxy, pems: dict, body: bytes | None) -> None:
    """END_STREAM on HEADERS (or trailers) before Content-Length bytes came: the h2 library
    does not see it; the stream is reset and the backend never gets a complete request."""
    got: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.append(await read_head(reader))
        with contextlib.suppress(asyncio.IncompleteReadError):
            got.append(await reader.readexactly(5))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    server, bport = await raw_backend(handler)
    try:
        port = await https(proxy, pems, rule(backend(bport)))
        client = await H2Client.open(port)
        sid = await client.request("POST", "/", headers=[("content-length", "5")],
                                   end=body is None)
        if body is not None:
            await client.send(sid, body, end=False)
            client.conn.send_headers(sid, [("x-trailer", "t")], end_stream=True)
            client.flush()
        resp = await client.response(sid)
        assert resp.reset == h2.errors.ErrorCodes.PROTOCOL_ERROR and resp.status == 0
        await asyncio.sleep(0.1)
        assert len(got) <= 1  # the head at most, never five body bytes
        await client.close()
    finally:
        server.close()
