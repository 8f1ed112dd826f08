"""Error answers over real sockets: 400, 404, 421 (see test_tls), 431, 500, 502, 503, 504."""

from __future__ import annotations

import asyncio
import time

import pytest

from rauta.model.config import Backend, Timeouts
from rauta.proxy import Proxy

from .conftest import (
    Client,
    EchoBackend,
    backend,
    config,
    free_port,
    get,
    port_config,
    raw_backend,
    read_head,
    rule,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


async def simple(proxy: Proxy, *backends, **rule_kw) -> int:
    port = free_port()
    await proxy.apply(config(port_config(port, rule(*backends, **rule_kw))))
    return port


async def test_404_no_matching_route(proxy: Proxy, echo: EchoBackend) -> None:
    port = await simple(proxy, backend(echo.port), path="/api", hostname="api.example.com")
    client = await Client.open(port)
    resp = await client.request("GET", "/other", host="api.example.com")
    assert resp.status == 404 and b"no matching route" in resp.body
    resp = await client.request("GET", "/api", host="www.example.com")
    assert resp.status == 404
    resp = await client.request("GET", "/api/x", host="api.example.com")  # keep-alive survives
    assert resp.status == 200
    await client.close()


async def test_500_invalid_backend_and_no_backends(proxy: Proxy) -> None:
    bad = Backend(name="default/missing:80", weight=1, invalid="BackendNotFound")
    port = await simple(proxy, bad)
    resp = await get(port, "/")
    assert resp.status == 500 and resp.header("Content-Type", ) == "text/plain; charset=utf-8"
    port = await simple(proxy)
    assert (await get(port, "/")).status == 500


async def test_503_no_ready_endpoints(proxy: Proxy) -> None:
    port = await simple(proxy, Backend(name="default/empty:80", weight=1))
    resp = await get(port, "/")
    assert resp.status == 503 and b"no ready endpoints" in resp.body


async def test_502_connection_refused(proxy: Proxy) -> None:
    port = await simple(proxy, backend(free_port()))  # nothing listens there
    client = await Client.open(port)
    resp = await client.request("GET", "/")
    assert resp.status == 502
    resp = await client.request("GET", "/")  # the client connection is still usable
    assert resp.status == 502
    await client.close()
    sample = proxy.metrics.registry.get_sample_value(
        "rauta_upstream_connect_errors_total", {"backend": "default/svc:80"})
    assert sample == 2


@pytest.mark.parametrize("answer", [
    b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Le", b"",
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nraw"])
async def test_502_invalid_or_missing_upstream_response(proxy: Proxy, answer: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    server, bport = await raw_backend(handler)
    port = await simple(proxy, backend(bport))
    resp = await get(port, "/")
    assert resp.status == 502 and resp.complete
    server.close()


async def test_backend_failing_mid_response_closes_client(proxy: Proxy) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 70_000)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()

    server, bport = await raw_backend(handler)
    port = await simple(proxy, backend(bport))
    client = await Client.open(port)
    resp = await client.request("GET", "/")
    assert resp.status == 200 and not resp.complete  # cut off, never presented as complete
    assert client.body_size < 1_000_000
    assert await client.closed()

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    server2, bport2 = await raw_backend(chunked)
    port2 = await simple(proxy, backend(bport2))
    client = await Client.open(port2)
    resp = await client.request("GET", "/")
    assert resp.status == 200 and not resp.complete and resp.body == b"hello"
    assert await client.closed()
    server.close()
    server2.close()


async def test_stale_pooled_connection_is_retried(proxy: Proxy) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)  # promises keep-alive, then closes right after answering
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    server, bport = await raw_backend(handler)
    port = await simple(proxy, backend(bport))
    client = await Client.open(port)
    for _ in range(3):
        resp = await client.request("GET", "/")
        assert resp.status == 200 and resp.body == b"ok"
        await asyncio.sleep(0.1)
    await client.close()
    server.close()


async def test_504_request_timeout(proxy: Proxy) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await asyncio.sleep(2)
        writer.close()

    server, bport = await raw_backend(slow)
    for timeouts in (Timeouts(request_ms=200), Timeouts(backend_request_ms=200),
                     Timeouts(request_ms=5000, backend_request_ms=200)):
        port = await simple(proxy, backend(bport), timeouts=timeouts)
        client = await Client.open(port)
        started = time.monotonic()
        resp = await client.request("GET", "/")
        assert resp.status == 504 and 0.15 < time.monotonic() - started < 1.5
        await client.close()
    server.close()


async def test_504_after_head_aborts_client(proxy: Proxy) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(2)
        writer.close()

    server, bport = await raw_backend(stall)
    port = await simple(proxy, backend(bport), timeouts=Timeouts(request_ms=200))
    client = await Client.open(port)
    resp = await client.request("GET", "/")
    assert resp.status == 200 and not resp.complete
    assert await client.closed(1.0)
    server.close()


async def test_400_malformed_request_closes(proxy: Proxy, echo: EchoBackend) -> None:
    port = await simple(proxy, backend(echo.port))
    client = await Client.open(port)
    await client.send(b"THIS IS NOT HTTP\r\n\r\n")
    resp = await client.read_response()
    assert resp.status == 400 and resp.header("Connection") == "close"
    assert await client.closed()
    client = await Client.open(port)
    await client.send(b"GET / HTTP/1.1\r\n\r\n")  # HTTP/1.1 without Host
    assert (await client.read_response()).status == 400
    await client.close()
    resp = await get(port, "/a/%2e%2e%2fsecret")  # an encoded slash in the path
    assert resp.status == 400
    resp = await get(port, "/", headers=[("Host", "other.example")])  # two Host headers
    assert resp.status == 400 and b"Host" in resp.body


async def test_400_after_valid_pipelined_request(proxy: Proxy, echo: EchoBackend) -> None:
    port = await simple(proxy, backend(echo.port))
    client = await Client.open(port)
    await client.send(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nBROKEN\x00\r\n\r\n")
    first = await client.read_response()
    second = await client.read_response()
    assert first.status == 200 and second.status == 400
    assert await client.closed()


@pytest.mark.parametrize("headers", [
    [("X-Big", "v" * (70 * 1024))],
    [(f"X-H{i}", "v") for i in range(101)],
])
async def test_431_oversize_headers(proxy: Proxy, echo: EchoBackend,
                                    headers: list[tuple[str, str]]) -> None:
    port = await simple(proxy, backend(echo.port))
    client = await Client.open(port)
    resp = await client.request("GET", "/", headers=headers)
    assert resp.status == 431
    assert await client.closed()
    ok = await get(port, "/", headers=[(f"X-H{i}", "v") for i in range(90)])
    assert ok.status == 200


async def test_error_with_request_body_keeps_connection_usable(proxy: Proxy,
                                                               echo: EchoBackend) -> None:
    port = await simple(proxy, backend(echo.port), path="/api")
    client = await Client.open(port)
    resp = await client.request("POST", "/nope", body=b"b" * 300_000)  # 404, body discarded
    assert resp.status == 404
    resp = await client.request("GET", "/api")
    assert resp.status == 200
    await client.close()
    refused = await simple(proxy, backend(free_port()))
    client = await Client.open(refused)
    resp = await client.request("POST", "/", body=b"b" * 300_000)
    assert resp.status == 502
    await client.close()
