"""HTTP/2 client connections: TLS connections whose ALPN chose ``h2`` (RFC 9113).

Role: one asyncio Protocol per HTTP/2 connection, driving the sans-IO ``h2`` library
(python-hyper: framing, HPACK, stream states, windows). Each stream is one request,
built by ``request.h2_request`` and checked and routed by ``request.decide`` as an
HTTP/1 request is, then answered by the proxy or handed to an ``Exchange``, for which
the stream (``H2Stream``) is the ``Downstream``; upstream stays HTTP/1.1. Every HTTP/2
connection and stream state of rauta lives here:

- connection: ``OPEN`` → (``DRAINING``: our GOAWAY sent, streams above its last id
  refused with REFUSED_STREAM, closed when the last stream ends) → ``CLOSED``.
- a stream's response: ``RESP_NONE`` → ``RESP_HELD`` (head built; sent with the first
  body bytes, at a flush, or with END_STREAM when there is no body) → ``RESP_STARTED`` →
  ``RESP_DONE`` (END_STREAM queued; a request still incomplete is then reset with
  NO_ERROR, RFC 9113 §8.1), or reset by either side. Then the stream is dropped.

Rules:
- Settings: ``MAX_STREAMS`` concurrent streams, ``STREAM_WINDOW`` per stream, no push,
  header lists up to twice ``max_head_bytes`` (431 on the stream above it or above
  ``max_headers`` fields), frames up to 16 KiB: a frame head announcing more, or a
  wrong preface, ends the connection before anything of it is buffered.
- Malformed messages (the h2 library's checks: pseudo-headers, field syntax, names, ``te``,
  Host vs ``:authority``, DATA against Content-Length) and every other protocol error
  end the connection with the library's GOAWAY (RFC 9113 §5.4.1 allows it for a stream
  error); a body that HEADERS end short of Content-Length (unseen by the library) resets
  the stream (PROTOCOL_ERROR) and its Exchange. Nothing crashes.
- ``expect: 100-continue`` gets an informational 100 once the request is forwarded.
- Upload flow control: the connection window (``CONN_WINDOW``) is reopened as DATA
  arrives, a stream's window only as the upstream takes the bytes (nothing while the
  Exchange has paused the upload): a stream holds at most ``STREAM_WINDOW`` unforwarded
  bytes and never blocks the others.
- Download flow control: response bytes are queued per stream and sent as the peer's
  windows allow; above ``HIGH`` queued bytes the Exchange stops reading its backend,
  below ``LOW`` it reads again. While the transport's buffer is full (``pause_writing``)
  no DATA is sent, every download is paused and the socket is not read.
- ``fail`` before the head left → a proxy-made error response on the stream; after →
  RST_STREAM(INTERNAL_ERROR): a truncated body never ends with END_STREAM.
- A client RST_STREAM cancels the stream's Exchange; ``RESET_BUDGET`` resets beyond the
  streams completed (rapid reset) → GOAWAY(ENHANCE_YOUR_CALM); a client GOAWAY closes.
- Timers (the listener's sweep calls ``check_timers``): ``idle_timeout`` with no stream
  (PINGs keep nothing alive), ``body_timeout`` per stream (408 before the head, else a
  reset), ``send_timeout`` for a stream whose window stays shut and for a transport that
  takes nothing, and the Exchange's response-head deadline.
- Metrics, access-log records (``request.record``) and the warning of every proxy-made
  5xx (``request.log_5xx``) come from the functions HTTP/1 requests go through.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import struct
from typing import TYPE_CHECKING, cast

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
from rauta.proxy.request import ALLOW, Request, decide, h2_request, log_5xx, record

if TYPE_CHECKING:
    from rauta.proxy.server import Listener

log = logging.getLogger(__name__)

OPEN, DRAINING, CLOSED = "open", "draining", "closed"
RESP_NONE, RESP_HELD, RESP_STARTED, RESP_DONE = 0, 1, 2, 3
MAX_STREAMS = 100
STREAM_WINDOW = 256 * 1024  # request bytes one stream may have unforwarded
CONN_WINDOW = 4 * 1024 * 1024
STREAM_ACK = 32 * 1024  # a stream's window is reopened in steps of this (at most half
# of the smallest window a client may still assume, 65535, so it never waits for us)
HIGH, LOW = 256 * 1024, 64 * 1024  # queued response bytes of a stream: pause / resume
RESET_BUDGET = 200
_LOOKAHEAD = 64  # events scanned for a request body that ended in the same read
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
_Errors = (h2.exceptions.ProtocolError, KeyError, ValueError)

__all__ = ["H2Connection", "H2Stream"]


class H2Stream:
    """One request and its response on an HTTP/2 connection: an Exchange's Downstream."""

    __slots__ = ("conn", "sid", "req", "exchange", "decision", "status", "resp", "head",
                 "out", "buffered", "ending", "upload_paused", "unacked", "to_ack",
                 "download_paused", "last_data", "blocked_since", "closed", "received")

    def __init__(self, conn: H2Connection, sid: int, req: Request) -> None:
        self.conn, self.sid, self.req = conn, sid, req
        self.exchange: Exchange | None = None
        self.decision: Decision | None = None
        self.resp = RESP_NONE
        self.head: list[tuple[bytes, bytes]] | None = None
        self.out: collections.deque[memoryview] = collections.deque()
        # ``buffered``: bytes in ``out``; ``unacked``: request bytes taken while the
        # upload was paused; ``to_ack``: forwarded, not yet handed back as window;
        # ``received``: request body bytes (checked against Content-Length at the end).
        self.status = self.buffered = self.unacked = self.to_ack = self.received = 0
        self.ending = False  # end_response came: END_STREAM once ``out`` is sent
        self.upload_paused = self.download_paused = self.closed = False
        self.last_data, self.blocked_since = req.t0, 0.0

    # ------------------------------------------------------------------ Downstream

    def start_response(self, status: int, reason: str, headers: hdr.Headers, framing: str,
                       length: int | None) -> None:
        if self.closed:
            return
        block = hdr.h2_response_headers(status, headers)
        if length is not None and (framing == "length" or self.req.method == "HEAD"):
            block.append((b"content-length", str(length).encode("ascii")))
        self.status, self.head, self.resp = status, block, RESP_HELD

    def send_body(self, data: bytes) -> None:
        if self.closed or not data:
            return
        self.out.append(memoryview(data))
        self.buffered += len(data)
        self.conn.pump(self)
        if self.buffered > HIGH and not self.download_paused and self.exchange is not None:
            self.download_paused = True
            self.exchange.pause_download()
        self.conn.write_out()

    def flush(self) -> None:
        if self.resp == RESP_HELD and not self.closed:
            self.conn.pump(self, head=True)
            self.conn.write_out()

    def end_response(self) -> None:
        self.exchange = None
        if not self.closed:
            self.ending = True
            self.conn.pump(self)
            self.conn.write_out()

    def fail(self, status: int, text: str) -> None:
        self.exchange = None
        if self.closed:
            return
        if self.resp in (RESP_NONE, RESP_HELD):  # the head never left: a clean error
            self.head, self.resp, self.buffered = None, RESP_NONE, 0
            self.out.clear()
            self.respond(status, text)
        else:
            self.status = status
            log_5xx(self.conn.listener.port, self.decision, status, text, after="stream reset")
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

    def respond(self, status: int, text: str, headers: hdr.Headers | None = None) -> None:
        """Answer with a proxy-made response (nothing of a response was sent yet)."""
        assert self.resp == RESP_NONE
        if self.exchange is not None:
            self.exchange.cancel()
            self.exchange = None
        log_5xx(self.conn.listener.port, self.decision, status, text)
        block, payload = hdr.h2_simple_response(status, text, headers or (),
                                                head_only=self.req.method == "HEAD")
        self.status, self.head, self.resp, self.ending = status, block, RESP_HELD, True
        if payload:
            self.out.append(memoryview(payload))
            self.buffered += len(payload)
        self.conn.pump(self)


class H2Connection(asyncio.Protocol):
    """One HTTP/2 client connection (see the module doc for the states and rules)."""

    def __init__(self, listener: Listener) -> None:
        self.listener, self.rt = listener, listener.rt
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.client_ip, self.client_port = "", 0
        self.sni: str | None = None
        self.state = OPEN
        self.streams: dict[int, H2Stream] = {}
        self.write_paused = False
        self.stalled_since = 0.0
        self.idle_since = self.loop.time()
        self.goaway_last = 0
        self.reset_budget = RESET_BUDGET
        self.consumed = 0  # DATA bytes received, not yet handed back on the connection
        self._preface_at = self._frame_left = 0  # the frame guard (``_frame_check``)
        self._frame_head = b""
        limit = 2 * self.rt.max_head_bytes
        codes = h2.settings.SettingCodes
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None, normalize_inbound_headers=False))
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            codes.MAX_CONCURRENT_STREAMS: MAX_STREAMS, codes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            codes.MAX_HEADER_LIST_SIZE: limit, codes.ENABLE_PUSH: 0})
        self.h2.decoder.max_header_list_size = limit

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
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
        self.sni = getattr(transport.get_extra_info("ssl_object"), "rauta_sni", None)
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
            self.close(code)
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
            self.close(ErrorCodes.INTERNAL_ERROR)
            return
        self.write_out()

    def _frame_check(self, data: bytes) -> ErrorCodes | None:
        """PROTOCOL_ERROR for a wrong preface, FRAME_SIZE_ERROR when ``data`` begins a frame
        over SETTINGS_MAX_FRAME_SIZE (the h2 library would buffer it whole first), else None."""
        pos, size, at = 0, len(data), self._preface_at
        if at < len(_PREFACE):
            pos = min(len(_PREFACE) - at, size)
            if data[:pos] != _PREFACE[at:at + pos]:
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
            if len(self._frame_head) == 9:
                self._frame_left = int.from_bytes(self._frame_head[:3], "big")
                self._frame_head = b""
                if self._frame_left > self.h2.max_inbound_frame_size:
                    return ErrorCodes.FRAME_SIZE_ERROR
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
        e = h2.events
        for i, ev in enumerate(events):
            if self.state == CLOSED:
                return
            if isinstance(ev, e.DataReceived):
                self._on_data(ev)
            elif isinstance(ev, e.RequestReceived):
                self._on_request(ev, events, i)
            elif isinstance(ev, e.StreamEnded):
                s = self.streams.get(ev.stream_id or 0)
                if s is None or s.closed:
                    continue
                s.req.complete = True
                if not s.req.chunked and s.received != (s.req.length or 0):
                    self.reset(s, ErrorCodes.PROTOCOL_ERROR)  # short of Content-Length
                elif s.exchange is not None:
                    s.exchange.request_end()
            elif isinstance(ev, e.StreamReset):
                if (s := self.streams.get(ev.stream_id or 0)) is not None:
                    self._drop(s)
                    self.reset_budget -= 1
                    if self.reset_budget < 0:  # a rapid-reset flood (CVE-2023-44487)
                        self.close(ErrorCodes.ENHANCE_YOUR_CALM)
            elif isinstance(ev, (e.WindowUpdated, e.RemoteSettingsChanged)):
                sid = getattr(ev, "stream_id", None)  # 0 or none: every stream
                for s in list(self.streams.values()):
                    if s.out and (not sid or s.sid == sid):
                        self.pump(s)
            elif isinstance(ev, e.ConnectionTerminated):
                self._end_connection()  # the client's GOAWAY: h2 sends nothing more
                return

    def _on_request(self, ev: h2.events.RequestReceived, events: list[h2.events.Event],
                    index: int) -> None:
        sid = ev.stream_id or 0
        if self.state != OPEN and sid > self.goaway_last:
            self._reset_id(sid, ErrorCodes.REFUSED_STREAM)
            return
        known = None if ev.stream_ended else self._body_in_read(events, index, sid)
        req, bad = h2_request(self.rt, ev.headers or [], ended=bool(ev.stream_ended),
                              known_length=known, t0=self.loop.time())
        s = self.streams[sid] = H2Stream(self, sid, req)
        try:
            if bad is not None:
                s.respond(bad[0], bad[1], headers=ALLOW if bad[0] == 405 else None)
            else:
                self._dispatch(s)
        except Exception:
            log.exception("proxy error")
            if s.resp == RESP_NONE:
                s.respond(500, "internal proxy error")
            else:
                self.reset(s, ErrorCodes.INTERNAL_ERROR)

    @staticmethod
    def _body_in_read(events: list[h2.events.Event], index: int, sid: int) -> int | None:
        """The request body's length when its END_STREAM is among the same read's events."""
        total = 0
        for ev in events[index + 1:index + 1 + _LOOKAHEAD]:
            if isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                return total
            if isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                total += len(ev.data or b"")
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
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
            exch = s.exchange = Exchange(s, self.rt, req, decision, view,
                                         client_ip=self.client_ip, scheme=listener.scheme,
                                         loop=self.loop)
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
        s.received += len(ev.data or b"")
        if s.exchange is None:
            return  # an answer was made: the rest is not wanted (the stream gets reset)
        s.last_data = self.loop.time()
        if ev.data:
            s.exchange.request_body(ev.data)
        if s.upload_paused:
            s.unacked += size
        else:
            self.ack(s, size)

    def ack(self, s: H2Stream, size: int) -> None:
        """Hand ``size`` forwarded request bytes back to the stream's window (batched)."""
        s.to_ack += size
        if s.to_ack >= STREAM_ACK and not s.req.complete and not s.closed:
            with contextlib.suppress(*_Errors):
                self.h2.increment_flow_control_window(s.to_ack, s.sid)
            s.to_ack = 0

    # ------------------------------------------------------------------ sending

    def pump(self, s: H2Stream, *, head: bool = False) -> None:
        """Send what the stream has queued, as far as the windows allow."""
        if s.closed or self.state == CLOSED:
            return
        try:
            ended = self._send(s, head)
        except _Errors as exc:
            log.debug("HTTP/2 stream %d cannot send: %s", s.sid, exc)
            self.reset(s, ErrorCodes.INTERNAL_ERROR)
            return
        if ended:
            self._ended(s)
        elif (s.download_paused and s.buffered <= LOW and not self.write_paused
              and s.exchange is not None):
            s.download_paused = False
            s.exchange.resume_download()

    def _send(self, s: H2Stream, head: bool) -> bool:
        """Queue the head and DATA for the h2 library; True once END_STREAM is queued."""
        conn = self.h2
        if s.resp == RESP_HELD and (head or s.ending or s.out):
            assert s.head is not None
            end = s.ending and not s.out
            conn.send_headers(s.sid, s.head, end_stream=end)
            s.head, s.resp = None, RESP_STARTED
            if end:
                return True
        if s.resp != RESP_STARTED:
            return False
        sent_end = False
        while s.out and not self.write_paused:
            window = min(conn.local_flow_control_window(s.sid), conn.max_outbound_frame_size)
            if window <= 0:
                break
            piece = s.out[0]
            if len(piece) > window:
                s.out[0], piece = piece[window:], piece[:window]
            else:
                s.out.popleft()
            s.buffered -= len(piece)
            sent_end = s.ending and not s.out
            conn.send_data(s.sid, piece, end_stream=sent_end)
        s.blocked_since = (s.blocked_since or self.loop.time()) if s.out else 0.0
        if s.ending and not s.out:
            if not sent_end:
                conn.end_stream(s.sid)
            return True
        return False

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
        if not s.closed:
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
        record(self.rt, self.listener.port, s.decision, s.status, self.loop.time() - s.req.t0,
               access_log=self.listener.access_log, req=s.req, client_ip=self.client_ip)

    def write_out(self) -> None:
        """Write what the h2 library queued; a draining connection closes when idle."""
        if self.transport is None or self.state == CLOSED:
            return
        data = self.h2.data_to_send()
        if data:
            self.transport.write(data)
        if self.state == DRAINING and not self.streams:
            self._end_connection()

    # ------------------------------------------------------------------ timers, closing

    def check_timers(self, now: float) -> None:
        """Called by the listener's sweep: enforce every timer of this connection."""
        if self.state == CLOSED:
            return
        rt = self.rt
        for s in list(self.streams.values()):
            if s.exchange is not None:
                s.exchange.check_deadline(now)
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
        self.transport.write(GoAwayFrame(stream_id=0, last_stream_id=self.goaway_last,
                                         error_code=ErrorCodes.NO_ERROR).serialize())
        self.write_out()

    def close(self, code: int = ErrorCodes.NO_ERROR) -> None:
        """GOAWAY(``code``), drop every stream, close."""
        if self.state != CLOSED:
            with contextlib.suppress(*_Errors):
                self.h2.close_connection(code)
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
            self.transport.close()
        self.state = CLOSED
        self._cancel_all()

    def _cancel_all(self) -> None:
        for s in list(self.streams.values()):
            self._drop(s)
