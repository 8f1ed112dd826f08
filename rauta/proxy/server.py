"""The client side of the data plane: one asyncio Protocol per downstream connection.

Role: parse HTTP/1.x requests with ``httptools.HttpRequestParser`` (llhttp), check what
the parser leaves to its caller, route each request with the pure
``rauta.model.routing.route`` and carry out the Decision: answer errors and redirects,
or hand the request to an ``Exchange``, for which the connection is the ``Downstream``.
Header transformations live in ``rauta.proxy.headers``, the checks shared with HTTP/2
(target, Host, 421, routing) in ``rauta.proxy.request``; the Exchange never touches the
connection's state. A TLS connection whose ALPN chose ``h2`` is handed, before any byte
is read, to ``rauta.proxy.h2.H2Connection`` (``transport.set_protocol``). Every state of
an HTTP/1 client connection and every transition lives here:

- connection: ``OPEN`` → (``LINGER``) → ``CLOSED``. ``LINGER``: after a proxy-made answer
  to a request whose body was not read, or to a request whose framing is unknown, the
  write side is shut and input is read and discarded until the client is quiet for
  ``lingering_timeout`` (or ``lingering_time`` passed), so the answer is not lost to a
  reset; nothing more is parsed.
- response of the active request: ``RESP_NONE`` → ``RESP_HELD`` (head built, written with
  the first body bytes or at the next flush) → ``RESP_STARTED`` → ``RESP_DONE``.
- reading is paused while any of ``PAUSE_PIPELINE`` (a request queued behind the active
  one), ``PAUSE_UPLOAD`` (the backend is not taking the body, or is being connected) is set.

Rules:
- One request at a time per connection; pipelined requests are parsed into a queue (with
  their body bytes) and served in order, and the socket is not read while one is queued.
- The RouterConfig is captured when a request's headers are complete.
- What llhttp (strict, httptools >= 0.9) does not refuse is refused here, each answer
  closing the connection when the request's framing is unknown: a version other than
  1.0/1.1 → 505; ``CONNECT`` → 400; ``Transfer-Encoding`` in HTTP/1.0 → 400;
  a transfer coding other than exactly ``chunked`` → 501 (``chunked`` not last → 400);
  an Upgrade request with a body → 400. Parse errors → 400, 431 for a head over
  ``max_head_bytes`` (raw bytes, counted as they arrive, before the parser buffers them)
  or ``max_headers``. ``TRACE`` → 405 unless ``allow_trace``.
- Request target: origin-form, absolute-form (whose authority wins over ``Host``, RFC
  9112 §3.2.2) or ``*``; fragments, userinfo and anything else → 400. ``Host`` must be a
  valid host[:port] (``headers.parse_host``), present once on HTTP/1.1 → else 400.
- Header names with ``_`` are dropped unless ``underscores_in_headers`` (nginx's rule).
- Request bodies go upstream with the framing the parser found (Content-Length as
  parsed, or chunked). Responses are framed here: Content-Length as parsed; chunked and
  close-delimited ones go to HTTP/1.1 clients chunked, to HTTP/1.0 clients close-delimited.
- ``Expect: 100-continue`` is answered by the proxy (``100 Continue`` once the request is
  forwarded, HTTP/1.1 clients only, RFC 9110 §15.2) and not passed upstream.
- 421 when the TLS SNI name and the Host select different listeners (trailing dots and
  case ignored on both; ``request.misdirected``).
- A backend failing after the response head was sent drops the client connection: a
  truncated body is never presented as complete.
- A 400, 408, 413, 414, 431, 501 or 505 always closes the connection (as nginx does):
  nothing pipelined behind a malformed request is served.
- Timers are checked by one sweep per listener (``Runtime`` lists them): idle, slow head,
  stalled body (408), stalled writes, lingering; connections above ``max_connections``
  are closed at accept.
- Every 5xx the proxy makes itself (502/503/504, 500 for a missing backend) is a warning
  line naming the listener port, route, rule and backend (``request.log_5xx``). With an
  access log (``Listener.access_log``) every answered request is handed to it as a tuple
  (``request.record``; HTTP/2 streams go through the same two functions).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import struct
from typing import cast

import httptools

from rauta.model.routing import Decision
from rauta.proxy import headers as hdr
from rauta.proxy.accesslog import AccessLog
from rauta.proxy.exchange import Exchange
from rauta.proxy.h2 import H2Connection
from rauta.proxy.request import (
    ALLOW,
    Request,
    decide,
    log_5xx,
    method_refusal,
    record,
    rule_label,  # noqa: F401  (re-exported: its home was here)
)
from rauta.proxy.runtime import Runtime
from rauta.proxy.tls import PortTLS

log = logging.getLogger(__name__)

OPEN, LINGER, CLOSED = "open", "linger", "closed"
RESP_NONE, RESP_HELD, RESP_STARTED, RESP_DONE = 0, 1, 2, 3
PAUSE_PIPELINE, PAUSE_UPLOAD = 1, 2
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
# Answers after which a connection is never reused (nginx turns keep-alive off for these):
# the request was malformed, so what follows it on the connection is not trusted either.
_CLOSING = frozenset({400, 408, 413, 414, 431, 501, 505})

__all__ = ["ClientConnection", "Listener", "Request", "Runtime"]


class Listener:
    """One listening port: its server socket, TLS state and open connections."""

    access_log: AccessLog | None = None  # set by the Proxy when one is configured

    def __init__(self, rt: Runtime, port: int, protocol: str, tls: PortTLS | None = None,
                 address: str = ""):
        self.rt = rt
        self.port = port
        self.address = address  # the PortConfig address ("" for the proxy's listen host)
        self.protocol = protocol
        self.scheme = "https" if protocol == "HTTPS" else "http"
        self.tls = tls
        self.server: asyncio.Server | None = None
        self.connections: set[ClientConnection | H2Connection] = set()
        self.draining = False
        self._sweep_timer: asyncio.TimerHandle | None = None

    async def start(self, host: str, reuse_port: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: ClientConnection(self), host, self.port,
            ssl=self.tls.context if self.tls else None, reuse_address=True,
            reuse_port=reuse_port or None, backlog=1024)
        self._sweep_timer = loop.call_later(self.rt.sweep_every, self._sweep)

    def _sweep(self) -> None:
        """Check every connection's timers (one coarse wheel instead of a handle each)."""
        now = asyncio.get_running_loop().time()
        for conn in list(self.connections):
            conn.check_timers(now)
        if not self.draining:
            self._sweep_timer = asyncio.get_running_loop().call_later(self.rt.sweep_every,
                                                                      self._sweep)

    def stop_accepting(self) -> None:
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        if self.server is not None:
            self.server.close()

    async def drain(self, seconds: float) -> None:
        """Stop accepting, let in-flight requests finish (``seconds`` at most), close all."""
        self.draining = True
        self.stop_accepting()
        for conn in list(self.connections):
            conn.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, seconds)
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.abort()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


class _HeadTooLarge(Exception):
    pass


class _StopParsing(Exception):
    """Raised from a callback: the rest of the input must never be parsed."""


def _framing_problem(req: Request, upgrade: bool) -> tuple[int, str] | None:
    """Why a request whose framing the proxy will not trust must be refused, or None."""
    if req.version != "1.1" and req.version != "1.0":
        return 505, "HTTP version not supported"
    if req.method == "CONNECT":
        return 400, "CONNECT is not supported"
    if req.te is not None:
        if req.version == "1.0":
            return 400, "Transfer-Encoding in an HTTP/1.0 request"
        codings = [t.strip().lower() for v in req.te for t in v.split(",")]
        if codings != ["chunked"]:
            if "chunked" in codings[:-1]:
                return 400, "chunked must be the final transfer coding"
            return 501, "transfer coding not implemented"
    if upgrade and req.has_body:
        # llhttp stops at the head of an Upgrade request, so its body would be parsed
        # as the next request (smuggling).
        return 400, "an Upgrade request with a body is not supported"
    return None


class ClientConnection(asyncio.Protocol):
    """One downstream connection (see the module doc for the states and rules)."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.rt = listener.rt
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client_ip = ""
        self.client_port = 0
        self.sni: str | None = None
        self.state = OPEN
        self.queue: collections.deque[Request] = collections.deque()
        self.parsing: Request | None = None
        self.active: Request | None = None
        self.exchange: Exchange | None = None
        self.decision: Decision | None = None
        self.resp = RESP_NONE
        self.mode = "raw"  # how the response body is framed for the client
        self.held = b""  # the response head, written together with the first body bytes
        self.status = 0
        self.close_after = False
        self.eof = False
        self.draining = False
        self.paused = 0
        self.write_paused = False
        self.stalled_since = 0.0
        self.discarded = 0
        self.last_seen = self.loop.time()
        self.linger_since = 0.0
        self.head_started: float | None = None  # set while a request head is incomplete
        self._stop_parsing = False
        self._head_bytes = 0  # bytes of the head's URL and complete headers
        self._raw_head = 0  # raw bytes of the incomplete head, counted per read
        self._header_count = 0
        self._began = False  # a message began during the current feed
        self._body_in_read = 0  # body bytes delivered since the last head in this feed
        self._too_large = False
        self._pending_error: tuple[int, str] | None = None
        self._pumping = False

    @property
    def closed(self) -> bool:
        return self.state == CLOSED

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None and sslobj.selected_alpn_protocol() == "h2":
            h2conn = H2Connection(self.listener)  # ALPN chose HTTP/2: rauta.proxy.h2 serves it
            transport.set_protocol(h2conn)
            h2conn.connection_made(transport)
            return
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
        if sslobj is not None:
            self.sni = getattr(sslobj, "rauta_sni", None)
        if self.listener.draining:
            self.shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self.rt.connections -= 1
        self.listener.connections.discard(self)
        self.rt.metrics.active_connections(self.listener.port).dec()
        if self.exchange is not None:
            self.exchange.cancel()
            self.exchange = None
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.last_seen = self.loop.time()
        if self.state != OPEN or self._stop_parsing:
            return  # lingering, or after a request whose framing is unknown: discarded
        self._began = False
        self._body_in_read = 0
        while True:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                # A plain Upgrade request without a body was served as HTTP (Upgrade is
                # not tunnelled); go on parsing whatever followed its head.
                offset = exc.args[0] if exc.args else len(data)
                data = data[offset:]
                if data and self.state == OPEN and not self._stop_parsing:
                    continue
            except httptools.HttpParserError as exc:
                if not self._stop_parsing:
                    self._parse_error(exc)
                return
            break
        req = self.parsing
        if req is not None and not req.headers_done and self.state == OPEN:
            # Raw bytes of the head still incomplete: httptools buffers a header until it
            # is whole, so count here, before one value can grow without bound.
            if self._began:
                cut = data.rfind(b"\r\n\r\n")
                part = len(data) - (cut + 4 if cut >= 0 else 0) - self._body_in_read
                self._raw_head = max(part, 0)
            else:
                self._raw_head += len(data)
            if self._raw_head > self.rt.max_head_bytes:
                self._too_large = True
                self._parse_error(None)
                return
        self._update_pipeline_pause()

    def eof_received(self) -> bool | None:
        # A half-closed client still gets the answers to the requests it completed.
        self.eof = True
        if self.state == LINGER:
            return False
        if self.parsing is not None and self.parsing in self.queue:
            self.queue.remove(self.parsing)  # cut off mid-request: never served
            self.parsing = None
        if self.active is not None and not self.active.complete:
            return False
        return bool(self.queue)

    def pause_writing(self) -> None:
        self.write_paused = True
        self.stalled_since = self.loop.time()
        if self.exchange is not None:
            self.exchange.pause_download()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.exchange is not None:
            self.exchange.resume_download()

    # ------------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        req = Request()
        self.parsing = req
        self.queue.append(req)
        self.head_started = self.last_seen  # the time of this read (one clock call per read)
        self._head_bytes = 0
        self._header_count = 0
        self._began = True

    def on_url(self, url: bytes) -> None:
        assert self.parsing is not None
        self.parsing.url += url
        self._head_bytes += len(url)
        if self._head_bytes > self.rt.max_head_bytes:
            self._too_large = True
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.parsing
        assert req is not None
        self._header_count += 1
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.rt.max_head_bytes or self._header_count > self.rt.max_headers:
            self._too_large = True
            raise _HeadTooLarge
        if b"_" in name and not self.rt.underscores_in_headers:
            return  # dropped, as nginx does: some backends read "_" as "-"
        text = value.decode("latin-1")
        req.headers.append((name.decode("latin-1"), text))
        size = len(name)  # cheap pre-filter before comparing names case-insensitively
        if size == 4:
            if name.lower() == b"host":
                req.hosts += 1
                req.host = text
        elif size == 14:
            if name.lower() == b"content-length":
                req.length = int(text)  # llhttp accepts only digits, and only once
                req.has_body = req.length > 0
        elif size == 17:
            if name.lower() == b"transfer-encoding":
                if req.te is None:
                    req.te = []
                req.te.append(text)
        elif size == 6:
            if name.lower() == b"expect" and text.strip().lower() == "100-continue":
                req.expect = True

    def on_headers_complete(self) -> None:
        req = self.parsing
        assert req is not None
        parser = self.parser
        req.method = parser.get_method().decode("ascii", "replace")
        req.version = parser.get_http_version()
        req.keep_alive = parser.should_keep_alive()
        req.config = self.rt.config
        req.t0 = self.last_seen  # the read that completed the head
        req.headers_done = True
        self.head_started = None
        self._body_in_read = 0
        if req.te is not None and req.version == "1.1":
            req.chunked = req.has_body = True
            req.length = None
        plain = (req.te is None and req.version == "1.1" and req.method != "CONNECT"
                 and not parser.should_upgrade())
        problem = None if plain else _framing_problem(req, parser.should_upgrade())
        if problem is not None:
            req.bad = problem
            req.complete = True  # nothing more of it is read
            req.keep_alive = False
            self._stop_parsing = True
        else:
            req.bad = method_refusal(req.method, self.rt.allow_trace)  # TRACE
        if self.active is None:
            self._pump()
        if self._stop_parsing:
            raise _StopParsing

    def on_body(self, data: bytes) -> None:
        self._body_in_read += len(data)
        req = self.parsing
        if req is not None and req is self.active:
            self._active_body(data)
        elif req is not None:
            req.body.append(data)

    def on_message_complete(self) -> None:
        req = self.parsing
        if req is None:
            return
        req.complete = True
        self.parsing = None
        if req is self.active:
            self._active_complete()

    # ------------------------------------------------------------------ request lifecycle

    def _pump(self) -> None:
        """Start queued requests in order while none is active (iterative, re-entrant)."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while (self.active is None and self.queue and self.queue[0].headers_done
                   and self.state == OPEN):
                self._begin(self.queue[0])
            if (self.active is None and self._pending_error is not None and self.state == OPEN
                    and not (self.queue and self.queue[0].headers_done)):
                status, text = self._pending_error
                self._pending_error = None
                self._write(hdr.simple_response(status, text, keep_alive=False))
                self._linger()
        finally:
            self._pumping = False
        self._update_pipeline_pause()

    def _begin(self, req: Request) -> None:
        self.active = req
        self.resp = RESP_NONE
        self.status = 0
        self.decision = None
        self.close_after = False
        self.discarded = 0
        try:
            self._dispatch(req)
        except Exception:
            log.exception("proxy error")
            if self.resp == RESP_NONE:
                if self.exchange is not None:
                    self.exchange.cancel()
                    self.exchange = None
                self.respond(500, "internal proxy error", close=True)
            else:
                self.abort()
                return
        if self.active is req and self.state == OPEN:
            body, req.body = req.body, []
            for chunk in body:
                self._active_body(chunk)
            if req.complete and self.active is req:
                self._active_complete()

    def _dispatch(self, req: Request) -> None:
        if req.bad is not None:
            status, text = req.bad
            self.respond(status, text, close=self._stop_parsing,
                         headers=ALLOW if status == 405 else None)
            return
        listener = self.listener
        decision, view = decide(self.rt, req, port=listener.port, address=listener.address,
                                scheme=listener.scheme, sni=self.sni,
                                client_ip=self.client_ip, client_port=self.client_port)
        self.decision = decision
        if decision.kind == "forward":
            assert view is not None
            exch = Exchange(self, self.rt, req, decision, view, client_ip=self.client_ip,
                            scheme=listener.scheme, loop=self.loop)
            self.exchange = exch
            exch.start()
            if (req.expect and req.version == "1.1" and not req.complete
                    and self.exchange is exch):
                self._write(hdr.CONTINUE_100)
        elif decision.kind == "redirect":
            extra = hdr.apply_modifiers([("Location", decision.location or "/")],
                                        decision.response_headers)
            self.respond(decision.status, "", headers=extra)
        else:
            self.respond(decision.status, decision.reason or hdr.reason_phrase(decision.status))

    def _active_body(self, data: bytes) -> None:
        exch = self.exchange
        if exch is not None:
            exch.request_body(data)
            return
        self.discarded += len(data)
        if self.discarded > self.rt.max_discard:
            if self.resp == RESP_DONE:
                self.close_after = True
                self._unread_body()
            else:
                self.abort()

    def _active_complete(self) -> None:
        if self.exchange is not None:
            self.exchange.request_end()
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        req = self.active
        if req is not None and req.complete and self.resp == RESP_DONE:
            self._finish(req)

    def _record(self, req: Request) -> None:
        record(self.rt, self.listener.port, self.decision, self.status,
               self.loop.time() - req.t0, access_log=self.listener.access_log, req=req,
               client_ip=self.client_ip)

    def _log_5xx(self, status: int, text: str, after: str = "") -> None:
        log_5xx(self.listener.port, self.decision, status, text, after=after)

    def _retire(self, req: Request) -> None:
        self._record(req)
        if self.queue and self.queue[0] is req:
            self.queue.popleft()
        self.active = None
        self.exchange = None
        self.decision = None
        if self.paused & PAUSE_UPLOAD:
            self._resume(PAUSE_UPLOAD)

    def _finish(self, req: Request) -> None:
        self._retire(req)
        if self.close_after or not req.keep_alive or self.draining:
            if self._stop_parsing:
                self._linger()  # unread input may follow: let the answer arrive first
            else:
                self._close()
            return
        self._pump()
        if self.eof and self.active is None and self.state == OPEN:
            self._close()

    def _unread_body(self) -> None:
        """The response is complete but the request body is not: discard it, then close."""
        req = self.active
        assert req is not None
        self._retire(req)
        self._linger()

    # ------------------------------------------------------------------ Downstream

    def start_response(self, status: int, reason: str, headers: hdr.Headers, framing: str,
                       length: int | None) -> None:
        req = self.active
        assert req is not None
        keep = self.keep_alive_for(req) and (req.complete or self._can_discard(req))
        if framing == "length":
            headers.append(("Content-Length", str(length)))
            self.mode = "raw"
        elif framing == "none":
            if length is not None and req.method == "HEAD":
                headers.append(("Content-Length", str(length)))
            self.mode = "raw"
        elif req.version == "1.0":
            self.mode = "close"
            keep = False
        else:
            self.mode = "chunked"
            headers.append(("Transfer-Encoding", "chunked"))
        if not keep:
            headers.append(("Connection", "close"))
            self.close_after = True
        elif req.version == "1.0":
            headers.append(("Connection", "keep-alive"))
        self.status = status
        self.resp = RESP_HELD
        self.held = hdr.response_head(status, reason, headers)

    def send_body(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        if self.mode == "chunked":
            if self.held:
                held, self.held = self.held, b""
                transport.writelines((held, *hdr.chunk(data)))
            else:
                transport.writelines(hdr.chunk(data))
        elif self.held:
            held, self.held = self.held, b""
            transport.writelines((held, data))
        else:
            transport.write(data)
        self.resp = RESP_STARTED

    def flush(self) -> None:
        if self.held:
            held, self.held = self.held, b""
            self._write(held)
            self.resp = RESP_STARTED

    def end_response(self) -> None:
        held, self.held = self.held, b""
        if self.mode == "chunked":
            self._write(held + hdr.CHUNK_END)
        else:
            if held:
                self._write(held)
            if self.mode == "close":
                self.close_after = True
        self.resp = RESP_DONE
        self.exchange = None
        if self.paused & PAUSE_UPLOAD:
            self._resume(PAUSE_UPLOAD)
        req = self.active
        if req is not None and req.has_body and not req.complete:
            if self.close_after:
                self._unread_body()
            # else the rest of the body is read and discarded
        else:
            self._maybe_finish()

    def fail(self, status: int, text: str) -> None:
        self.exchange = None
        req = self.active
        if req is None:
            return
        if self.resp in (RESP_NONE, RESP_HELD):
            self.held = b""  # the head never left: a clean error is still possible
            self.resp = RESP_NONE
            self.respond(status, text, close=not req.complete)
        else:
            self._log_5xx(status, text, after="connection dropped")
            self.status = status
            self._record(req)
            self.abort()

    def pause_upload(self) -> None:
        self._pause(PAUSE_UPLOAD)

    def resume_upload(self) -> None:
        self._resume(PAUSE_UPLOAD)

    # ------------------------------------------------------------------ proxy-made answers

    def respond(self, status: int, text: str, *, headers: hdr.Headers | None = None,
                close: bool = False) -> None:
        """Answer the active request with a proxy-made response (nothing sent yet)."""
        req = self.active
        assert req is not None and self.resp == RESP_NONE
        self._log_5xx(status, text)
        keep = (req.keep_alive and not self.draining and not close and status not in _CLOSING
                and (req.complete or self._can_discard(req)))
        self.status = status
        self._write(hdr.simple_response(status, text, keep_alive=keep, version=req.version,
                                        headers=headers or (), head_only=req.method == "HEAD"))
        self.resp = RESP_DONE
        if not keep:
            self.close_after = True
        if self.exchange is not None:
            self.exchange.cancel()
            self.exchange = None
        self._resume(PAUSE_UPLOAD)
        if req.complete or not req.has_body:
            self._maybe_finish()  # else on_message_complete finishes it
        elif not keep:
            self._unread_body()
        # else the rest of the body is read and discarded (max_discard, body_timeout)

    def _can_discard(self, req: Request) -> bool:
        """May the unread rest of this request's body be discarded on a kept connection?"""
        return not req.expect and (req.length is None or req.length <= self.rt.max_discard)

    def keep_alive_for(self, req: Request) -> bool:
        return req.keep_alive and not self.draining and not self.close_after

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _parse_error(self, exc: BaseException | None) -> None:
        if self._too_large:
            status, text = 431, "request header fields too large"
        elif exc is not None and "HTTP version" in str(exc):
            status, text = 505, "HTTP version not supported"
        else:
            log.debug("bad request from %s: %s", self.client_ip, exc)
            status, text = 400, "bad request"
        self._stop_parsing = True
        req, self.parsing = self.parsing, None
        if req is not None and req is self.active:
            if self.resp == RESP_NONE:
                req.complete = True
                self.respond(status, text, close=True)
                self._linger()
            else:
                self.abort()
            return
        if req is not None and req in self.queue:
            self.queue.remove(req)
        self._pending_error = (status, text)
        if self.active is None:
            self._pump()

    # ------------------------------------------------------------------ flow control, timers

    def _update_pipeline_pause(self) -> None:
        # Reading goes on while a response is pending (a quiet keep-alive client costs no
        # epoll_ctl calls); it stops as soon as a pipelined request is queued behind it.
        if self.active is not None and len(self.queue) > 1:
            self._pause(PAUSE_PIPELINE)
        elif self.paused & PAUSE_PIPELINE and self._pending_error is None:
            self._resume(PAUSE_PIPELINE)

    def _pause(self, bit: int) -> None:
        if not self.paused and self.transport is not None and self.state == OPEN:
            self.transport.pause_reading()
        self.paused |= bit

    def _resume(self, bits: int) -> None:
        if not self.paused & bits:
            return
        self.paused &= ~bits
        if not self.paused and self.transport is not None and self.state == OPEN:
            self.transport.resume_reading()

    def check_timers(self, now: float) -> None:
        """Called by the listener's sweep: enforce every timer of this connection."""
        rt = self.rt
        if self.exchange is not None:
            self.exchange.check_deadline(now)
        if self.state == LINGER:
            if (now - self.last_seen > rt.lingering_timeout
                    or now - self.linger_since > rt.lingering_time):
                self._close_transport()
        elif self.state != OPEN:
            return
        elif self.write_paused and now - self.stalled_since > rt.send_timeout:
            self.abort()  # the client takes no response bytes
        elif self.active is None and not self.queue:
            if now - self.last_seen > rt.idle_timeout:
                self.close()
        elif self.head_started is not None and now - self.head_started > rt.head_timeout:
            self.close()  # slowloris: a request head still incomplete after head_timeout
        elif (self.active is not None and not self.active.complete
              and not self.paused & PAUSE_UPLOAD and now - self.last_seen > rt.body_timeout):
            if self.resp == RESP_NONE:
                self.respond(408, "request body timeout", close=True)
            else:
                self.abort()

    # ------------------------------------------------------------------ closing

    def _linger(self) -> None:
        """Shut the write side, then read and discard until quiet (see the module doc)."""
        if self.state != OPEN:
            return
        self.state = LINGER
        self._stop_parsing = True
        self.linger_since = self.last_seen = self.loop.time()
        if self.exchange is not None:
            self.exchange.cancel()
            self.exchange = None
        transport = self.transport
        if transport is None:
            return
        if transport.can_write_eof():
            transport.write_eof()
        self.paused = 0
        transport.resume_reading()

    def shutdown(self) -> None:
        """Finish the request in flight (if any) with ``Connection: close``, then close."""
        self.draining = True
        if self.active is None and not self.queue:
            self.close()

    def _close(self) -> None:
        if self.state == OPEN:
            self._close_transport()

    def _close_transport(self) -> None:
        self.state = CLOSED
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        if self.exchange is not None:
            self.exchange.cancel()
            self.exchange = None
        self._close_transport()

    def abort(self) -> None:
        """Drop the client connection at once (used when a response cannot complete)."""
        if self.exchange is not None:
            self.exchange.cancel()
            self.exchange = None
        self.state = CLOSED
        if self.transport is not None:
            # A reset, not a FIN: a close-delimited (HTTP/1.0) response cut short must
            # never look complete to the client.
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            self.transport.abort()
