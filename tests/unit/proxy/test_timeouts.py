"""Client-side timeouts of the proxy: slow request heads (slowloris) and idle keep-alive."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from rauta.proxy.manager import Proxy
from tests.unit.proxy.conftest import config, free_port, port_config, rule


@pytest.mark.timeout(20)
async def test_request_head_trickled_slower_than_head_timeout_is_closed() -> None:
    proxy = Proxy(registry=CollectorRegistry(), head_timeout=0.6, client_idle_timeout=30)
    port = free_port()
    try:
        await proxy.apply(config(port_config(port, rule())))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n")
        closed_after = None
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for _ in range(40):  # one header byte every 100 ms: never completes the head
            await asyncio.sleep(0.1)
            if reader.at_eof():
                closed_after = loop.time() - t0
                break
            try:
                writer.write(b"X")
                await writer.drain()
            except ConnectionError:
                closed_after = loop.time() - t0
                break
        assert closed_after is not None, "a trickled request head was never cut off"
        assert closed_after < 2.5
        writer.close()
    finally:
        await proxy.close(0.0)


@pytest.mark.timeout(20)
async def test_a_complete_head_is_not_cut_by_head_timeout() -> None:
    proxy = Proxy(registry=CollectorRegistry(), head_timeout=0.3, client_idle_timeout=30)
    port = free_port()
    try:
        await proxy.apply(config(port_config(port, rule())))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.8)  # idle before any byte: governed by the idle timeout
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 ")
        writer.close()
    finally:
        await proxy.close(0.0)


@pytest.mark.timeout(20)
async def test_upgrade_request_with_a_body_is_refused_and_its_body_never_parsed() -> None:
    """llhttp stops at an Upgrade head; its body must not become a second request."""
    proxy = Proxy(registry=CollectorRegistry())
    port = free_port()
    try:
        await proxy.apply(config(port_config(port, rule())))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        smuggled = b"GET /victim HTTP/1.1\r\nHost: a\r\n\r\n"
        writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(smuggled) + smuggled)
        data = await asyncio.wait_for(reader.read(), 5)  # until the proxy closes
        assert data.startswith(b"HTTP/1.1 400 ")
        assert data.count(b"HTTP/1.1 ") == 1  # no answer for the smuggled request
        writer.close()
    finally:
        await proxy.close(0.0)


@pytest.mark.timeout(20)
async def test_route_without_timeouts_still_gets_504_when_no_response_head_comes() -> None:
    from tests.unit.proxy.conftest import backend, get, raw_backend

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(10)  # never answers

    async def slow_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        await writer.drain()
        await asyncio.sleep(1.0)  # the head came in time: the body may take longer
        writer.write(b"cd")
        await writer.drain()

    server1, p1 = await raw_backend(silent)
    server2, p2 = await raw_backend(slow_body)
    proxy = Proxy(registry=CollectorRegistry(), response_head_timeout=0.5)
    port = free_port()
    try:
        await proxy.apply(config(port_config(
            port, rule(backend(p1), path="/silent"), rule(backend(p2), path="/slow"))))
        r = await get(port, "/silent")
        assert r.status == 504
        r = await get(port, "/slow")
        assert r.status == 200 and r.body == b"abcd"
    finally:
        await proxy.close(0.0)
        server1.close()
        server2.close()
