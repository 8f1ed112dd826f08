"""HTTP/2 on HTTPS listeners (ALPN h2): routing, the 421 rule, flow control, resets, errors.

The client is the h2 library over a real TLS loopback connection, as Go's
``http2.Transport`` in the conformance suite: SNI = server name, ``:authority`` = host.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest
from aiohttp import web

from rauta.model.config import (
    Filters,
    ListenerRoutes,
    Redirect,
    Timeouts,
    TLSCertificate,
)
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

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

CERT = "default/cert"


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, bytes]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    tmp: Path = tmp_path_factory.mktemp("h2certs")
    cert, key = tmp / "c.crt", tmp / "c.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=example.org", "-addext",
         "subjectAltName=DNS:example.org,DNS:*.example.org", "-keyout", str(key),
         "-out", str(cert)], check=True, capture_output=True)
    return {CERT: (cert.read_bytes(), key.read_bytes())}


CERTS = (TLSCertificate(hostname="", secrets=(CERT,)),)


# ---------------------------------------------------------------------- an h2 client


@dataclass
class H2Response:
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    informational: list[int] = field(default_factory=list)
    ended: bool = False  # END_STREAM arrived: the response is complete
    reset: int | None = None  # RST_STREAM error code, if the stream was reset
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n == name), None)

    def json(self) -> dict:
        return json.loads(bytes(self.body))


class H2Client:
    """An HTTP/2 client over one TLS connection (h2 library, one reader task)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 auto_ack: bool) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="latin-1"))
        self.auto_ack = auto_ack
        self.responses: dict[int, H2Response] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.eof = asyncio.Event()
        self.window = asyncio.Event()
        self.settings = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, port: int, sni: str = "example.org", *, auto_ack: bool = True,
                   alpn: tuple[str, ...] = ("h2",)) -> H2Client:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(list(alpn))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                       server_hostname=sni or None)
        client = cls(reader, writer, auto_ack)
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        client.conn.initiate_connection()
        client.flush()
        client.task = asyncio.get_running_loop().create_task(client._read())
        await asyncio.wait_for(client.settings.wait(), 5)
        return client

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def _read(self) -> None:
        try:
            while data := await self.reader.read(1 << 16):
                for ev in self.conn.receive_data(data):
                    self._event(ev)
                self.flush()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self.eof.set()
            self.window.set()
            for r in self.responses.values():
                r.done.set()

    def _event(self, ev: h2.events.Event) -> None:
        r = self.responses.get(getattr(ev, "stream_id", None) or 0)
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            self.settings.set()
            self.window.set()
        elif isinstance(ev, h2.events.WindowUpdated):
            self.window.set()
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev
            if ev.error_code == 0:
                # A graceful GOAWAY: streams up to last_stream_id still complete, as Go's
                # and curl's clients expect; the h2 library would refuse their frames.
                self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        elif r is None:
            return
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            r.informational.append(int(dict(ev.headers)[":status"]))
        elif isinstance(ev, h2.events.ResponseReceived):
            r.headers = [(n, v) for n, v in ev.headers if not n.startswith(":")]
            r.status = int(dict(ev.headers)[":status"])
        elif isinstance(ev, h2.events.DataReceived):
            r.body += ev.data
            if self.auto_ack:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            r.ended = True
            r.done.set()
        elif isinstance(ev, h2.events.StreamReset):
            r.reset = ev.error_code
            r.done.set()

    async def request(self, method: str = "GET", path: str = "/", *,
                      authority: str = "example.org", headers: list[tuple[str, str]] = (),
                      body: bytes | None = None, end: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.responses[sid] = H2Response()
        fields = [(":method", method), (":scheme", "https"), (":authority", authority),
                  (":path", path), *headers]
        self.conn.send_headers(sid, fields, end_stream=end and body is None)
        self.flush()
        if body is not None:
            await self.send(sid, body, end=end)
        return sid

    async def send(self, sid: int, body: bytes, *, end: bool = True) -> None:
        view = memoryview(body)
        while view:
            window = min(self.conn.local_flow_control_window(sid),
                         self.conn.max_outbound_frame_size)
            if window <= 0:
                self.window.clear()
                await asyncio.wait_for(self.window.wait(), 10)
                if self.eof.is_set():
                    raise ConnectionError("closed")
                continue
            self.conn.send_data(sid, view[:window].tobytes())
            view = view[window:]
            self.flush()
            await self.writer.drain()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    async def response(self, sid: int, timeout: float = 10) -> H2Response:
        r = self.responses[sid]
        await asyncio.wait_for(r.done.wait(), timeout)
        return r

    async def get(self, path: str = "/", **kw) -> H2Response:
        return await self.response(await self.request("GET", path, **kw))

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def h2_get(port: int, sni: str, host: str, path: str = "/") -> H2Response:
    client = await H2Client.open(port, sni)
    try:
        return await client.get(path, authority=host)
    finally:
        await client.close()


async def https(proxy: Proxy, pems: dict, *rules, **kw) -> int:
    port = free_port()
    applied = await proxy.apply(config(port_config(port, *rules, protocol="HTTPS",
                                                   certificates=CERTS, **kw)), pems)
    assert applied.ports == (port,), applied
    return port


def seen_headers(resp: H2Response) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n, v in resp.json()["headers"]:
        out.setdefault(n.lower(), []).append(v)
    return out


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


# ---------------------------------------------------------------------- bodies, flow control


async def body_echo(request: web.Request) -> web.StreamResponse:
    """Streams the request body back (hash and framing in headers)."""
    resp = web.StreamResponse(headers={
        "X-Req-CL": request.headers.get("Content-Length", "-"),
        "X-Req-TE": request.headers.get("Transfer-Encoding", "-")})
    await resp.prepare(request)
    async for chunk in request.content.iter_any():
        await resp.write(chunk)
    await resp.write_eof()
    return resp


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
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            while True:
                writer.write(b"4\r\nabcd\r\n")
                await writer.drain()
                await asyncio.sleep(0.01)
        except ConnectionError:
            closed.set()
            raise

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


async def raw_tls(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    return await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                         server_hostname="example.org")


async def read_all(reader: asyncio.StreamReader) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        async with asyncio.timeout(5):
            while chunk := await reader.read(1 << 16):
                data += chunk
    return data


def goaway_of(data: bytes) -> h2.events.ConnectionTerminated | None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    with contextlib.suppress(h2.exceptions.ProtocolError):
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ConnectionTerminated):
                return ev
    return None


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


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
    from prometheus_client import CollectorRegistry
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


# ---------------------------------------------------------------------- timers and drain


async def test_idle_connection_gets_goaway(pems: dict, echo: EchoBackend) -> None:
    from prometheus_client import CollectorRegistry
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
