"""What the proxy tells an operator about HTTP/2 streams (issue 11): the same JSON access-log
records and the same one-line warning for every proxy-made 5xx (naming port, route, rule
and backend) as HTTP/1 requests get, from the same code (``request.record``/``log_5xx``).

The client is the h2 library over a real TLS loopback connection (``h2client``); each
case is also run over HTTP/1.1 on the same HTTPS listener, so the two lines are compared.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import ssl
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from rauta.proxy import Proxy

from .conftest import Client, backend, free_port, raw_backend, read_head, rule
from .h2client import H2Client, https, make_pems

pytestmark = pytest.mark.timeout(60)  # asyncio_mode is "auto"


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, bytes]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    tmp: Path = tmp_path_factory.mktemp("h2obs")
    return make_pems(tmp)


def named(r: object, name: str) -> object:
    return r.model_copy(update={"rule_name": name})  # type: ignore[attr-defined]


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def h1_get(port: int, path: str) -> int:
    """One HTTP/1.1 request over TLS (ALPN http/1.1) to the same HTTPS listener."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    client = await Client.open(port, ssl=ctx, server_hostname="example.org")
    try:
        return (await client.request("GET", path, host="example.org")).status
    finally:
        await client.close()


async def h2_status(port: int, path: str) -> int:
    client = await H2Client.open(port)
    try:
        return (await client.get(path, authority="example.org")).status
    finally:
        await client.close()


async def test_an_h2_proxy_made_502_is_one_warning_like_http1(
        proxy: Proxy, pems: dict, caplog: pytest.LogCaptureFixture) -> None:
    dead = free_port()  # nothing listens there
    port = await https(proxy, pems, named(rule(backend(dead, name="shop/api:8080"),
                                               route="shop/web"), "checkout"))
    caplog.set_level(logging.WARNING)
    assert await h2_status(port, "/") == 502
    h2_lines = [w for w in warnings(caplog) if "502" in w]
    assert len(h2_lines) == 1, warnings(caplog)
    line = h2_lines[0]
    assert f"port {port}" in line and "shop/web" in line and "shop/api:8080" in line
    assert "checkout" in line
    caplog.clear()
    assert await h1_get(port, "/") == 502
    h1_lines = [w for w in warnings(caplog) if "502" in w]
    assert h1_lines == h2_lines  # the very same line, whichever protocol carried it


async def test_an_h2_no_endpoints_503_is_logged(proxy: Proxy, pems: dict,
                                                caplog: pytest.LogCaptureFixture) -> None:
    port = await https(proxy, pems, rule(backend(name="shop/empty:80"), route="shop/web"))
    caplog.set_level(logging.WARNING)
    status = await h2_status(port, "/")
    assert status >= 500
    assert any(str(status) in w and "shop/empty:80" in w and "shop/web" in w
               for w in warnings(caplog)), warnings(caplog)


async def test_h2_4xx_answers_are_not_warnings(proxy: Proxy, pems: dict,
                                               caplog: pytest.LogCaptureFixture) -> None:
    port = await https(proxy, pems, rule(backend(free_port()), path="/only", ptype="Exact"))
    caplog.set_level(logging.WARNING)
    assert await h2_status(port, "/elsewhere") == 404
    assert warnings(caplog) == []


async def test_an_h2_backend_failing_after_the_head_is_a_warning_and_a_record(
        pems: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        await asyncio.sleep(0.2)  # then the backend dies: 990 bytes short

    out = tmp_path / "access.log"
    proxy = Proxy(registry=CollectorRegistry(), access_log=str(out))
    server, bport = await raw_backend(handler)
    caplog.set_level(logging.WARNING)
    try:
        port = await https(proxy, pems, rule(backend(bport, name="shop/flaky:80"),
                                             route="shop/web"))
        client = await H2Client.open(port)
        resp = await client.get("/short", authority="example.org")
        await client.close()
        assert resp.status == 200 and resp.reset is not None and not resp.ended
    finally:
        await proxy.close(0.0)
        server.close()
    lines = [w for w in warnings(caplog) if "shop/flaky:80" in w]
    assert len(lines) == 1, warnings(caplog)
    assert "after the response head" in lines[0] and "shop/web" in lines[0]
    (doc,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert doc["version"] == "2" and doc["path"] == "/short" and doc["status"] == 502
    assert doc["backend"] == "shop/flaky:80"


async def test_h2_streams_are_in_the_access_log_as_http1_requests_are(
        pems: dict, tmp_path: Path) -> None:
    from .conftest import EchoBackend

    echo = await EchoBackend("b1").start()
    out = tmp_path / "access.log"
    proxy = Proxy(registry=CollectorRegistry(), access_log=str(out))
    try:
        port = await https(proxy, pems, named(rule(backend(echo.port), route="default/r"),
                                              "main"))
        client = await H2Client.open(port)
        for i in range(3):  # three streams on one connection
            assert (await client.get(f"/p{i}?q=1", authority="example.org")).status == 200
        assert (await client.get("/x", authority="other.example")).status == 200
        await client.close()
        assert await h1_get(port, "/h1") == 200
    finally:
        await proxy.close(0.0)
        await echo.stop()
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["path"] for d in docs] == ["/p0?q=1", "/p1?q=1", "/p2?q=1", "/x", "/h1"]
    assert [d["version"] for d in docs] == ["2", "2", "2", "2", "1.1"]
    first, h1 = docs[0], docs[-1]
    assert first["host"] == "example.org" and docs[3]["host"] == "other.example"
    assert first["status"] == 200 and first["method"] == "GET" and first["port"] == port
    assert first["route"] == "default/r" and first["rule"] == "main"
    assert first["backend"] == "default/svc:80" and first["client"] == "127.0.0.1"
    assert first["duration_ms"] >= 0 and first["ts"].endswith("Z")
    assert set(first) == set(h1)  # the same record shape for both protocols
    assert {k: v for k, v in first.items() if k not in ("ts", "duration_ms", "path",
                                                         "version")} == \
        {k: v for k, v in h1.items() if k not in ("ts", "duration_ms", "path", "version")}


async def test_h2_refusals_are_in_the_access_log_too(pems: dict, tmp_path: Path) -> None:
    out = tmp_path / "access.log"
    proxy = Proxy(registry=CollectorRegistry(), access_log=str(out))
    try:
        port = await https(proxy, pems, rule(backend(free_port()), path="/only", ptype="Exact"))
        client = await H2Client.open(port)
        assert (await client.get("/nope", authority="example.org")).status == 404
        sid = await client.request("TRACE", "/only")
        assert (await client.response(sid)).status == 405
        await client.close()
    finally:
        await proxy.close(0.0)
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(d["method"], d["status"], d["version"]) for d in docs] == [
        ("GET", 404, "2"), ("TRACE", 405, "2")]
    assert docs[0]["route"] == "" and docs[0]["backend"] == ""
