"""HTTP/2 client connections: TLS connections whose ALPN chose ``h2`` (RFC 9113).

Role: one asyncio Protocol per HTTP/2 connection, driving the sans-IO ``h2`` library
(python-hyper) for framing, HPACK, stream states and flow-control windows. Each stream
is one request: it is checked and routed by ``request.decide`` exactly as an HTTP/1
request is, then answered by the proxy or handed to an ``Exchange``, for which the
stream (``H2Stream``) is the ``Downstream``. Upstream stays HTTP/1.1. Every HTTP/2
connection and stream state of rauta lives here:

- connection: ``OPEN`` → (``DRAINING``: GOAWAY sent, streams above its last stream id
  refused with REFUSED_STREAM, closed when the last stream ends) → ``CLOSED``.
- response of a stream: ``RESP_NONE`` → ``RESP_HELD`` (head built, sent with the first
  body bytes, at a flush, or with END_STREAM when there is no body) → ``RESP_STARTED`` →
  ``RESP_DONE`` (END_STREAM queued); or reset. A stream leaves the connection when its
  response is done (and its request is complete, else it is reset with NO_ERROR: the
  rest of the body is not wanted, RFC 9113 §8.1) or when either side resets it.

Rules:
- Settings: at most ``MAX_STREAMS`` concurrent streams, ``STREAM_WINDOW`` per stream,
  header lists up to twice ``max_head_bytes`` (a larger one ends the connection; above
  ``max_head_bytes`` or ``max_headers`` fields → 431 on the stream), no server push,
  frames up to 16 KiB: a frame head announcing more ends the connection at once
  (FRAME_SIZE_ERROR), before any of its body is buffered.
- Malformed messages (the h2 library's checks: pseudo-headers, field syntax, uppercase
  or connection-specific names, ``te`` other than ``trailers``, Host vs ``:authority``,
  Content-Length against the DATA received) and every other protocol error end the
  connection with GOAWAY and the library's error code (RFC 9113 §5.4.1 allows treating
  a stream error so). Then the connection closes; nothing crashes.
- Request checks: the same as HTTP/1 (``request.decide``, ``request.method_refusal``):
  ``:path`` must be origin-form or ``*`` (400), ``:authority`` (else ``Host``) must be a
  valid host (400), ``:scheme`` is http or https (400), CONNECT → 400, TRACE → 405
  unless ``allow_trace``, 421 when the SNI name and the authority select different
  listeners, header names with ``_`` dropped unless ``underscores_in_headers``, cookie
  crumbs joined with "; " (``headers.h2_request_headers``). ``expect: 100-continue`` is
  answered with an informational 100 once the request is forwarded.
- Request body framing upstream: the client's Content-Length; else, when the whole body
  (END_STREAM) arrived in the same read as the head, its length; else chunked.
- Upload flow control: the connection window (``CONN_WINDOW``) is handed back as DATA
  arrives; a stream's window only as the upstream takes the bytes: while the Exchange
  has paused the upload, nothing is acknowledged on that stream, so a stream holds at
  most ``STREAM_WINDOW`` unforwarded bytes and never blocks the others.
- Download flow control: response bytes are queued per stream and sent as the peer's
  connection and stream windows allow (on WINDOW_UPDATE and SETTINGS); above ``HIGH``
  queued bytes the Exchange stops reading its backend, below ``LOW`` it reads again.
  While the transport's write buffer is full (``pause_writing``) no DATA is sent, every
  download is paused and the socket is not read.
- ``fail`` before the head left → a proxy-made error response on that stream; after →
  RST_STREAM(INTERNAL_ERROR): a truncated body never ends with END_STREAM.
- A client RST_STREAM cancels the stream's Exchange. More than ``RESET_BUDGET`` resets
  beyond the streams completed (rapid reset, CVE-2023-44487) → GOAWAY(ENHANCE_YOUR_CALM).
- A client GOAWAY ends the connection: the h2 library sends nothing after it.
- Timers (one sweep per listener, ``check_timers``): ``idle_timeout`` with no stream
  open (PINGs do not keep a connection alive), ``body_timeout`` per stream (408 before
  the head, else reset), ``send_timeout`` for a stream whose window stays shut and for
  a transport that takes no bytes, and the Exchange's response-head deadline.
- Every answered stream is recorded in the request metrics like an HTTP/1 request.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import struct
from typing import TYPE_CHECKING

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from rauta.model.routing import Decision
from rauta.proxy import headers as hdr
from rauta.proxy.exchange import Exchange
from rauta.proxy.request import ALLOW, Request, decide, method_refusal

if TYPE_CHECKING:
    from rauta.proxy.server import Listener

log = logging.getLogger(__name__)

OPEN, DRAINING, CLOSED = "open", "draining", "closed"
RESP_NONE, RESP_HELD, RESP_STARTED, RESP_DONE = 0, 1, 2, 3
MAX_STREAMS = 100
STREAM_WINDOW = 256 * 1024  # request bytes one stream may have unforwarded
CONN_WINDOW = 4 * 1024 * 1024
HIGH, LOW = 256 * 1024, 64 * 1024  # queued response bytes of a stream: pause / resume
RESET_BUDGET = 200
_LOOKAHEAD = 64  # events scanned for a request body that ended in the same read
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
_TEXT = ("content-type", "text/plain; charset=utf-8")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # an empty body is sent as length 0
_Errors = (h2.exceptions.ProtocolError, KeyError, ValueError)

__all__ = ["H2Connection", "H2Stream"]


class H2Stream:
    """One request and its response on an HTTP/2 connection: an Exchange's Downstream."""

    __slots__ = ("conn", "sid", "req", "exchange", "decision", "status", "resp", "head",
                 "out", "buffered", "ending", "upload_paused", "unacked", "to_ack",
                 "download_paused", "last_data", "blocked_since", "closed")

    def __init__(self, conn: H2Connection, sid: int, req: Request) -> None:
        self.conn = conn
        self.sid = sid
        self.req = req
        self.exchange: Exchange | None = None
        self.decision: Decision | None = None
        self.status = 0
        self.resp = RESP_NONE
        self.head: list[tuple[bytes, bytes]] | None = None
        self.out: collections.deque[memoryview] = collections.deque()
        self.buffered = 0  # bytes in ``out``
        self.ending = False  # end_response came: END_STREAM once ``out`` is sent
        self.upload_paused = False
        self.unacked = 0  # request bytes taken while the upload was paused
        self.to_ack = 0  # request bytes forwarded, not yet handed back as window
        self.download_paused = False
        self.last_data = req.t0
        self.blocked_since = 0.0
        self.closed = False

    # ------------------------------------------------------------------ Downstream

    def start_response(self, status: int, reason: str, headers: hdr.Headers, framing: str,
                       length: int | None) -> None:
        if self.closed:
            return
        block = hdr.h2_response_headers(status, headers)
        if length is not None and (framing == "length" or self.req.method == "HEAD"):
            block.append((b"content-length", str(length).encode("ascii")))
        self.status = status
        self.head = block
        self.resp = RESP_HELD

    def send_body(self, data: bytes) -> None:
        if self.closed or not data:
            return
        self.out.append(memoryview(data))
        self.buffered += len(data)
        conn = self.conn
        conn.pump(self)
        if self.buffered > HIGH and not self.download_paused and self.exchange is not None:
            self.download_paused = True
            self.exchange.pause_download()
        conn.write_out()

    def flush(self) -> None:
        if self.resp == RESP_HELD and not self.closed:
            self.conn.pump(self, head=True)
            self.conn.write_out()

    def end_response(self) -> None:
        self.exchange = None
        if self.closed:
            return
        self.ending = True
        self.conn.pump(self)
        self.conn.write_out()

    def fail(self, status: int, text: str) -> None:
        self.exchange = None
        if self.closed:
            return
        if self.resp in (RESP_NONE, RESP_HELD):
            self.head = None  # the head never left: a clean error is still possible
            self.out.clear()
            self.buffered = 0
            self.resp = RESP_NONE
            self.respond(status, text)
        else:
            self.status = status
            self.conn.reset(self, ErrorCodes.INTERNAL_ERROR, record=True)
        self.conn.write_out()

    def pause_upload(self) -> None:
        self.upload_paused = True

    def resume_upload(self) -> None:
        self.upload_paused = False
        if self.unacked and not self.closed:
            size, self.unacked = self.unacked, 0
            self.conn.ack(self, size)
            self.conn.write_out()

    # ------------------------------------------------------------------ proxy-made answers

    def respond(self, status: int, text: str, headers: hdr.Headers | None = None) -> None:
        """Answer with a proxy-made response (nothing of a response was sent yet)."""
        assert self.resp == RESP_NONE
        if self.exchange is not None:
            self.exchange.cancel()
            self.exchange = None
        payload = (text + "\n").encode("utf-8") if text else b""
        extra = list(headers or ())
        if payload:
            extra.append(_TEXT)
        extra.append(("content-length", str(len(payload))))
        self.status = status
        self.head = hdr.h2_response_headers(status, extra)
        self.resp = RESP_HELD
        if payload and self.req.method != "HEAD":
            self.out.append(memoryview(payload))
            self.buffered += len(payload)
        self.ending = True
        self.conn.pump(self)


class H2Connection(asyncio.Protocol):
    """One HTTP/2 client connection (see the module doc for the states and rules)."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.rt = rt = listener.rt
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.client_port = 0
        self.sni: str | None = None
        self.state = OPEN
        self.streams: dict[int, H2Stream] = {}
        self.write_paused = False
        self.stalled_since = 0.0
        self.idle_since = self.loop.time()
        self.goaway_last = 0
        self.reset_budget = RESET_BUDGET
        self.consumed = 0  # DATA bytes received, not yet handed back on the connection
        self._preface_at = 0  # bytes of the client connection preface seen, then frames
        self._frame_head = b""
        self._frame_left = 0
        limit = 2 * rt.max_head_bytes
        S = h2.settings.SettingCodes
        conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None, normalize_inbound_headers=False))
        conn.local_settings = h2.settings.Settings(client=False, initial_values={
            S.MAX_CONCURRENT_STREAMS: MAX_STREAMS, S.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            S.MAX_HEADER_LIST_SIZE: limit, S.ENABLE_PUSH: 0})
        conn.decoder.max_header_list_size = limit
        self.h2 = conn

    @property
    def closed(self) -> bool:
        return self.state == CLOSED

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        rt = self.rt
        rt.connections += 1
        self.listener.connections.add(self)
        rt.metrics.active_connections(self.listener.port).inc()
        if rt.connections > rt.max_connections:
            self.abort()  # over the cap: no request is read from it
            return
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client_ip, self.client_port = str(peer[0]), int(peer[1])
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            self.sni = getattr(sslobj, "rauta_sni", None)
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONN_WINDOW - 65535)
        self.write_out()
        if self.listener.draining:
            self.shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self.rt.connections -= 1
        self.listener.connections.discard(self)
        self.rt.metrics.active_connections(self.listener.port).dec()
        self._cancel_all()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.state == CLOSED:
            return
        code = self._frame_check(data)
        if code is not None:
            log.debug("HTTP/2 bad preface or oversized frame from %s", self.client_ip)
            with contextlib.suppress(*_Errors):
                self.h2.close_connection(code)
            self._end_connection()
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.debug("HTTP/2 protocol error from %s: %s", self.client_ip, exc)
            self._end_connection()  # the library queued its GOAWAY
            return
        try:
            self._handle(events)
        except Exception:
            log.exception("HTTP/2 connection error")
            with contextlib.suppress(*_Errors):
                self.h2.close_connection(ErrorCodes.INTERNAL_ERROR)
            self._end_connection()
            return
        self.write_out()

    def _frame_check(self, data: bytes) -> ErrorCodes | None:
        """PROTOCOL_ERROR for a wrong client preface, FRAME_SIZE_ERROR when ``data``
        begins a frame longer than SETTINGS_MAX_FRAME_SIZE, else None. (Frame heads are
        followed here because the h2 library buffers a whole frame, up to 16 MiB, before
        it checks the length.)"""
        pos, size = 0, len(data)
        if self._preface_at < len(_PREFACE):
            pos = min(len(_PREFACE) - self._preface_at, size)
            if data[:pos] != _PREFACE[self._preface_at:self._preface_at + pos]:
                return ErrorCodes.PROTOCOL_ERROR
            self._preface_at += pos
        while pos < size:
            if self._frame_left:
                step = min(self._frame_left, size - pos)
                self._frame_left -= step
                pos += step
                continue
            part = data[pos:pos + 9 - len(self._frame_head)]
            self._frame_head += part
            pos += len(part)
            if len(self._frame_head) < 9:
                break
            length = int.from_bytes(self._frame_head[:3], "big")
            self._frame_head = b""
            if length > self.h2.max_inbound_frame_size:
                return ErrorCodes.FRAME_SIZE_ERROR
            self._frame_left = length
        return None

    def eof_received(self) -> bool | None:
        return False  # HTTP/2 has no half-closed connections: close

    def pause_writing(self) -> None:
        self.write_paused = True
        self.stalled_since = self.loop.time()
        if self.transport is not None and self.state != CLOSED:
            self.transport.pause_reading()
        for s in self.streams.values():
            if s.exchange is not None and not s.download_paused:
                s.download_paused = True
                s.exchange.pause_download()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.transport is not None and self.state != CLOSED:
            self.transport.resume_reading()
        for s in list(self.streams.values()):
            self.pump(s)
        self.write_out()

    # ------------------------------------------------------------------ h2 events

    def _handle(self, events: list[h2.events.Event]) -> None:
        ev_ = h2.events
        for i, ev in enumerate(events):
            if self.state == CLOSED:
                return
            if isinstance(ev, ev_.DataReceived):
                self._on_data(ev)
            elif isinstance(ev, ev_.RequestReceived):
                self._on_request(ev, events, i)
            elif isinstance(ev, ev_.StreamEnded):
                self._on_end(ev.stream_id)
            elif isinstance(ev, ev_.StreamReset):
                self._on_reset(ev.stream_id)
            elif isinstance(ev, ev_.WindowUpdated):
                if ev.stream_id:
                    s = self.streams.get(ev.stream_id)
                    if s is not None:
                        self.pump(s)
                else:
                    self._pump_all()
            elif isinstance(ev, ev_.RemoteSettingsChanged):
                self._pump_all()
            elif isinstance(ev, ev_.ConnectionTerminated):
                self._end_connection()  # the client's GOAWAY: h2 sends nothing more
                return

    def _on_request(self, ev: h2.events.RequestReceived, events: list[h2.events.Event],
                    index: int) -> None:
        sid = ev.stream_id
        assert sid is not None
        if self.state != OPEN and sid > self.goaway_last:
            self._reset_id(sid, ErrorCodes.REFUSED_STREAM)
            return
        rt = self.rt
        pseudo, headers, size, count = hdr.h2_request_headers(
            ev.headers or (), underscores=rt.underscores_in_headers)  # type: ignore[arg-type]
        req = Request()
        req.version = "2"
        req.method = pseudo.get(":method", "GET")
        req.url = pseudo.get(":path", "").encode("latin-1")
        req.headers = headers
        req.host = pseudo.get(":authority")
        if req.host is None:
            req.host = hdr.get(headers, "host")
        req.hosts = 0 if req.host is None else 1
        req.config = rt.config
        req.t0 = self.loop.time()
        req.headers_done = True
        req.expect = (hdr.get(headers, "expect") or "").strip().lower() == "100-continue"
        length = hdr.content_length(headers)  # the library checked its syntax
        if length is None:
            length = 0 if ev.stream_ended else self._body_in_read(events, index, sid)
            req.chunked = length is None
            if length == 0 and req.method not in _BODY_METHODS:
                length = None  # a GET without a body has no framing upstream either
        req.length = length
        req.has_body = req.chunked or bool(length)
        s = H2Stream(self, sid, req)
        self.streams[sid] = s
        try:
            if size > rt.max_head_bytes or count > rt.max_headers:
                s.respond(431, "request header fields too large")
            elif (bad := method_refusal(req.method, rt.allow_trace)) is not None:
                s.respond(bad[0], bad[1], headers=ALLOW if bad[0] == 405 else None)
            elif pseudo.get(":scheme", "https").lower() not in ("http", "https"):
                s.respond(400, "bad request scheme")
            else:
                self._dispatch(s)
        except Exception:
            log.exception("proxy error")
            if s.resp == RESP_NONE:
                s.respond(500, "internal proxy error")
            elif not s.closed:
                self.reset(s, ErrorCodes.INTERNAL_ERROR)

    @staticmethod
    def _body_in_read(events: list[h2.events.Event], index: int, sid: int) -> int | None:
        """The request body's length when its END_STREAM is among the same read's events."""
        total = 0
        for ev in events[index + 1:index + 1 + _LOOKAHEAD]:
            if getattr(ev, "stream_id", None) != sid:
                continue
            if isinstance(ev, h2.events.DataReceived):
                total += len(ev.data or b"")
            elif isinstance(ev, h2.events.StreamEnded):
                return total
            elif not isinstance(ev, h2.events.TrailersReceived):
                return None
        return None

    def _dispatch(self, s: H2Stream) -> None:
        req, listener = s.req, self.listener
        decision, view = decide(self.rt, req, port=listener.port, address=listener.address,
                                scheme=listener.scheme, sni=self.sni,
                                client_ip=self.client_ip, client_port=self.client_port,
                                origin_only=True)
        s.decision = decision
        if decision.kind == "forward":
            assert view is not None
            exch = Exchange(s, self.rt, req, decision, view, client_ip=self.client_ip,
                            scheme=listener.scheme, loop=self.loop)
            s.exchange = exch
            exch.start()
            if req.expect and not req.complete and s.exchange is exch and not s.closed:
                with contextlib.suppress(*_Errors):
                    self.h2.send_headers(s.sid, [(b":status", b"100")])
        elif decision.kind == "redirect":
            extra = hdr.apply_modifiers([("location", decision.location or "/")],
                                        decision.response_headers)
            s.respond(decision.status, "", headers=extra)
        else:
            s.respond(decision.status, decision.reason or hdr.reason_phrase(decision.status))

    def _on_data(self, ev: h2.events.DataReceived) -> None:
        size = ev.flow_controlled_length or 0
        self.consumed += size
        if self.consumed >= CONN_WINDOW // 2:
            with contextlib.suppress(*_Errors):
                self.h2.increment_flow_control_window(self.consumed)
            self.consumed = 0
        s = self.streams.get(ev.stream_id or 0)
        if s is None or s.closed:
            return
        s.last_data = self.loop.time()
        exch = s.exchange
        if exch is None:
            return  # the answer is made: the rest is not wanted (the stream is reset)
        if ev.data:
            exch.request_body(ev.data)
        if s.upload_paused:
            s.unacked += size
        else:
            self.ack(s, size)

    def ack(self, s: H2Stream, size: int) -> None:
        """Hand ``size`` forwarded request bytes back to the stream's window (batched)."""
        s.to_ack += size
        if s.to_ack >= STREAM_WINDOW // 4 and not s.req.complete and not s.closed:
            with contextlib.suppress(*_Errors):
                self.h2.increment_flow_control_window(s.to_ack, s.sid)
            s.to_ack = 0

    def _on_end(self, sid: int) -> None:
        s = self.streams.get(sid)
        if s is None or s.closed:
            return
        s.req.complete = True
        if s.exchange is not None:
            s.exchange.request_end()

    def _on_reset(self, sid: int) -> None:
        s = self.streams.get(sid)
        if s is None:
            return
        self._drop(s)
        self.reset_budget -= 1
        if self.reset_budget < 0:
            log.debug("HTTP/2 reset flood from %s", self.client_ip)
            with contextlib.suppress(*_Errors):
                self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM)
            self._end_connection()

    # ------------------------------------------------------------------ sending

    def pump(self, s: H2Stream, *, head: bool = False) -> None:
        """Send what the stream has queued, as far as the windows allow."""
        if s.closed or self.state == CLOSED:
            return
        conn = self.h2
        try:
            if s.resp == RESP_HELD and (head or s.ending or s.out):
                assert s.head is not None
                end = s.ending and not s.out
                conn.send_headers(s.sid, s.head, end_stream=end)
                s.head = None
                s.resp = RESP_STARTED
                if end:
                    self._ended(s)
                    return
            if s.resp != RESP_STARTED:
                return
            while s.out and not self.write_paused:
                window = min(conn.local_flow_control_window(s.sid), conn.max_outbound_frame_size)
                if window <= 0:
                    break
                piece = s.out[0]
                if len(piece) > window:
                    s.out[0] = piece[window:]
                    piece = piece[:window]
                else:
                    s.out.popleft()
                s.buffered -= len(piece)
                end = s.ending and not s.out
                conn.send_data(s.sid, piece, end_stream=end)
                if end:
                    self._ended(s)
                    return
            if s.out:
                s.blocked_since = s.blocked_since or self.loop.time()
            else:
                s.blocked_since = 0.0
                if s.ending:
                    conn.end_stream(s.sid)
                    self._ended(s)
                    return
        except _Errors as exc:
            log.debug("HTTP/2 stream %d cannot send: %s", s.sid, exc)
            self.reset(s, ErrorCodes.INTERNAL_ERROR)
            return
        if (s.download_paused and s.buffered <= LOW and not self.write_paused
                and s.exchange is not None):
            s.download_paused = False
            s.exchange.resume_download()

    def _pump_all(self) -> None:
        for s in list(self.streams.values()):
            if s.out:
                self.pump(s)

    def _ended(self, s: H2Stream) -> None:
        """END_STREAM is queued: record the request, let the stream go."""
        s.resp = RESP_DONE
        self._record(s)
        self.reset_budget = min(RESET_BUDGET, self.reset_budget + 1)
        if not s.req.complete:
            self._reset_id(s.sid, ErrorCodes.NO_ERROR)  # the rest of the body is not wanted
        self._drop(s)

    def reset(self, s: H2Stream, code: int, *, record: bool = False) -> None:
        """Reset the stream (RST_STREAM ``code``); its Exchange is dropped."""
        if s.closed:
            return
        if record:
            self._record(s)
        self._reset_id(s.sid, code)
        self._drop(s)

    def _reset_id(self, sid: int, code: int) -> None:
        with contextlib.suppress(*_Errors):
            self.h2.reset_stream(sid, code)

    def _drop(self, s: H2Stream) -> None:
        s.closed = True
        if self.streams.pop(s.sid, None) is not None and not self.streams:
            self.idle_since = self.loop.time()
        if s.exchange is not None:
            s.exchange.cancel()
            s.exchange = None
        s.out.clear()
        s.buffered = 0

    def _record(self, s: H2Stream) -> None:
        d = s.decision
        rule = d.rule if d is not None else None
        backend = d.backend if d is not None else None
        self.rt.metrics.observe_request(
            self.listener.port, rule.route if rule else "", rule.rule_index if rule else -1,
            backend.name if backend else "", s.status, self.loop.time() - s.req.t0)

    def write_out(self) -> None:
        """Write what the h2 library queued; a draining connection closes when idle."""
        transport = self.transport
        if transport is None or self.state == CLOSED:
            return
        data = self.h2.data_to_send()
        if data:
            transport.write(data)
        if self.state == DRAINING and not self.streams:
            self._close_transport()

    # ------------------------------------------------------------------ timers, closing

    def check_timers(self, now: float) -> None:
        """Called by the listener's sweep: enforce every timer of this connection."""
        if self.state == CLOSED:
            return
        rt = self.rt
        for s in list(self.streams.values()):
            if s.exchange is not None:
                s.exchange.check_deadline(now)
            if s.closed:
                continue
            if s.blocked_since and now - s.blocked_since > rt.send_timeout:
                self.reset(s, ErrorCodes.CANCEL)  # the client opens no window for it
            elif (s.exchange is not None and not s.req.complete and not s.upload_paused
                  and now - s.last_data > rt.body_timeout):
                if s.resp == RESP_NONE:
                    s.respond(408, "request body timeout")
                else:
                    self.reset(s, ErrorCodes.CANCEL)
        if self.write_paused and now - self.stalled_since > rt.send_timeout:
            self.abort()  # the client takes no bytes at all
        elif not self.streams and now - self.idle_since > rt.idle_timeout:
            self.close()
        else:
            self.write_out()

    def shutdown(self) -> None:
        """GOAWAY (no new streams); close when the streams in flight have ended."""
        if self.state != OPEN or self.transport is None:
            return
        self.write_out()
        self.state = DRAINING
        self.goaway_last = self.h2.highest_inbound_stream_id
        # Built here: the h2 library would refuse to send anything after its own GOAWAY.
        frame = GoAwayFrame(stream_id=0, last_stream_id=self.goaway_last,
                            error_code=ErrorCodes.NO_ERROR)
        self.transport.write(frame.serialize())
        self.write_out()

    def close(self) -> None:
        """GOAWAY(NO_ERROR), drop every stream, close."""
        if self.state != CLOSED and self.transport is not None:
            with contextlib.suppress(*_Errors):
                self.h2.close_connection(ErrorCodes.NO_ERROR)
        self._end_connection()

    def abort(self) -> None:
        """Drop the connection at once (reset): nothing in flight looks complete."""
        self._cancel_all()
        self.state = CLOSED
        if self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            self.transport.abort()

    def _end_connection(self) -> None:
        """Write what is queued (a GOAWAY), cancel every stream, close."""
        if self.transport is not None and self.state != CLOSED:
            data = self.h2.data_to_send()
            if data:
                self.transport.write(data)
        self._cancel_all()
        self._close_transport()

    def _close_transport(self) -> None:
        self.state = CLOSED
        if self.transport is not None:
            self.transport.close()

    def _cancel_all(self) -> None:
        for s in list(self.streams.values()):
            self._drop(s)
