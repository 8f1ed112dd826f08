"""Forwarding over real sockets: bodies, keep-alive reuse, headers, rewrites, redirects."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from rauta.model.config import (
    Filters,
    Header,
    HeaderModifier,
    PathModifier,
    Redirect,
    Rewrite,
)
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
    applied = await proxy.apply(config(port_config(port, rule(*backends, **rule_kw))))
    assert applied.ports == (port,) and applied.failed == ()
    return port


def seen(resp) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n, v in json.loads(resp.body)["headers"]:
        out.setdefault(n.lower(), []).append(v)
    return out


async def test_get_and_post_forwarded(proxy: Proxy, echo: EchoBackend) -> None:
    port = await simple(proxy, backend(echo.port))
    resp = await get(port, "/a/b?x=1&y=%2F&z=a+b")
    assert resp.status == 200 and resp.complete
    data = json.loads(resp.body)
    assert data["path"] == "/a/b?x=1&y=%2F&z=a+b" and data["method"] == "GET"
    assert resp.header("X-Backend") == "b1"
    client = await Client.open(port)
    body = b"x" * 100_000
    resp = await client.request("POST", "/upload", body=body)
    assert resp.status == 200 and json.loads(resp.body)["body_len"] == len(body)
    resp = await client.request("PUT", "/empty", body=b"")
    assert json.loads(resp.body)["body_len"] == 0
    await client.close()


async def test_keep_alive_upstream_connections_are_reused(proxy: Proxy, echo: EchoBackend
                                                          ) -> None:
    port = await simple(proxy, backend(echo.port))
    client = await Client.open(port)
    for i in range(20):
        resp = await client.request("GET", f"/n/{i}")
        assert resp.status == 200
    await client.close()
    for _ in range(5):  # new client connections, one after another, share the pooled one
        assert (await get(port, "/again")).status == 200
    assert len(echo.peers) == 1
    assert proxy.pool.opened == 1


async def test_hop_by_hop_headers_removed_both_ways(proxy: Proxy) -> None:
    seen_head: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen_head.append(await read_head(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\n"
                     b"Keep-Alive: timeout=5\r\nUpgrade: h2c\r\nX-Kept: yes\r\n"
                     b"Content-Length: 2\r\n\r\nok")
        await writer.drain()

    server, bport = await raw_backend(handler)
    port = await simple(proxy, backend(bport))
    resp = await get(port, "/", headers=[
        ("Connection", "keep-alive, X-Drop"), ("X-Drop", "1"), ("Keep-Alive", "300"),
        ("TE", "trailers"), ("Proxy-Connection", "keep-alive"), ("Upgrade", "websocket"),
        ("X-Stay", "2")])
    assert resp.status == 200 and resp.body == b"ok"
    assert resp.header("X-Kept") == "yes"
    for name in ("X-Secret", "Keep-Alive", "Upgrade"):
        assert resp.header(name) is None
    head = seen_head[0].decode().lower()
    assert "x-stay: 2" in head
    for name in ("x-drop", "keep-alive", "te:", "proxy-connection", "upgrade", "connection: keep"):
        assert name not in head, name
    server.close()


async def test_x_forwarded_headers(proxy: Proxy, echo: EchoBackend) -> None:
    """Point 19: by default rauta is the edge: the client's forwarding headers are replaced."""
    port = await simple(proxy, backend(echo.port))
    resp = await get(port, "/", host="shop.example.com:8080",
                     headers=[("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "spoof"),
                              ("Forwarded", "for=203.0.113.7"), ("X-Real-IP", "203.0.113.7")])
    h = seen(resp)
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-real-ip"] == ["127.0.0.1"]
    assert h["forwarded"] == ['for=127.0.0.1;host="shop.example.com:8080";proto=http']
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-host"] == ["shop.example.com:8080"]
    assert h["host"] == ["shop.example.com:8080"]


async def test_trusted_hops_keep_the_chain(echo: EchoBackend) -> None:
    """Point 19: with one trusted proxy in front, its chain is kept and the real client named."""
    proxy = Proxy(registry=CollectorRegistry(), trusted_hops=1)
    try:
        port = await simple(proxy, backend(echo.port))
        resp = await get(port, "/", host="h.test", headers=[
            ("X-Forwarded-For", "198.51.100.9, 203.0.113.7"), ("Forwarded", "for=203.0.113.7")])
        h = seen(resp)
        assert h["x-forwarded-for"] == ["198.51.100.9, 203.0.113.7, 127.0.0.1"]
        assert h["x-real-ip"] == ["203.0.113.7"]
        assert h["forwarded"] == ["for=203.0.113.7, for=127.0.0.1;host=h.test;proto=http"]
    finally:
        await proxy.close()


async def test_redirect_answers_with_location(proxy: Proxy) -> None:
    redirect = Filters(
        redirect=Redirect(scheme="https", status_code=301),
        response_headers=HeaderModifier(add=(Header(name="X-Why", value="tls"),)))
    port = await simple(proxy, filters=redirect)
    resp = await get(port, "/a/b?q=1", host="shop.example.com:8080")
    assert resp.status == 301
    assert resp.header("Location") == "https://shop.example.com/a/b?q=1"
    assert resp.header("X-Why") == "tls" and resp.body == b""


async def test_url_rewrite_path_and_host(proxy: Proxy, echo: EchoBackend) -> None:
    rewrite = Filters(rewrite=Rewrite(hostname="internal.svc",
                                      path=PathModifier(type="ReplacePrefixMatch", value="/v2")))
    port = await simple(proxy, backend(echo.port), path="/api", filters=rewrite)
    resp = await get(port, "/api/users?id=7&x=%41")
    data = json.loads(resp.body)
    assert data["path"] == "/v2/users?id=7&x=%41"
    assert seen(resp)["host"] == ["internal.svc"]


async def test_request_and_response_header_modifiers(proxy: Proxy, echo: EchoBackend) -> None:
    filters = Filters(
        request_headers=HeaderModifier(set=(Header(name="X-Set", value="rule"),),
                                       add=(Header(name="X-Add", value="added"),),
                                       remove=("X-Remove",)),
        response_headers=HeaderModifier(set=(Header(name="X-Backend", value="hidden"),),
                                        add=(Header(name="X-Resp", value="r"),),
                                        remove=("Content-Type",)))
    be = backend(echo.port, request_headers=HeaderModifier(add=(Header(name="X-Be", value="1"),)),
                 response_headers=HeaderModifier(add=(Header(name="X-Be-Resp", value="2"),)))
    port = await simple(proxy, be, filters=filters)
    resp = await get(port, "/", headers=[("X-Set", "client"), ("X-Add", "orig"),
                                         ("X-Remove", "gone")])
    h = seen(resp)
    assert h["x-set"] == ["rule"] and h["x-add"] == ["orig,added"] and h["x-be"] == ["1"]
    assert "x-remove" not in h
    assert resp.header("X-Backend") == "hidden" and resp.header("X-Resp") == "r"
    assert resp.header("X-Be-Resp") == "2" and resp.header("Content-Type") is None


async def test_head_request_then_reuse(proxy: Proxy, echo: EchoBackend) -> None:
    port = await simple(proxy, backend(echo.port))
    client = await Client.open(port)
    resp = await client.request("HEAD", "/")
    assert resp.status == 200 and int(resp.header("Content-Length") or 0) > 0
    resp = await client.request("GET", "/after")
    assert resp.status == 200 and json.loads(resp.body)["path"] == "/after"
    await client.close()
    assert proxy.pool.opened == 1


async def test_chunked_request_and_response(proxy: Proxy, echo: EchoBackend) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(5):
            await resp.write(b"part%d-" % i)
        await resp.write(b"len=%d" % len(body))
        await resp.write_eof()
        return resp

    echo.handler = chunked
    port = await simple(proxy, backend(echo.port))
    client = await Client.open(port)
    await client.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    resp = await client.read_response()
    assert resp.status == 200 and resp.complete
    assert resp.header("Transfer-Encoding") == "chunked"
    assert resp.body == b"part0-part1-part2-part3-part4-len=11"
    await client.close()


async def test_close_delimited_response(proxy: Proxy) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-the-end")
        await writer.drain()
        writer.close()

    server, bport = await raw_backend(handler)
    port = await simple(proxy, backend(bport))
    client = await Client.open(port)
    resp = await client.request("GET", "/")  # HTTP/1.1 client: re-framed as chunked
    assert resp.complete and resp.body == b"until-the-end"
    assert resp.header("Transfer-Encoding") == "chunked"
    resp = await client.request("GET", "/again")  # and the client connection lives on
    assert resp.complete and resp.body == b"until-the-end"
    await client.close()
    old = await Client.open(port)  # HTTP/1.0 client: close-delimited
    await old.send(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    resp = await old.read_response()
    assert resp.body == b"until-the-end" and resp.header("Connection") == "close"
    assert await old.closed()
    server.close()


async def test_pipelined_requests_answered_in_order(proxy: Proxy, echo: EchoBackend) -> None:
    port = await simple(proxy, backend(echo.port))
    client = await Client.open(port)
    await client.send(b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3))
                      + b"POST /p3 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    paths = []
    reader = client.reader
    for _ in range(4):
        head = await read_head(reader)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        paths.append(json.loads(await reader.readexactly(length))["path"])
    assert paths == ["/p0", "/p1", "/p2", "/p3"]
    await client.close()


async def test_http10_keep_alive_and_expect_continue(proxy: Proxy, echo: EchoBackend) -> None:
    port = await simple(proxy, backend(echo.port))
    client = await Client.open(port)
    await client.send(b"GET /one HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
    resp = await client.read_response()
    assert resp.status == 200 and resp.header("Connection") == "keep-alive"
    await client.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                      b"Expect: 100-continue\r\n\r\n")
    interim = await read_head(client.reader)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    await client.send(b"data")
    resp = await client.read_response()
    assert resp.status == 200 and json.loads(resp.body)["body_len"] == 4
    assert "expect" not in seen(resp)
    await client.close()


async def test_half_closed_client_still_gets_its_answers(proxy: Proxy, echo: EchoBackend
                                                         ) -> None:
    port = await simple(proxy, backend(echo.port))
    client = await Client.open(port)
    await client.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    client.writer.write_eof()
    first, second = await client.read_response(), await client.read_response()
    assert json.loads(first.body)["path"] == "/a" and json.loads(second.body)["path"] == "/b"
    assert await client.closed()


async def test_concurrent_clients_mixed_requests(proxy: Proxy, echo: EchoBackend,
                                                 echo2: EchoBackend) -> None:
    port = await simple(proxy, backend(echo.port, echo2.port))

    async def one(i: int) -> None:
        client = await Client.open(port)
        for j in range(15):
            if (i + j) % 3:
                resp = await client.request("GET", f"/c{i}/{j}?q={j}")
                assert json.loads(resp.body)["path"] == f"/c{i}/{j}?q={j}"
            else:
                body = bytes([i % 256]) * (j * 5000)
                resp = await client.request("POST", f"/c{i}", body=body)
                assert json.loads(resp.body)["body_len"] == len(body)
        await client.close()

    await asyncio.gather(*(one(i) for i in range(40)))
    assert proxy.pool.opened <= 80


async def test_upgrade_request_is_served_as_plain_http(proxy: Proxy, echo: EchoBackend) -> None:
    port = await simple(proxy, backend(echo.port))
    client = await Client.open(port)
    await client.send(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                      b"Upgrade: websocket\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    first, second = await client.read_response(), await client.read_response()
    assert first.status == 200 and "upgrade" not in seen(first)
    assert json.loads(second.body)["path"] == "/next"
    await client.close()
