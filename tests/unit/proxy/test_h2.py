"""HTTP/2 on HTTPS listeners (ALPN h2): protocol selection, routing, the 421 rule,
proxy-made answers and protocol errors. Flow control, resets and timers: test_h2_flow.

The client is the h2 library over a real TLS loopback connection (``h2client``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
from pathlib import Path

import h2.errors
import h2.events
import pytest
from prometheus_client import CollectorRegistry

from rauta.model.config import Filters, ListenerRoutes, Redirect
from rauta.proxy import Proxy
from rauta.proxy.headers import h2_request_headers, h2_response_headers

from .conftest import (
    Client,
    EchoBackend,
    backend,
    config,
    free_port,
    port_config,
    rule,
)
from .h2client import (
    CERTS,
    PREFACE,
    SETTINGS,
    H2Client,
    H2Response,
    body_echo,
    goaway_of,
    h2_get,
    https,
    make_pems,
    raw_tls,
    read_all,
    seen_headers,
)

pytestmark = pytest.mark.timeout(60)  # asyncio_mode is "auto"


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, bytes]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    tmp: Path = tmp_path_factory.mktemp("h2certs")
    return make_pems(tmp)


# ---------------------------------------------------------------------- protocol selection


async def test_alpn_h2_and_http11_on_one_listener(proxy: Proxy, echo: EchoBackend,
                                                  pems: dict) -> None:
    port = await https(proxy, pems, rule(backend(echo.port)))
    client = await H2Client.open(port)
    resp = await client.get("/a", authority="example.org")
    assert resp.status == 200 and resp.ended and resp.json()["path"] == "/a"
    await client.close()
    for alpn in (["http/1.1"], None):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if alpn:
            ctx.set_alpn_protocols(alpn)
        c1 = await Client.open(port, ssl=ctx, server_hostname="example.org")
        assert c1.writer.get_extra_info("ssl_object").selected_alpn_protocol() == (
            "http/1.1" if alpn else None)
        r1 = await c1.request("GET", "/b", host="example.org")
        assert r1.status == 200 and json.loads(r1.body)["path"] == "/b"
        await c1.close()


async def test_get_is_routed_with_the_request_head_checked(proxy: Proxy, echo: EchoBackend,
                                                           echo2: EchoBackend,
                                                           pems: dict) -> None:
    port = await https(proxy, pems, rule(backend(echo.port), path="/one"),
                       rule(backend(echo2.port, name="default/two:80"), path="/two", index=1))
    client = await H2Client.open(port)
    resp = await client.get("/two/x?q=1&r", authority="example.org:443", headers=[
        ("cookie", "a=1"), ("x-custom", "v"), ("cookie", "b=2"), ("x_under", "dropped"),
        ("te", "trailers")])
    assert resp.status == 200 and resp.ended
    body = resp.json()
    assert body["backend"] == "b2" and body["method"] == "GET" and body["path"] == "/two/x?q=1&r"
    seen = seen_headers(resp)
    assert seen["host"] == ["example.org:443"]
    assert seen["cookie"] == ["a=1; b=2"]  # RFC 9113 §8.2.3
    assert seen["x-custom"] == ["v"]
    assert "x_under" not in seen and "te" not in seen
    assert seen["x-forwarded-proto"] == ["https"]
    assert seen["x-forwarded-host"] == ["example.org:443"]
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert "content-length" not in seen and "transfer-encoding" not in seen
    # Response: lower-case names, no connection-specific fields, framing as Content-Length.
    assert resp.header("x-backend") == "b2"
    assert resp.header("content-length") == str(len(resp.body))
    assert all(n == n.lower() for n, _ in resp.headers)
    assert resp.header("connection") is None and resp.header("keep-alive") is None
    one = await client.get("/one", authority="example.org")
    assert one.json()["backend"] == "b1"
    head = await client.response(await client.request("HEAD", "/one"))
    assert head.status == 200 and head.ended and head.body == b""
    assert int(head.header("content-length") or 0) > 0
    await client.close()
    counted = sum(s.value for m in proxy.metrics.registry.collect() if m.name == "rauta_requests"
                  for s in m.samples if s.name == "rauta_requests_total"
                  and s.labels["code"] == "2xx" and s.labels["port"] == str(port))
    assert counted == 3


# ---------------------------------------------------------------------- the 421 matrix

MISDIRECTED = [
    ("example.org", "example.org", 200, "v1"),
    ("example.org", "second-example.org", 421, None),
    ("example.org", "unknown-example.org", 404, None),
    ("second-example.org", "second-example.org", 200, "v2"),
    ("second-example.org", "example.org", 421, None),
    ("second-example.org", "unknown-example.org", 421, None),
    ("third-example.wildcard.org", "third-example.wildcard.org", 200, "v3"),
    ("third-example.wildcard.org", "fith-example.wildcard.org", 200, "v3"),
    ("third-example.wildcard.org", "fourth-example.wildcard.org", 421, None),
    ("third-example.wildcard.org", "second-example.org", 421, None),
    ("third-example.wildcard.org", "unknown-example.org", 421, None),
    ("fourth-example.wildcard.org", "fourth-example.wildcard.org", 200, "v1"),
    ("fourth-example.wildcard.org", "fith-example.wildcard.org", 421, None),
    ("unknown-example.org", "example.org", 200, "v1"),
    ("unknown-example.org", "unknown-example.org", 404, None),
]


async def test_misdirected_requests_as_the_conformance_test(proxy: Proxy, pems: dict) -> None:
    """HTTPRouteHTTPSListenerDetectMisdirectedRequests: one port, four HTTPS listeners."""
    backends = {v: await EchoBackend(v).start() for v in ("v1", "v2", "v3")}
    path = "/detect-misdirected-requests"

    def lr(name: str, hostname: str, v: str, route_host: str = "") -> ListenerRoutes:
        b = backend(backends[v].port, name=f"infra/{v}:8080")
        return ListenerRoutes(gateway="infra/gw", listener=name, hostname=hostname,
                              rules=(rule(b, path=path, route=f"infra/{name}",
                                          hostname=route_host),))

    try:
        port = free_port()
        listeners = (  # most specific first, as the translator orders them
            lr("https-with-hostname", "second-example.org", "v2"),
            lr("https-with-hostname-matching-wildcard", "fourth-example.wildcard.org", "v1"),
            lr("https-with-wildcard-hostname", "*.wildcard.org", "v3"),
            lr("https", "", "v1", route_host="example.org"),
        )
        applied = await proxy.apply(config(port_config(
            port, protocol="HTTPS", listeners=listeners, certificates=CERTS)), pems)
        assert applied.ports == (port,)
        got = []
        for sni, host, _, _ in MISDIRECTED:  # a new connection per request, as Go's
            resp = await h2_get(port, sni, host, path)
            got.append((sni, host, resp.status,
                        resp.json()["backend"] if resp.status == 200 else None))
            assert resp.ended
        assert got == MISDIRECTED
    finally:
        for b in backends.values():
            await b.stop()


@pytest.mark.parametrize("garbage, code", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", None),  # read as a frame: FRAME_SIZE or PROTOCOL
    (b"\x00\x00\x04\x00\x01\x00\x00\x00\x00abcd", h2.errors.ErrorCodes.PROTOCOL_ERROR),  # DATA on 0
    (b"\x00\x00\x01\x01\x05\x00\x00\x00\x01\x82", h2.errors.ErrorCodes.PROTOCOL_ERROR),  # no :path
])
async def test_protocol_violation_gets_goaway_and_close(proxy: Proxy, echo: EchoBackend,
                                                        pems: dict, garbage: bytes,
                                                        code: int | None) -> None:
    port = await https(proxy, pems, rule(backend(echo.port)))
    reader, writer = await raw_tls(port)
    writer.write(PREFACE + SETTINGS + garbage)
    data = await read_all(reader)  # ends: the proxy closed the connection
    writer.close()
    goaway = goaway_of(data)
    assert goaway is not None and goaway.error_code != 0
    if code is not None:
        assert goaway.error_code == code
    assert (await h2_get(port, "example.org", "example.org")).status == 200  # still serving
    listener = proxy.listener(port)
    assert listener is not None
    for _ in range(50):
        if not listener.connections:
            break
        await asyncio.sleep(0.02)
    assert not listener.connections


async def test_garbage_instead_of_the_preface(proxy: Proxy, echo: EchoBackend,
                                              pems: dict) -> None:
    port = await https(proxy, pems, rule(backend(echo.port)))
    reader, writer = await raw_tls(port)
    writer.write(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
    data = await read_all(reader)
    writer.close()
    goaway = goaway_of(data)
    assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR


# ---------------------------------------------------------------------- proxy-made answers


async def test_redirect_direct_responses_and_refusals(proxy: Proxy, echo: EchoBackend,
                                                      pems: dict) -> None:
    redirect = Filters(redirect=Redirect(scheme="https", hostname="other.example",
                                         status_code=301))
    port = await https(proxy, pems, rule(path="/moved", filters=redirect),
                       rule(path="/empty", index=1), rule(backend(echo.port), path="/ok",
                                                          index=2))
    client = await H2Client.open(port)
    moved = await client.get("/moved/x")
    assert moved.status == 301 and moved.ended
    assert (moved.header("location") or "").startswith("https://other.example")
    empty = await client.get("/empty")  # a rule without backends answers 500
    assert empty.status == 500 and empty.ended and empty.header("content-type")
    assert int(empty.header("content-length") or 0) == len(empty.body) > 0
    missing = await client.get("/none")
    assert missing.status == 404 and missing.ended
    trace = await client.response(await client.request("TRACE", "/ok"))
    assert trace.status == 405 and "GET" in (trace.header("allow") or "")
    for path, authority in [("/ok#frag", "example.org"), ("/ok;jsessionid=1", "example.org"),
                            ("http://example.org/ok", "example.org"), ("/ok", "exa mple.org"),
                            ("/ok", "user@example.org"), ("/ok", "example.org:99999")]:
        bad = await client.get(path, authority=authority)
        assert bad.status == 400 and bad.ended, (path, authority)
    scheme = await client.response(await client.request(
        "GET", "/ok", headers=[]))  # sanity: the same connection still routes
    assert scheme.status == 200
    await client.close()


async def test_connect_is_refused(proxy: Proxy, echo: EchoBackend, pems: dict) -> None:
    port = await https(proxy, pems, rule(backend(echo.port)))
    client = await H2Client.open(port)
    sid = client.conn.get_next_available_stream_id()
    client.responses[sid] = H2Response()
    client.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", "example.org:443")])
    client.flush()
    resp = await client.response(sid)
    assert resp.status == 400
    await client.close()


async def test_oversized_head_is_431(pems: dict, echo: EchoBackend) -> None:
    proxy = Proxy(registry=CollectorRegistry(), max_head_bytes=4096, max_headers=10)
    try:
        port = await https(proxy, pems, rule(backend(echo.port)))
        client = await H2Client.open(port)
        big = await client.get("/", headers=[("x-big", "v" * 5000)])
        assert big.status == 431 and big.ended
        many = await client.get("/", headers=[(f"x-h{i}", "v") for i in range(11)])
        assert many.status == 431
        ok = await client.get("/", headers=[(f"x-h{i}", "v") for i in range(5)])
        assert ok.status == 200
        await client.close()
    finally:
        await proxy.close(0.0)


async def test_expect_100_continue(proxy: Proxy, echo: EchoBackend, pems: dict) -> None:
    echo.handler = body_echo
    port = await https(proxy, pems, rule(backend(echo.port)))
    client = await H2Client.open(port)
    sid = await client.request("POST", "/", headers=[("expect", "100-continue"),
                                                     ("content-length", "3")], end=False)
    for _ in range(100):
        if client.responses[sid].informational:
            break
        await asyncio.sleep(0.01)
    assert client.responses[sid].informational == [100]
    await client.send(sid, b"abc")
    resp = await client.response(sid)
    assert resp.status == 200 and bytes(resp.body) == b"abc"
    seen = echo.seen
    assert not seen or all(n.lower() != b"expect" for n, _ in seen[-1]["headers"])
    await client.close()


# ---------------------------------------------------------------------- pure helpers


def test_h2_request_headers_join_cookies_and_drop_underscores() -> None:
    fields = [(b":method", b"GET"), (b":path", b"/"), (b"a", b"1"), (b"cookie", b"x=1"),
              (b"b_c", b"2"), (b"cookie", b"y=2"), (b"d", b"3")]
    pseudo, headers, size, count = h2_request_headers(fields, underscores=False)
    assert pseudo == {":method": "GET", ":path": "/"}
    assert headers == [("a", "1"), ("cookie", "x=1; y=2"), ("d", "3")]
    assert count == 5 and size == sum(len(n) + len(v) + 4 for n, v in fields)
    _, kept, _, _ = h2_request_headers(fields, underscores=True)
    assert ("b_c", "2") in kept


def test_h2_response_headers_drop_connection_specific_fields() -> None:
    block = h2_response_headers(204, [("X-A", "1"), ("Connection", "close"),
                                      ("Keep-Alive", "5"), ("Transfer-Encoding", "chunked"),
                                      ("Upgrade", "h2c"), ("Proxy-Connection", "x"),
                                      ("Set-Cookie", "é")])
    assert block == [(b":status", b"204"), (b"x-a", b"1"), (b"set-cookie", "é".encode("latin-1"))]
