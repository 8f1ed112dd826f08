"""One forwarded request: the bridge between a client connection and an upstream one.

Role: an ``Exchange`` carries out a "forward" Decision for the active request of a
``ClientConnection``: it builds the upstream head (``headers``), takes a pooled
connection or opens one, streams the request body up and the response back, applies the
response header modifiers, feeds the mirror tee, and enforces the route's timeouts. It is
the ``UpstreamSink`` of the upstream connection it uses.

Rules:
- Upstream head: the client's headers minus hop-by-hop ones, ``Host`` and ``Expect``;
  ``Host`` is the Decision's ``upstream_host``; X-Forwarded-For/Proto/Host as in
  ``headers.add_forwarded``; then the Decision's request modifiers (rule, then backend);
  then the framing: ``Content-Length`` as received, or ``Transfer-Encoding: chunked``.
- The target is the Decision's ``upstream_path``, which carries the query untouched.
- Until the upstream connection exists, body bytes are kept (the client socket is not
  read meanwhile, so at most one socket read is kept).
- The upstream connection is pooled again only when the response was complete, keep-alive
  and the whole request was sent; otherwise it is closed.
- Timeout: the shorter of ``timeouts.request_ms`` and ``timeouts.backend_request_ms``,
  counted from the request's headers. Before the response head: 504. After: the client
  connection is aborted. A route without timeouts still gets a 504 when no response head
  arrives within ``response_head_timeout`` (60 s by default). A connect timeout is a 504, any other connect error a 502.
- Once finished (``done``), late events are ignored; ``cancel`` drops everything at once
  (client gone, client parse error).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from rauta.model.routing import Decision, RequestView
from rauta.proxy import headers as hdr
from rauta.proxy.upstream import UpstreamConnection

if TYPE_CHECKING:
    from rauta.proxy.mirror import MirrorTee
    from rauta.proxy.server import ClientConnection, _Request

PAUSE_UPLOAD = 2
PAUSE_CONNECT = 4
RESP_NONE, RESP_STARTED, RESP_DONE = 0, 1, 2



# RFC 9110 9.2.2: only these may be retried automatically after a connection failure.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

class Exchange:
    """A forwarded request in flight (see the module doc)."""

    __slots__ = ("client", "req", "decision", "view", "key", "up", "head", "chunked",
                 "pending", "sent_end", "tee", "timer", "head_timer", "connect_task",
                 "reused",
                 "retried", "done", "down", "held")

    def __init__(self, client: ClientConnection, req: _Request, decision: Decision,
                 view: RequestView) -> None:
        self.client = client
        self.req = req
        self.decision = decision
        self.view = view
        ep = decision.endpoint
        assert ep is not None
        self.key = (ep.address, ep.port)
        self.up: UpstreamConnection | None = None
        self.head = b""
        self.chunked = req.chunked
        self.pending: list[bytes] = []
        self.sent_end = False
        self.tee: MirrorTee | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.head_timer = False  # the timer bounds only the wait for the response head
        self.connect_task: asyncio.Task[UpstreamConnection] | None = None
        self.reused = False
        self.retried = False
        self.done = False
        self.down = "raw"
        self.held = b""  # the response head, written together with the first body bytes

    # ------------------------------------------------------------------ request side

    def start(self) -> None:
        client, req, d = self.client, self.req, self.decision
        base = hdr.upstream_headers(req.headers, host=d.upstream_host,
                                    client_ip=client.client_ip,
                                    proto=client.listener.scheme, forwarded_host=self.view.host)
        headers = hdr.apply_modifiers(base, d.request_headers)
        if d.mirrors:
            rule_mod = d.rule.filters.request_headers if d.rule is not None else None
            self.tee = client.rt.mirrors.start(d.mirrors, req.method, d.upstream_path,
                                               hdr.apply_modifier(base, rule_mod),
                                               req.has_body)
        if self.chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        self.head = hdr.request_head(req.method, d.upstream_path, headers)
        t = d.timeouts
        if t is not None and (t.request_ms or t.backend_request_ms):
            ms = min(x for x in (t.request_ms, t.backend_request_ms) if x)
            delay = ms / 1000.0 - (client.loop.time() - req.t0)
            self.timer = client.loop.call_later(max(0.0, delay), self._timeout)
        elif client.rt.response_head_timeout:
            # No route timeout: a backend that never starts answering still gets a 504 (a
            # response that has started may stream for as long as it likes).
            self.head_timer = True
            self.timer = client.loop.call_later(client.rt.response_head_timeout,
                                                self._timeout)
        conn = client.rt.pool.acquire(self.key)
        if conn is not None:
            self._attach(conn)
        else:
            self._connect()

    def _attach(self, conn: UpstreamConnection) -> None:
        self.up = conn
        self.reused = conn.reused
        conn.begin(self, self.head, head_only=self.req.method == "HEAD")
        pending, self.pending = self.pending, []
        for data in pending:
            self._send(data)
        if self.req.complete:
            self._send_end()
        if conn.write_paused:
            self.client._pause(PAUSE_UPLOAD)
        if self.client.write_paused:
            conn.pause_reading()

    def _connect(self) -> None:
        client = self.client
        backend = self.decision.backend
        client._pause(PAUSE_CONNECT)
        task = client.loop.create_task(
            client.rt.pool.connect(self.key, backend.name if backend else ""))
        self.connect_task = task
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[UpstreamConnection]) -> None:
        self.connect_task = None
        if task.cancelled():
            return
        exc = task.exception()
        if self.done:
            if exc is None:
                task.result().release()
            return
        self.client._resume(PAUSE_CONNECT)
        if exc is not None:
            if isinstance(exc, TimeoutError):
                self._error(504, "upstream connect timeout")
            else:
                self._error(502, "upstream connect error")
            return
        self._attach(task.result())

    def request_body(self, data: bytes) -> None:
        if self.tee is not None:
            self.tee.feed(data)
        if self.up is not None:
            self._send(data)
        elif not self.done:
            self.pending.append(data)

    def request_end(self) -> None:
        if self.tee is not None:
            tee, self.tee = self.tee, None
            tee.finish()
        if self.up is not None:
            self._send_end()

    def _send(self, data: bytes) -> None:
        assert self.up is not None
        if self.chunked:
            self.up.writelines(hdr.chunk(data))
        else:
            self.up.write(data)

    def _send_end(self) -> None:
        if self.sent_end:
            return
        self.sent_end = True
        if self.chunked and self.up is not None:
            self.up.write(hdr.CHUNK_END)

    # ------------------------------------------------------------------ UpstreamSink

    def upstream_head(self, status: int, reason: str, headers: hdr.Headers,
                      framing: str, length: int | None = None) -> None:
        client, req = self.client, self.req
        if status == 101:  # Upgrade is never forwarded, so a switch is a broken backend
            self._error(502, "unexpected protocol switch from upstream")
            return
        out = hdr.apply_modifiers(hdr.strip_hop_by_hop(headers), self.decision.response_headers)
        if framing in ("chunked", "close"):
            out = [p for p in out if p[0].lower() != "content-length"]
            if req.version == "1.0":
                self.down = "close"
            else:
                self.down = "chunked"
                out.append(("Transfer-Encoding", "chunked"))
        keep = client.keep_alive_for(req) and self.down != "close"
        out.extend(hdr.connection_header(keep, req.version))
        if not keep:
            client.close_after = True
        client.status = status
        client.resp_state = RESP_STARTED
        self.held = hdr.response_head(status, reason, out)
        if self.head_timer and self.timer is not None:
            self.timer.cancel()  # only the wait for the head was bounded
            self.timer = None

    def upstream_body(self, data: bytes) -> None:
        transport = self.client.transport
        if transport is None:
            return
        if self.down == "chunked":
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

    def upstream_flush(self) -> None:
        """Write a response head still held back (its body has not arrived yet)."""
        if self.held:
            held, self.held = self.held, b""
            self.client._write(held)

    def upstream_done(self, reusable: bool) -> None:
        client = self.client
        up, self.up = self.up, None
        self._finish()
        held, self.held = self.held, b""
        if self.down == "chunked":
            client._write(held + hdr.CHUNK_END)
        else:
            if held:
                client._write(held)
            if self.down == "close":
                client.close_after = True
        if up is not None:
            if reusable and self.sent_end:
                up.release()
            else:
                up.close()
        client.resp_state = RESP_DONE
        if client.exchange is self:
            client.exchange = None  # what is left of the request body is discarded
        client._resume(PAUSE_UPLOAD | PAUSE_CONNECT)
        client._maybe_finish()

    def upstream_failed(self, error: BaseException, got_bytes: bool) -> None:
        self.up = None
        if self.done:
            return
        if (self.reused and not got_bytes and not self.retried and not self.req.has_body
                and self.req.method in IDEMPOTENT and self.client.resp_state == RESP_NONE):
            self.retried = True  # a stale pooled connection: one fresh attempt
            self.sent_end = False
            self._connect()
            return
        self._error(502, "upstream connection failed")

    def upstream_pause_writing(self) -> None:
        self.client._pause(PAUSE_UPLOAD)

    def upstream_resume_writing(self) -> None:
        self.client._resume(PAUSE_UPLOAD)

    # ------------------------------------------------------------------ endings

    def _timeout(self) -> None:
        self.timer = None
        if not self.done:
            self._error(504, "upstream request timeout")

    def _error(self, status: int, text: str) -> None:
        client = self.client
        up, self.up = self.up, None
        self._finish()
        if up is not None:
            up.abort()
        if client.exchange is not self:
            return
        if client.resp_state == RESP_STARTED and self.held:
            client.resp_state = RESP_NONE  # the head never left: a clean error is possible
        self.held = b""
        if client.resp_state == RESP_NONE:
            client.respond(status, text, close=not self.req.complete)
        else:
            client.status = status
            client.record_aborted()
            client.abort()

    def _finish(self) -> None:
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.connect_task is not None:
            self.connect_task.cancel()
            self.connect_task = None

    def cancel(self) -> None:
        """Drop the exchange at once: no response will be written by it."""
        up, self.up = self.up, None
        self._finish()
        self.tee = None
        self.pending = []
        if up is not None:
            up.abort()
