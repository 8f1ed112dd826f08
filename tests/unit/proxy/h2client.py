"""Test helpers for HTTP/2: an h2-library client over TLS, raw frames, HTTPS configs.

The client behaves as Go's ``http2.Transport`` does in the conformance suite: ALPN
``h2``, SNI = server name, ``:authority`` = host, and it completes the streams a
graceful GOAWAY leaves open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from aiohttp import web

from rauta.model.config import TLSCertificate
from rauta.proxy import Proxy

from .conftest import config, free_port, port_config

CERT = "default/cert"


def make_pems(tmp: Path) -> dict[str, tuple[bytes, bytes]]:
    """One self-signed ECDSA certificate (example.org), as the Secret ``CERT``."""
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
