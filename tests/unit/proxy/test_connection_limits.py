"""Client connection bounds over real sockets: lingering close, timers, the connection cap.

Each test waits for an event (EOF, a status, the proxy's connection set emptying) under
a generous pytest timeout; none asserts how long anything took.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from rauta.proxy import Proxy

from .conftest import (
    Client,
    EchoBackend,
    backend,
    config,
    free_port,
    port_config,
    raw_backend,
    read_head,
    rule,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]

FAST = dict(body_timeout=0.3, send_timeout=0.3, lingering_timeout=0.3, lingering_time=2.0,
            head_timeout=5.0, client_idle_timeout=5.0)


@pytest_asyncio.fixture
async def fast() -> AsyncIterator[Proxy]:
    p = Proxy(registry=CollectorRegistry(), drain_seconds=0.5, **FAST)
    yield p
    await p.close(0.0)


async def serve(proxy: Proxy, *backends, **kw) -> int:
    port = free_port()
    await proxy.apply(config(port_config(port, rule(*backends, path="/api", **kw))))
    return port


async def until_no_connections(proxy: Proxy, port: int) -> None:
    lst = proxy.listener(port)
    assert lst is not None
    while lst.connections:
        await asyncio.sleep(0.02)


async def read_until_eof(client: Client) -> bytes:
    data = b""
    try:
        while chunk := await client.reader.read(1 << 16):
            data += chunk
    except ConnectionError:
        pass
    return data


@pytest.mark.parametrize("extra", [[], [("Connection", "close")]])
async def test_unread_body_after_a_proxy_answer_lingers_then_closes(
        fast: Proxy, echo: EchoBackend, extra) -> None:
    """Point 16: a 404 to a big upload whose body never comes: answered, then closed."""
    port = await serve(fast, backend(echo.port))
    client = await Client.open(port)
    head = "POST /nope HTTP/1.1\r\nHost: h\r\nContent-Length: 10000000\r\n"
    head += "".join(f"{n}: {v}\r\n" for n, v in extra) + "\r\n"
    await client.send(head.encode() + b"x" * 1000)
    data = await read_until_eof(client)  # the write side is shut: EOF arrives
    assert data.startswith(b"HTTP/1.1 404 ") and b"Connection: close" in data
    await until_no_connections(fast, port)  # then the lingering deadline closes it fully
    await client.close()


async def test_small_unread_body_is_discarded_and_the_connection_kept(
        fast: Proxy, echo: EchoBackend) -> None:
    port = await serve(fast, backend(echo.port))
    client = await Client.open(port)
    resp = await client.request("POST", "/nope", body=b"b" * 5000)
    assert resp.status == 404 and resp.header("Connection") is None
    assert (await client.request("GET", "/api")).status == 200
    await client.close()


async def test_stalled_body_gets_408_and_closes(fast: Proxy, echo: EchoBackend) -> None:
    """Point 16: the read timer while a request is active."""
    port = await serve(fast, backend(echo.port))
    client = await Client.open(port)
    await client.send(b"POST /api HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n12345")
    data = await read_until_eof(client)
    assert data.startswith(b"HTTP/1.1 408 ")
    await until_no_connections(fast, port)
    assert echo.seen == []  # the half body never counted as a request


async def test_client_that_reads_nothing_is_dropped(fast: Proxy) -> None:
    """Point 16: the write-stall timer: a backend streams, the client never reads."""
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (65536, b"z" * 65536)
        for _ in range(2000):  # 128 MiB at most: bounded
            writer.write(chunk)
            await writer.drain()

    server, bport = await raw_backend(endless)
    port = await serve(fast, backend(bport))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.transport.set_write_buffer_limits(0)
    writer.write(b"GET /api HTTP/1.1\r\nHost: h\r\n\r\n")
    await writer.drain()
    reader._transport.pause_reading()  # type: ignore[attr-defined]
    await until_no_connections(fast, port)
    writer.close()
    server.close()


async def test_connections_over_the_cap_are_closed_at_accept(echo: EchoBackend) -> None:
    proxy = Proxy(registry=CollectorRegistry(), max_connections=2)
    try:
        port = await serve(proxy, backend(echo.port))
        a, b = await Client.open(port), await Client.open(port)
        assert (await a.request("GET", "/api")).status == 200
        c = await Client.open(port)
        assert await c.closed()
        assert (await b.request("GET", "/api")).status == 200
        await a.close()
        await until_no_connections_but(proxy, port, 1)
        d = await Client.open(port)
        assert (await d.request("GET", "/api")).status == 200
        await b.close()
        await d.close()
    finally:
        await proxy.close(0.0)


async def until_no_connections_but(proxy: Proxy, port: int, n: int) -> None:
    lst = proxy.listener(port)
    assert lst is not None
    while len(lst.connections) > n:
        await asyncio.sleep(0.02)


async def test_slow_upload_is_not_cut_by_the_response_head_timer() -> None:
    """Point 17: the default response-head timer starts when the body ends."""
    got = []

    async def slow_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        got.append(await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    server, bport = await raw_backend(slow_reader)
    proxy = Proxy(registry=CollectorRegistry(), response_head_timeout=0.3)
    try:
        port = await serve(proxy, backend(bport))
        client = await Client.open(port)
        await client.send(b"PUT /api HTTP/1.1\r\nHost: h\r\nContent-Length: 8\r\n\r\n")
        for piece in (b"ab", b"cd", b"ef", b"gh"):  # the upload outlasts the head timer
            await asyncio.sleep(0.25)
            await client.send(piece)
        resp = await client.read_response()
        assert resp.status == 200 and got == [b"abcdefgh"]
        await client.close()
    finally:
        await proxy.close(0.0)
        server.close()


async def test_silent_backend_still_gets_504_after_the_body(echo: EchoBackend) -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await asyncio.sleep(10)

    server, bport = await raw_backend(mute)
    proxy = Proxy(registry=CollectorRegistry(), response_head_timeout=0.3)
    try:
        port = await serve(proxy, backend(bport))
        client = await Client.open(port)
        assert (await client.request("GET", "/api")).status == 504
        await client.close()
    finally:
        await proxy.close(0.0)
        server.close()


async def test_underscore_headers_dropped_unless_enabled(echo: EchoBackend) -> None:
    """Point 6: nginx's underscores_in_headers, off by default."""
    for keep in (False, True):
        proxy = Proxy(registry=CollectorRegistry(), underscores_in_headers=keep)
        try:
            port = await serve(proxy, backend(echo.port))
            client = await Client.open(port)
            resp = await client.request("GET", "/api", headers=[("X_Foo", "1"),
                                                                ("Transfer_Encoding", "chunked")])
            assert resp.status == 200
            names = {n.lower() for n, _ in echo.seen[-1]["headers"]}
            names = {n.decode().lower() if isinstance(n, bytes) else n for n in names}
            assert ("x_foo" in names) is keep and ("transfer_encoding" in names) is keep
            await client.close()
        finally:
            await proxy.close(0.0)


async def test_trace_is_refused_unless_allowed(echo: EchoBackend) -> None:
    """Point 7: TRACE gets 405 with an Allow header by default."""
    for allow, status in ((False, 405), (True, 200)):
        proxy = Proxy(registry=CollectorRegistry(), allow_trace=allow)
        try:
            port = await serve(proxy, backend(echo.port))
            client = await Client.open(port)
            resp = await client.request("TRACE", "/api")
            assert resp.status == status
            if status == 405:
                assert resp.header("Allow") and "TRACE" not in (resp.header("Allow") or "")
                assert (await client.request("GET", "/api")).status == 200  # still usable
            await client.close()
        finally:
            await proxy.close(0.0)
