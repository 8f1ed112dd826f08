"""The client side of the data plane: one asyncio Protocol per downstream connection.

Role: parse HTTP/1.1 requests with ``httptools.HttpRequestParser``, route each with the
pure ``rauta.model.routing.route`` and carry out the Decision: answer errors and
redirects, or stream the request to a pooled upstream connection and the response back.
Header transformations live in ``rauta.proxy.headers``; this module only moves bytes.

Rules:
- One request at a time per connection. Pipelined requests are parsed into a queue (with
  any body bytes that came along) and served in order; as soon as a request is queued
  behind the active one the socket is not read until the queue drains, so the queue is
  bounded by one socket read.
- The RouterConfig is captured when a request's headers are complete: a configuration
  swap never affects a request already parsed.
- Streaming both ways with flow control: the client socket stops being read while the
  upstream write buffer is above its high-water mark (uploads) and the upstream socket
  stops being read while the client write buffer is (downloads), so memory stays flat.
- Request bodies go upstream in the framing they came in (Content-Length or chunked,
  re-chunked). Responses keep Content-Length; chunked and close-delimited responses go to
  HTTP/1.1 clients chunked, to HTTP/1.0 clients close-delimited.
- Errors carry a short plain-text body: 400 (malformed request, missing Host on
  HTTP/1.1, bad path), 431 (head over ``max_head_bytes`` or ``max_headers``), 421 (Host
  selects another listener than the TLS SNI name), 404/500/503 from the Decision, 502
  (connect refused/reset, invalid or missing upstream response), 504 (``timeouts.request``
  / ``timeouts.backendRequest``, whichever is shorter, counted from the request's
  headers; or a connect timeout). A parse error or 431 closes the connection.
- A backend failing after the response head was sent aborts the client connection: a
  truncated body is never presented as complete. A request on a reused keep-alive
  upstream connection that fails before any response byte is retried once on a new
  connection when it had no body and its method is idempotent (RFC 9110 9.2.2).
- ``Expect: 100-continue`` is answered by the proxy (``100 Continue`` once the request is
  forwarded) and not passed upstream. ``Upgrade`` is hop-by-hop and removed: WebSocket
  upgrades are not tunnelled.
- Connections are closed after ``idle_timeout`` s without a request in flight, and when a
  request head is still incomplete ``head_timeout`` s after it began (slowloris).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from typing import TYPE_CHECKING

import httptools

from rauta.model.config import EMPTY, RouterConfig
from rauta.model.hostnames import matches as host_matches
from rauta.model.hostnames import strip_port
from rauta.model.routing import Decision, RequestView, route
from rauta.proxy import headers as hdr
from rauta.proxy.exchange import (
    PAUSE_CONNECT,
    PAUSE_UPLOAD,
    RESP_DONE,
    RESP_NONE,
    Exchange,
)

if TYPE_CHECKING:
    from rauta.proxy.metrics import ProxyMetrics
    from rauta.proxy.mirror import Mirrorer
    from rauta.proxy.tls import PortTLS
    from rauta.proxy.upstream import UpstreamPool

log = logging.getLogger(__name__)

PAUSE_PIPELINE = 1  # PAUSE_UPLOAD = 2 and PAUSE_CONNECT = 4 are set by the Exchange


class Runtime:
    """State shared by every listener and connection of one Proxy."""

    def __init__(self, *, metrics: ProxyMetrics, pool: UpstreamPool, mirrors: Mirrorer,
                 hash_on: str = "flow", max_head_bytes: int = 64 * 1024,
                 max_headers: int = 100, max_discard: int = 1 << 20,
                 idle_timeout: float = 75.0, head_timeout: float = 30.0,
                 response_head_timeout: float = 60.0) -> None:
        self.config: RouterConfig = EMPTY
        self.head_timeout = head_timeout
        self.response_head_timeout = response_head_timeout
        self.metrics = metrics
        self.pool = pool
        self.mirrors = mirrors
        self.hash_on = hash_on
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
        self.max_discard = max_discard
        self.idle_timeout = idle_timeout


class Listener:
    """One listening port: its server socket, TLS state and open connections."""

    def __init__(self, rt: Runtime, port: int, protocol: str, tls: PortTLS | None = None):
        self.rt = rt
        self.port = port
        self.protocol = protocol
        self.scheme = "https" if protocol == "HTTPS" else "http"
        self.tls = tls
        self.server: asyncio.Server | None = None
        self.connections: set[ClientConnection] = set()
        self.draining = False
        self._idle_timer: asyncio.TimerHandle | None = None

    async def start(self, host: str) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: ClientConnection(self), host, self.port,
            ssl=self.tls.context if self.tls else None, reuse_address=True, backlog=1024)
        self._idle_timer = loop.call_later(self._sweep_every, self._idle_sweep)

    @property
    def _sweep_every(self) -> float:
        return min(self.rt.idle_timeout, self.rt.head_timeout) / 3

    def _idle_sweep(self) -> None:
        """Close idle keep-alive connections and ones whose request head is too slow."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        limit = now - self.rt.idle_timeout
        for conn in list(self.connections):
            if conn.active is None and not conn.queue and conn.last_seen < limit:
                conn.close()
            elif conn.head_started is not None and now - conn.head_started > self.rt.head_timeout:
                conn.close()  # slowloris: a request head still incomplete after head_timeout
        if not self.draining:
            self._idle_timer = loop.call_later(self._sweep_every, self._idle_sweep)

    def stop_accepting(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
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


class _Request:
    __slots__ = ("url", "headers", "host", "bad", "method", "version", "keep_alive", "config",
                 "headers_done", "complete", "body", "has_body", "chunked", "expect",
                 "t0")

    def __init__(self) -> None:
        self.url = b""
        self.headers: hdr.Headers = []
        self.host: str | None = None
        self.bad = ""  # why the request must be answered 400, when it must
        self.method = "GET"
        self.version = "1.1"
        self.keep_alive = True
        self.config: RouterConfig = EMPTY
        self.headers_done = False
        self.complete = False
        self.body: list[bytes] = []
        self.has_body = False
        self.chunked = False
        self.expect = False
        self.t0 = 0.0


class _HeadTooLarge(Exception):
    pass


class ClientConnection(asyncio.Protocol):
    """One downstream connection (see the module doc for the rules)."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.rt = listener.rt
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client_ip = ""
        self.client_port = 0
        self.sni: str | None = None
        self.queue: collections.deque[_Request] = collections.deque()
        self.parsing: _Request | None = None
        self.active: _Request | None = None
        self.exchange: Exchange | None = None
        self.decision: Decision | None = None
        self.resp_state = RESP_NONE
        self.status = 0
        self.close_after = False
        self.closed = False
        self.eof = False
        self.draining = False
        self.paused = 0
        self.write_paused = False
        self.discarded = 0
        self.last_seen = self.loop.time()
        self.head_started: float | None = None  # set while a request head is incomplete
        self._stop_parsing = False  # after a request whose remaining bytes must not be read
        self._head_bytes = 0
        self._header_count = 0
        self._too_large = False
        self._pending_error: tuple[int, str] | None = None
        self._pumping = False

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client_ip, self.client_port = str(peer[0]), int(peer[1])
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            self.sni = getattr(sslobj, "rauta_sni", None)
        self.listener.connections.add(self)
        self.rt.metrics.active_connections(self.listener.port).inc()
        if self.listener.draining:
            self.shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.listener.connections.discard(self)
        self.rt.metrics.active_connections(self.listener.port).dec()
        if self.exchange is not None:
            self.exchange.cancel()
            self.exchange = None
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.last_seen = self.loop.time()
        while True:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                # Upgrade is not tunnelled: the request was served as plain HTTP; go on
                # parsing whatever followed its head.
                offset = exc.args[0] if exc.args else len(data)
                data = data[offset:]
                if data and not self.closed and not self._stop_parsing:
                    continue
            except httptools.HttpParserError as exc:
                if self._too_large:
                    self._parse_error(431, "request header fields too large")
                else:
                    log.debug("bad request from %s: %s", self.client_ip, exc)
                    self._parse_error(400, "bad request")
                return
            break
        self._update_pipeline_pause()

    def eof_received(self) -> bool | None:
        # A half-closed client still gets the answers to the requests it completed.
        self.eof = True
        if self.parsing is not None and self.parsing in self.queue:
            self.queue.remove(self.parsing)  # cut off mid-request: never served
            self.parsing = None
        if self.active is not None and not self.active.complete:
            return False
        return bool(self.queue)

    def pause_writing(self) -> None:
        self.write_paused = True
        exch = self.exchange
        if exch is not None and exch.up is not None:
            exch.up.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        exch = self.exchange
        if exch is not None and exch.up is not None:
            exch.up.resume_reading()

    # ------------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        req = _Request()
        self.parsing = req
        self.queue.append(req)
        self.head_started = self.loop.time()
        self._head_bytes = 0
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        assert self.parsing is not None
        self.parsing.url += url
        self._head_bytes += len(url)
        if self._head_bytes > self.rt.max_head_bytes:
            self._too_large = True
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.parsing is not None
        self._head_bytes += len(name) + len(value) + 4
        self._header_count += 1
        if self._head_bytes > self.rt.max_head_bytes or self._header_count > self.rt.max_headers:
            self._too_large = True
            raise _HeadTooLarge
        req = self.parsing
        text = value.decode("latin-1")
        req.headers.append((name.decode("latin-1"), text))
        size = len(name)  # cheap pre-filter before comparing names case-insensitively
        if size == 4:
            if name.lower() == b"host":
                if req.host is not None:
                    req.bad = "more than one Host header"
                req.host = text
        elif size == 14:
            if name.lower() == b"content-length" and text.strip() not in ("", "0"):
                req.has_body = True
        elif size == 17:
            if name.lower() == b"transfer-encoding":
                req.chunked = req.has_body = True
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
        req.t0 = self.loop.time()
        req.headers_done = True
        self.head_started = None
        if parser.should_upgrade() and req.has_body:
            # llhttp stops at the head of an Upgrade request, so its body would be parsed
            # as the next request (smuggling): refuse it and close the connection.
            req.bad = "an Upgrade request with a body is not supported"
            req.keep_alive = False
            self._stop_parsing = True
        if self.active is None:
            self._pump()

    def on_body(self, data: bytes) -> None:
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
                   and not self.closed):
                self._begin(self.queue[0])
            if (self.active is None and self._pending_error is not None and not self.closed
                    and not (self.queue and self.queue[0].headers_done)):
                status, text = self._pending_error
                self._pending_error = None
                self._write(hdr.simple_response(status, text, keep_alive=False))
                self._close()
        finally:
            self._pumping = False
        self._update_pipeline_pause()

    def _begin(self, req: _Request) -> None:
        self.active = req
        self.resp_state = RESP_NONE
        self.status = 0
        self.decision = None
        self.close_after = False
        self.discarded = 0
        try:
            self._dispatch(req)
        except Exception:
            log.exception("proxy error")
            if self.resp_state == RESP_NONE:
                self.exchange = None
                self.respond(500, "internal proxy error", close=True)
            else:
                self.abort()
                return
        if self.active is req and not self.closed:
            body, req.body = req.body, []
            for chunk in body:
                self._active_body(chunk)
            if req.complete and self.active is req:
                self._active_complete()

    def _dispatch(self, req: _Request) -> None:
        target = req.url.decode("latin-1")
        path, query = hdr.split_target(target)
        host = req.host
        if req.bad:
            self.respond(400, req.bad)
            return
        if host is None:
            if req.version != "1.0":
                self.respond(400, "missing Host header")
                return
            host = ""
        listener = self.listener
        if self.sni is not None and self._misdirected(req.config, host):
            self.respond(421, "misdirected request: Host does not match the TLS server name")
            return
        view = RequestView(method=req.method, host=host, path=path, query=query,
                           headers=tuple(req.headers), port=listener.port,
                           scheme=listener.scheme, client_ip=self.client_ip,
                           client_port=self.client_port)
        decision = route(req.config, view, choice=random.getrandbits(32),
                         hash_on=self.rt.hash_on)
        self.decision = decision
        if decision.kind == "forward":
            self.exchange = Exchange(self, req, decision, view)
            self.exchange.start()
            if req.expect and not req.complete and self.exchange is not None:
                self._write(hdr.CONTINUE_100)
        elif decision.kind == "redirect":
            extra = hdr.apply_modifiers([("Location", decision.location or "/")],
                                        decision.response_headers)
            self.respond(decision.status, "", headers=extra)
        else:
            self.respond(decision.status, decision.reason or hdr.reason_phrase(decision.status))

    def _misdirected(self, config: RouterConfig, host: str) -> bool:
        port = config.port(self.listener.port)
        if port is None:
            return False
        name = strip_port(host)
        by_sni = next((lr for lr in port.listeners if host_matches(lr.hostname, self.sni or "")),
                      None)
        by_host = next((lr for lr in port.listeners if host_matches(lr.hostname, name)), None)
        return by_sni is not None and by_host is not by_sni

    def _active_body(self, data: bytes) -> None:
        exch = self.exchange
        if exch is not None:
            exch.request_body(data)
            return
        self.discarded += len(data)
        if self.discarded > self.rt.max_discard:
            self.abort()

    def _active_complete(self) -> None:
        if self.exchange is not None:
            self.exchange.request_end()
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        req = self.active
        if req is not None and req.complete and self.resp_state == RESP_DONE:
            self._finish(req)

    def _record(self, req: _Request) -> None:
        d = self.decision
        rule = d.rule if d is not None else None
        backend = d.backend if d is not None else None
        self.rt.metrics.observe_request(
            self.listener.port, rule.route if rule else "", rule.rule_index if rule else -1,
            backend.name if backend else "", self.status, self.loop.time() - req.t0)

    def record_aborted(self) -> None:
        """Count the active request whose response had to be cut off."""
        if self.active is not None:
            self._record(self.active)

    def _finish(self, req: _Request) -> None:
        self._record(req)
        if self.queue and self.queue[0] is req:
            self.queue.popleft()
        self.active = None
        self.exchange = None
        self.decision = None
        self._resume(PAUSE_UPLOAD | PAUSE_CONNECT)
        if self.close_after or not req.keep_alive or self.draining:
            self._close()
            return
        self._pump()
        if self.eof and self.active is None and not self.closed:
            self._close()

    # ------------------------------------------------------------------ responses

    def respond(self, status: int, text: str, *, headers: hdr.Headers | None = None,
                close: bool = False) -> None:
        """Answer the active request with a proxy-made response (nothing sent yet)."""
        req = self.active
        assert req is not None and self.resp_state == RESP_NONE
        keep = (req.keep_alive and not self.draining and not close
                and (req.complete or not req.expect))
        self.status = status
        self._write(hdr.simple_response(status, text, keep_alive=keep, version=req.version,
                                        headers=headers or (), head_only=req.method == "HEAD"))
        self.resp_state = RESP_DONE
        if not keep:
            self.close_after = True
        self.exchange = None
        self._resume(PAUSE_UPLOAD | PAUSE_CONNECT)
        if req.complete:
            self._maybe_finish()

    def keep_alive_for(self, req: _Request) -> bool:
        return req.keep_alive and not self.draining and not self.close_after

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _parse_error(self, status: int, text: str) -> None:
        req, self.parsing = self.parsing, None
        self._pause(PAUSE_PIPELINE)
        if req is not None and req is self.active:
            if self.resp_state == RESP_NONE:
                if self.exchange is not None:
                    self.exchange.cancel()
                    self.exchange = None
                self.respond(status, text, close=True)
                req.complete = True
                self._maybe_finish()
            else:
                self.abort()
            return
        if req is not None and req in self.queue:
            self.queue.remove(req)
        self._pending_error = (status, text)
        if self.active is None:
            self._pump()

    # ------------------------------------------------------------------ flow control, closing

    def _update_pipeline_pause(self) -> None:
        # Reading goes on while a response is pending (a quiet keep-alive client costs no
        # epoll_ctl calls); it stops as soon as a pipelined request is queued behind it.
        if self.active is not None and len(self.queue) > 1:
            self._pause(PAUSE_PIPELINE)
        elif self._pending_error is None:
            self._resume(PAUSE_PIPELINE)

    def _pause(self, bit: int) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self.paused |= bit

    def _resume(self, bits: int) -> None:
        if not self.paused & bits:
            return
        self.paused &= ~bits
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def shutdown(self) -> None:
        """Finish the request in flight (if any) with ``Connection: close``, then close."""
        self.draining = True
        if self.active is None and not self.queue:
            self.close()

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        if self.exchange is not None:
            self.exchange.cancel()
            self.exchange = None
        self._close()

    def abort(self) -> None:
        """Drop the client connection at once (used when a response cannot complete)."""
        if self.exchange is not None:
            self.exchange.cancel()
            self.exchange = None
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
