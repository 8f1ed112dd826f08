"""Request framing and parser strictness: a table of raw request bytes against the expected
status, whether the connection closes, and exactly what the backend receives.

The config: Host ``h.test`` + PathPrefix ``/public`` -> backend A; Host ``other.test`` +
PathPrefix ``/`` -> backend B; everything else 404. Backends are the h11 recording servers of
``tests/e2e/hostile.py`` (an oracle that never imports rauta): each request they parse is
logged and answered 200 with ``X-Request-Id``.

Per row: the client sends the raw bytes on a fresh connection and reads one response per
expected status. Then either the connection must reach EOF with nothing more sent
(``close=True``), or it must still serve a control request (``close=False``), or either is
fine (``close=None``). Finally the requests the backends logged (h11's reading of the exact
bytes forwarded) must be exactly the expected ones, in order, with nothing after them.

The numbers in the row ids are the hardening issue's points. Points 15/16 (head limits and
lingering close) are in ``tests/e2e/test_head_limits.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from rauta.model.config import ListenerRoutes
from rauta.proxy import Proxy
from tests.e2e import hostile as hz
from tests.e2e.hostile import BODY, SMUGGLED, TE, H, Req, chunked, cl

from .conftest import Client, backend, config, free_port, port_config, raw_backend, read_head, rule

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

CONTROL = b"GET /public/control HTTP/1.1\r\nHost: h.test\r\n\r\n"


@dataclass(frozen=True)
class Fwd:
    """One request a backend must receive."""

    backend: str = "A"
    method: str = "GET"
    target: str = "/public/x"
    body: bytes | None = b""
    cl: str | None = None            # the exact Content-Length value (None: not checked)
    chunked: bool | None = None      # forwarded with Transfer-Encoding: chunked?
    exact: tuple[tuple[str, tuple[str, ...]], ...] = ()  # name -> all its values, in order
    lacks: tuple[str, ...] = ()      # header names that must not be forwarded
    no_value: tuple[str, ...] = ()   # substrings that no header value may contain
    host: str | None = None          # the forwarded Host value


@dataclass(frozen=True)
class Row:
    id: str
    raw: bytes
    status: tuple[int | tuple[int, ...], ...]   # one entry per response, in order
    close: bool | None
    fwd: tuple[Fwd, ...] = ()


def post(*extra: tuple[bytes, bytes], body: bytes = BODY, target: bytes = b"/public/p",
         version: bytes = b"HTTP/1.1", after: bytes = b"", host: bytes = b"h.test") -> bytes:
    return Req(method=b"POST", target=target, version=version, headers=H(host, *extra),
               body=body, after=after).render()


def get(target: bytes = b"/public/x", *extra: tuple[bytes, bytes], host: bytes = b"h.test",
        version: bytes = b"HTTP/1.1", after: bytes = b"", eol: bytes = b"\r\n") -> bytes:
    return Req(target=target, version=version, headers=H(host, *extra), after=after,
               eol=eol).render()


def line(first: bytes, after: bytes = b"") -> bytes:
    return first + b"\r\nHost: h.test\r\n\r\n" + after


def hdr(*headers: tuple[bytes, bytes], after: bytes = b"") -> bytes:
    return Req(headers=headers, after=after).render()


POST_FWD = Fwd(method="POST", target="/public/p", body=BODY)
BAD = ((400,), True)

ROWS: list[Row] = [
    # ------------------------------------------------------------ well-formed controls
    Row("control-get", get(), (200,), False, (Fwd(),)),
    Row("control-post-cl", post(cl(BODY)), (200,), False, (
        Fwd(method="POST", target="/public/p", body=BODY, cl="11", chunked=False),)),
    Row("control-post-chunked", post(TE, body=chunked(BODY)), (200,), False, (
        Fwd(method="POST", target="/public/p", body=BODY, chunked=True),)),
    Row("control-pipelined-gets", get(after=get(b"/public/y")), (200, 200), False,
        (Fwd(), Fwd(target="/public/y"))),
    Row("control-http10-keepalive", get(b"/public/x", (b"Connection", b"keep-alive"),
                                        version=b"HTTP/1.0"), (200,), False, (Fwd(),)),
    Row("control-http10-close", get(version=b"HTTP/1.0"), (200,), True, (Fwd(),)),
    Row("control-other-host", get(b"/anything", host=b"other.test"), (200,), False,
        (Fwd(backend="B", target="/anything"),)),
    Row("control-404", get(b"/admin"), (404,), False),
    Row("control-te-Chunked-case", post((b"Transfer-Encoding", b"ChUnKeD"), body=chunked(BODY)),
        (200,), False, (Fwd(method="POST", target="/public/p", body=BODY, chunked=True),)),
    # ------------------------------------------------------------ 1 Connection-listed framing
    Row("1-connection-content-length", post((b"Connection", b"content-length"), cl(SMUGGLED),
                                            body=SMUGGLED), (200,), False,
        (Fwd(method="POST", target="/public/p", body=SMUGGLED, cl=str(len(SMUGGLED))),)),
    Row("1-connection-transfer-encoding", post((b"Connection", b"transfer-encoding"), TE,
                                               body=chunked(SMUGGLED)), (200,), False,
        (Fwd(method="POST", target="/public/p", body=SMUGGLED),)),
    # ------------------------------------------------------------ 2 HTTP/1.0 + chunked
    Row("2-http10-chunked", post((b"Connection", b"keep-alive"), TE, body=chunked(BODY),
                                 version=b"HTTP/1.0", after=hz.NEXT_OK), *BAD),
    # ------------------------------------------------------------ 3 CONNECT
    Row("3-connect", b"CONNECT h.test:443 HTTP/1.1\r\nHost: h.test:443\r\n\r\n" + hz.NEXT_OK,
        *BAD),
    # ------------------------------------------------------------ 4 transfer codings
    Row("4-te-gzip-chunked", post((b"Transfer-Encoding", b"gzip, chunked"), body=chunked(BODY),
                                  after=hz.NEXT_OK), (501,), True),
    # With Content-Length as well, llhttp refuses it as CL+TE (400) before the coding is
    # looked at; both close (RFC 9112 §6.1 allows either answer).
    Row("4-te-identity", post((b"Transfer-Encoding", b"identity"), cl(BODY)), ((400, 501),),
        True),
    Row("4-te-identity-alone", post((b"Transfer-Encoding", b"identity"), body=BODY), (501,),
        True),
    Row("4-te-deflate-chunked", post((b"Transfer-Encoding", b"deflate"), TE,
                                     body=chunked(BODY)), (501,), True),
    Row("4-te-chunked-gzip", post((b"Transfer-Encoding", b"chunked, gzip"), body=chunked(BODY),
                                  after=hz.NEXT_OK), *BAD),
    Row("4-te-chunked-chunked", post((b"Transfer-Encoding", b"chunked, chunked"),
                                     body=chunked(BODY)), *BAD),
    # ------------------------------------------------------------ 5 leading zeros
    Row("5-cl-leading-zeros", post((b"Content-Length", b"00037"), body=SMUGGLED), (200,), False,
        (Fwd(method="POST", target="/public/p", body=SMUGGLED, cl="37"),)),
    # ------------------------------------------------------------ 6 underscores
    Row("6-underscore-transfer-encoding", post((b"Transfer_Encoding", b"chunked"), cl(BODY)),
        (200,), False, (Fwd(method="POST", target="/public/p", body=BODY, cl="11",
                            chunked=False, lacks=("Transfer_Encoding",)),)),
    Row("6-underscore-content-length", post((b"Content_Length", b"4"), cl(BODY)), (200,), False,
        (Fwd(method="POST", target="/public/p", body=BODY, cl="11", lacks=("Content_Length",)),)),
    Row("6-underscore-x-foo", get(b"/public/x", (b"X_Foo", b"1")), (200,), False,
        (Fwd(lacks=("X_Foo",)),)),
    # ------------------------------------------------------------ 7 versions and TRACE
    *(Row(f"7-version-{v.decode()}", get(version=v, after=hz.NEXT_OK), (505,), True)
      for v in (b"HTTP/2.0", b"HTTP/1.2", b"HTTP/3.0", b"HTTP/0.9")),
    Row("7-http09-no-version", b"GET /public/x\r\n\r\n", (505,), True),
    Row("7-trace", Req(method=b"TRACE").render(), (405,), None),
    # ------------------------------------------------------------ 8 parser strictness
    Row("8-cl-and-te", post(cl(BODY), TE, body=chunked(SMUGGLED)), *BAD),
    Row("8-te-and-cl", post(TE, (b"Content-Length", b"4"), body=chunked(SMUGGLED)), *BAD),
    Row("8-dup-cl-same", post(cl(BODY), cl(BODY)), *BAD),
    Row("8-dup-cl-different", post(cl(BODY), (b"Content-Length", b"3")), *BAD),
    Row("8-cl-plus", post((b"Content-Length", b"+11")), *BAD),
    Row("8-cl-minus", post((b"Content-Length", b"-5")), *BAD),
    Row("8-cl-nonnumeric", post((b"Content-Length", b"1x")), *BAD),
    Row("8-obs-fold-space", get(b"/public/x", (b"X-A", b"1"), (b" folded", b"x")), *BAD),
    Row("8-obs-fold-tab", get(b"/public/x", (b"X-A", b"1"), (b"\tTransfer-Encoding",
                                                             b"chunked")), *BAD),
    Row("8-bare-lf", get(eol=b"\n"), *BAD),
    Row("8-bare-lf-one-header", b"GET /public/x HTTP/1.1\r\nHost: h.test\nX-A: 1\r\n\r\n", *BAD),
    Row("8-bare-cr", b"GET /public/x HTTP/1.1\r\nHost: h.test\rX-A: 1\r\n\r\n", *BAD),
    Row("8-chunk-size-zz", post(TE, body=chunked(BODY, size=b"zz")), *BAD),
    Row("8-chunk-size-oversized", post(TE, body=chunked(BODY, size=b"FFFFFFFFFFFFFFFFFFFF")),
        *BAD),
    Row("8-chunk-ext-garbage", post(TE, body=chunked(BODY, ext=b";\x01bad\x7f")), *BAD),
    Row("8-chunk-missing-crlf", post(TE, body=chunked(BODY, data_end=b"XX")), *BAD),
    Row("8-nul-in-value", get(b"/public/x", (b"X-A", b"a\x00b")), *BAD),
    Row("8-ctl-in-value", get(b"/public/x", (b"X-A", b"a\x01b")), *BAD),
    Row("8-del-in-value", get(b"/public/x", (b"X-A", b"a\x7fb")), *BAD),
    Row("8-nul-in-name", get(b"/public/x", (b"X-\x00A", b"1")), *BAD),
    Row("8-ctl-in-name", get(b"/public/x", (b"X-\x01A", b"1")), *BAD),
    Row("8-space-before-colon", hdr((b"Host ", b"h.test")), *BAD),
    Row("8-space-before-colon-te", post((b"Transfer-Encoding ", b"chunked"), cl(BODY)), *BAD),
    Row("8-whitespace-in-name", get(b"/public/x", (b"X A", b"1")), *BAD),
    Row("8-missing-name", get(b"/public/x", (b"", b"x")), *BAD),
    # "GET  /x" (two spaces) is parsed on word boundaries, as RFC 9112 §3 allows and nginx
    # does: it is forwarded as "GET /x", never as something else.
    Row("8-line-double-space", line(b"GET  /public/x HTTP/1.1"), (200,), None,
        (Fwd(backend="A", target="/public/x"),)),
    Row("8-line-trailing-space", line(b"GET /public/x HTTP/1.1 "), *BAD),
    Row("8-line-tab", line(b"GET\t/public/x HTTP/1.1"), *BAD),
    Row("8-line-tab-before-version", line(b"GET /public/x\tHTTP/1.1"), *BAD),
    # ------------------------------------------------------------ 11 absolute form
    Row("11-absolute-form", get(b"http://other.test/admin"), (200,), None,
        (Fwd(backend="B", target="/admin", host="other.test"),)),
    Row("11-absolute-form-userinfo", get(b"http://u@other.test/"), (400,), None),
    # ------------------------------------------------------------ 12 Host
    *(Row(f"12-bad-host-{bad.decode() or 'empty'}", get(host=bad), (400,), None)
      for bad in (b"evil.com@good.com", b"evil.com/x?", b"h.test:99999", b"h.test:abc",
                  b"h..test", b".h.test", b"h test", b"")),
    Row("12-two-hosts", hdr((b"Host", b"h.test"), (b"Host", b"h.test")), (400,), None),
    Row("12-two-hosts-different", hdr((b"Host", b"h.test"), (b"Host", b"other.test")), (400,),
        None),
    Row("12-ok-host", get(host=b"h.test"), (200,), False, (Fwd(host="h.test"),)),
    Row("12-ok-host-port", get(host=b"h.test:8080"), (200,), False, (Fwd(),)),
    Row("12-ok-host-trailing-dot", get(host=b"h.test."), (200,), False, (Fwd(),)),
    Row("12-ok-host-ipv6", get(host=b"[::1]:8080"), (404,), False),
    Row("12-ok-host-ipv4", get(host=b"127.0.0.1"), (404,), False),
    # ------------------------------------------------------------ 13 fragments and ;params
    Row("13-fragment", get(b"/admin#x"), (400,), None),
    Row("13-fragment-public", get(b"/public/x#y"), (400,), None),
    Row("13-fragment-dotdot", get(b"/#/../admin"), (400,), None),
    Row("13-fragment-dotdot-public", get(b"/public/#/../admin"), (400,), None),
    Row("13-path-params", get(b"/admin;jsessionid=x"), (400,), None),
    Row("13-path-params-public", get(b"/public;jsessionid=x"), (400,), None),
    Row("13-path-params-segment", get(b"/public/a;x=1/b"), (400,), None),
    # ------------------------------------------------------------ 19 forwarding headers
    Row("19-forwarded-headers-replaced",
        get(b"/public/x", (b"X-Forwarded-For", b"6.6.6.6"), (b"Forwarded", b"for=6.6.6.6"),
            (b"X-Real-IP", b"6.6.6.6")), (200,), False,
        (Fwd(exact=(("X-Forwarded-For", ("127.0.0.1",)), ("X-Real-IP", ("127.0.0.1",)),
                    ("Forwarded", ("for=127.0.0.1;host=h.test;proto=http",))),
             no_value=("6.6.6.6",)),)),
    # RFC 7239: a host with a port is not a token, so it is a quoted-string.
    Row("19-forwarded-host-as-received", get(b"/public/x", host=b"h.test:8080"), (200,), False,
        (Fwd(exact=(("Forwarded", ('for=127.0.0.1;host="h.test:8080";proto=http',)),)),)),
]


@dataclass
class Rig:
    port: int
    backends: dict[str, hz.RecordingBackend] = field(default_factory=dict)

    def logged(self) -> list[hz.Logged]:
        out = [entry for b in self.backends.values() for entry in b.log]
        return sorted(out, key=lambda e: e.id)

    def errors(self) -> list[str]:
        return [e for b in self.backends.values() for e in b.errors]


def two_backend_config(port: int, a: int, b: int):
    rules = (rule(backend(a, name="default/a:80"), path="/public", hostname="h.test",
                  route="default/ra"),
             rule(backend(b, name="default/b:80"), path="/", hostname="other.test",
                  route="default/rb"))
    return config(port_config(port, listeners=(
        ListenerRoutes(gateway="default/gw", listener="l", hostname="", rules=rules),)))


async def make_rig(proxy: Proxy) -> AsyncIterator[Rig]:
    a = hz.RecordingBackend("A").start()
    b = hz.RecordingBackend("B").start()
    port = free_port()
    await proxy.apply(two_backend_config(port, a.port, b.port))
    try:
        yield Rig(port, {"A": a, "B": b})
    finally:
        a.stop()
        b.stop()


@pytest_asyncio.fixture
async def rig(proxy: Proxy) -> AsyncIterator[Rig]:
    async for r in make_rig(proxy):
        yield r


async def read_one(client: Client) -> int:
    try:
        async with asyncio.timeout(5):
            return (await client.read_response()).status
    except TimeoutError:
        return -1  # no response within 5 s


async def rest_until_eof(client: Client, timeout: float = 5.0) -> tuple[bytes, bool]:
    got = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while data := await client.reader.read(1 << 16):
                got += data
        return bytes(got), True
    except (ConnectionError, OSError):
        return bytes(got), True
    except TimeoutError:
        return bytes(got), False


def check_fwd(got: hz.Logged, want: Fwd, i: int) -> None:
    p = got.req
    where = f"forwarded request {i}: {p}"
    assert got.backend == want.backend, where
    assert (p.method, p.target) == (want.method, want.target), where
    if want.body is not None:
        assert p.body == want.body, where
    if want.cl is not None:
        assert p.all("Content-Length") == [want.cl], where
    if want.chunked is not None:
        assert (p.all("Transfer-Encoding") == ["chunked"]) is want.chunked, where
        assert len(p.all("Transfer-Encoding")) <= 1 and len(p.all("Content-Length")) <= 1, where
    assert not (p.all("Transfer-Encoding") and p.all("Content-Length")), where
    for name, values in want.exact:
        assert tuple(p.all(name)) == values, where
    names = {n.lower() for n, _ in p.headers}
    for name in want.lacks:
        assert name.lower() not in names, where
    for needle in want.no_value:
        assert not any(needle in v for _, v in p.headers), where
    if want.host is not None:
        assert p.all("Host") == [want.host], where


async def run_row(rig: Rig, row: Row) -> None:
    client = await Client.open(rig.port)
    try:
        with contextlib.suppress(ConnectionError):
            await client.send(row.raw)
        statuses = [await read_one(client) for _ in row.status]
        for got, want in zip(statuses, row.status, strict=True):
            ok = got in want if isinstance(want, tuple) else got == want
            assert ok, f"statuses {statuses}, expected {row.status}"
        fwd = list(row.fwd)
        if row.close is True:
            rest, eof = await rest_until_eof(client)
            assert eof, "the connection stays open"
            assert rest == b"", f"more bytes after the expected responses: {rest[:300]!r}"
        elif row.close is False:
            with contextlib.suppress(ConnectionError):
                await client.send(CONTROL)
            assert await read_one(client) == 200, "the connection is not usable any more"
            fwd.append(Fwd(target="/public/control"))
        logged = rig.logged()
        assert not rig.errors(), rig.errors()
        assert len(logged) == len(fwd), f"backends received {[e.req for e in logged]}"
        for i, (got, want) in enumerate(zip(logged, fwd, strict=True)):
            check_fwd(got, want, i)
        raw = {k: bytes(v) for b in rig.backends.values() for k, v in b.raw.items()}
        for data in raw.values():
            _, err = hz.parse_requests(data)
            assert err is None, f"backend bytes {data!r}: {err}"
    finally:
        await client.close()


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
async def test_framing_table(rig: Rig, row: Row) -> None:
    await run_row(rig, row)


# ------------------------------------------------------------ rows that need more than bytes


async def test_1_response_connection_content_length_stays_framed(proxy: Proxy) -> None:
    """A backend answering ``Connection: content-length`` + ``Content-Length: 5``: the
    client still gets Content-Length: 5, and the connection serves the next request."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: content-length\r\n"
                         b"Content-Length: 5\r\n\r\nhello")
            await writer.drain()

    server, bport = await raw_backend(handler)
    port = free_port()
    await proxy.apply(config(port_config(port, rule(backend(bport)))))
    client = await Client.open(port)
    try:
        for _ in range(2):
            async with asyncio.timeout(5):
                resp = await client.request("GET", "/x", host="h.test")
            assert resp.status == 200 and resp.complete, resp
            assert resp.all("Content-Length") == ["5"], resp.headers
            assert resp.body == b"hello"
            assert not resp.all("Transfer-Encoding"), resp.headers
    finally:
        await client.close()
        server.close()


async def test_6_underscores_in_headers_setting_keeps_them() -> None:
    """``Proxy(underscores_in_headers=True)`` forwards names with ``_`` unchanged."""
    proxy = Proxy(registry=CollectorRegistry(), drain_seconds=2.0, underscores_in_headers=True)
    try:
        async for r in make_rig(proxy):
            await run_row(r, Row("6-kept", get(b"/public/x", (b"X_Foo", b"1")), (200,), False,
                                 (Fwd(exact=(("X_Foo", ("1",)),)),)))
    finally:
        await proxy.close(0.0)


async def test_18_http10_expect_gets_no_100_continue(rig: Rig) -> None:
    raw = post((b"Expect", b"100-continue"), cl(BODY), version=b"HTTP/1.0")
    client = await Client.open(rig.port)
    try:
        await client.send(raw)
        rest, eof = await rest_until_eof(client)
    finally:
        await client.close()
    assert eof
    assert b" 100 " not in rest.split(b"\r\n", 1)[0] and b"100 Continue" not in rest, rest
    assert rest.startswith(b"HTTP/1.") and rest.split(b" ")[1] == b"200", rest[:200]
    assert [e.req.body for e in rig.logged()] == [BODY]


async def test_18_http11_expect_gets_100_continue(rig: Rig) -> None:
    head = (b"POST /public/p HTTP/1.1\r\nHost: h.test\r\nExpect: 100-continue\r\n"
            b"Content-Length: 11\r\n\r\n")
    client = await Client.open(rig.port)
    try:
        await client.send(head)
        async with asyncio.timeout(10):
            interim = await client.reader.readuntil(b"\r\n\r\n")
        assert interim.split(b" ")[1] == b"100", interim
        await client.send(BODY)
        assert await read_one(client) == 200
    finally:
        await client.close()
    assert [e.req.body for e in rig.logged()] == [BODY]
