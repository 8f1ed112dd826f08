"""One forwarded request: the bridge between a client connection and an upstream one.

Role: an ``Exchange`` carries out a "forward" Decision for one request. It builds the
upstream head (``headers``), takes a pooled connection or opens one, streams the request
body up and the response back, applies the response header modifiers, feeds the mirror
tee, and enforces the route's timeouts. It talks to its two sides through two narrow
interfaces and owns no state of either:

- the client side is a ``Downstream`` (below; ``server.ClientConnection`` is the real
  one, tests use a fake): start the response, send body, end it, fail, flush, pause and
  resume the upload. How the response is framed for the client, keep-alive, and every
  state of the client connection are the Downstream's business.
- the backend side is an ``UpstreamConnection`` (seen through ``upstream.Upstream``), for
  which the Exchange is the
  ``UpstreamSink``.

Rules:
- Upstream head: ``headers.upstream_headers`` (client headers minus hop-by-hop ones,
  framing, ``Host`` and ``Expect``; ``Host`` is the Decision's ``upstream_host``; the
  forwarding headers per ``trusted_hops``), then the Decision's request modifiers (rule,
  then backend), then the framing, last, from the parser's state: ``Content-Length`` as
  parsed (never as received), or ``Transfer-Encoding: chunked``. ``Connection`` can
  never remove framing or ``Host``.
- The target is the Decision's ``upstream_path``, which carries the query untouched.
- Response head: ``headers.response_headers`` (no hop-by-hop headers, no framing), then
  the Decision's response modifiers; the Downstream adds the framing for the client.
- Until the upstream connection exists, body bytes are kept and the upload is paused,
  so at most one socket read is kept.
- The upstream connection is released only when the response was complete, the backend
  allowed keep-alive and the whole request was sent; otherwise it is closed. (The
  connection itself defers the release until its parser has returned.)
- Timeout: the shorter of ``timeouts.request_ms`` and ``timeouts.backend_request_ms``,
  counted from the request's headers. A route without timeouts gets a 504 when no
  response head arrives within ``response_head_timeout`` of the request body's end (an
  upload may take as long as it likes). Before the response head: 504. After: the
  client connection is dropped. A connect timeout is a 504, any other connect error 502.
  A route timeout is a deadline on the loop's coarse wheel (``timers.at``, 10 ms
  slots), never a timer handle per request.
- A new connection the backend closed before the request could be written is replaced
  once (nothing was sent, so any method may be), then a 502; never a write to a closed
  transport, which would leave the client waiting.
- A request on a reused keep-alive connection that fails before any response byte is
  retried once on a new connection when it had no body and its method is idempotent
  (RFC 9110 §9.2.2).
- Once finished (``done``), late events are ignored; ``cancel`` drops everything at once
  (client gone, client parse error).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from rauta.model.routing import Decision, RequestView
from rauta.proxy import headers as hdr
from rauta.proxy import timers
from rauta.proxy.upstream import Upstream

if TYPE_CHECKING:
    from rauta.proxy.mirror import MirrorTee
    from rauta.proxy.runtime import Runtime

# RFC 9110 9.2.2: only these may be retried automatically after a connection failure.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class Downstream(Protocol):
    """The client side of one exchange (the mirror of ``upstream.UpstreamSink``)."""

    def start_response(self, status: int, reason: str, headers: hdr.Headers, framing: str,
                       length: int | None) -> None:
        """A response head: ``headers`` carry no framing; ``framing`` is ``"none"``,
        ``"length"`` (``length`` bytes follow) or ``"stream"`` (until ``end_response``);
        for ``"none"``, ``length`` is a HEAD response's Content-Length, if any."""

    def send_body(self, data: bytes) -> None: ...

    def end_response(self) -> None: ...

    def flush(self) -> None:
        """Write out anything held back (a head waiting for its first body bytes)."""

    def fail(self, status: int, text: str) -> None:
        """The exchange cannot go on: answer ``status`` if nothing was sent, else drop."""

    def pause_upload(self) -> None: ...

    def resume_upload(self) -> None: ...


class RequestHead(Protocol):
    """What an exchange reads of the client's request (``server.Request``)."""

    method: str
    headers: hdr.Headers
    length: int | None
    chunked: bool
    has_body: bool
    t0: float


class Exchange:
    """A forwarded request in flight (see the module doc)."""

    __slots__ = ("down", "rt", "loop", "req", "decision", "view", "client_ip", "scheme", "key",
                 "up", "head", "pending", "ended", "sent_end", "tee", "timer", "head_timer",
                 "connect_task", "reused", "retried", "done", "started", "download_paused",
                 "head_deadline", "obs")

    def __init__(self, down: Downstream, rt: Runtime, req: RequestHead, decision: Decision,
                 view: RequestView, *, client_ip: str, scheme: str,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.down = down
        self.rt = rt
        self.loop = loop or asyncio.get_running_loop()
        self.req = req
        self.decision = decision
        self.view = view
        self.client_ip = client_ip
        self.scheme = scheme
        ep = decision.endpoint
        assert ep is not None
        self.key = (ep.address, ep.port)
        self.up: Upstream | None = None
        self.head = b""
        self.pending: list[bytes] = []
        self.ended = False  # the client's request body is complete
        self.sent_end = False  # ... and all of it went upstream
        self.tee: MirrorTee | None = None
        self.timer: timers.Deadline | None = None
        self.head_timer = False  # the timer bounds only the wait for the response head
        self.connect_task: asyncio.Task[Upstream] | None = None
        self.reused = False
        self.retried = False
        self.done = False
        self.started = False  # a response head was handed to the Downstream
        self.download_paused = False
        self.head_deadline = 0.0  # loop time by which a response head must come (0: none)
        self.obs: Any = None  # observer state (rauta.observe.proxyhook), None when off

    # ------------------------------------------------------------------ request side

    def start(self) -> None:
        req, d, rt = self.req, self.decision, self.rt
        base = hdr.upstream_headers(req.headers, host=d.upstream_host, client_ip=self.client_ip,
                                    proto=self.scheme, forwarded_host=self.view.host,
                                    trusted_hops=rt.trusted_hops)
        headers = hdr.apply_modifiers(base, d.request_headers)
        framing = hdr.framing_headers(req.length, req.chunked)
        if d.mirrors:
            rule_mod = d.rule.filters.request_headers if d.rule is not None else None
            self.tee = rt.mirrors.start(d.mirrors, req.method, d.upstream_path,
                                        hdr.apply_modifier(base, rule_mod) + framing,
                                        req.has_body)
        self.head = hdr.request_head(req.method, d.upstream_path, headers + framing)
        t = d.timeouts
        ms = t.request_ms if t is not None else None
        if t is not None and t.backend_request_ms and (not ms or t.backend_request_ms < ms):
            ms = t.backend_request_ms
        if ms:
            # Counted from the headers (t0): a deadline on the coarse wheel, no handle.
            self.timer = timers.at(self.loop, req.t0 + ms / 1000.0, self._timeout)
        else:
            self.head_timer = True  # armed when the request body ends (request_end)
        conn = rt.pool.acquire(self.key)
        if conn is not None:
            self._attach(conn)
        else:
            self._connect()

    def _attach(self, conn: Upstream) -> None:
        self.up = conn
        self.reused = conn.reused
        conn.begin(self, self.head, head_only=self.req.method == "HEAD")
        if self.rt.observer is not None:
            self.obs = self.rt.observer.sent(self.decision, conn, self.req.method,
                                             self.view.path, self.view.host, self.obs)
        pending, self.pending = self.pending, []
        for data in pending:
            self._send(data)
        if self.ended:
            self._send_end()
        if conn.write_paused:
            self.down.pause_upload()
        if self.download_paused:
            conn.pause_reading()

    def _connect(self) -> None:
        backend = self.decision.backend
        self.down.pause_upload()  # body bytes wait here: read no more meanwhile
        if self.rt.observer is not None:
            self.obs = self.rt.observer.connecting()
        task = self.loop.create_task(self.rt.pool.connect(self.key, backend.name if backend else ""))
        self.connect_task = task
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[Upstream]) -> None:
        self.connect_task = None
        if task.cancelled():
            return
        exc = task.exception()
        if self.done:
            if exc is None:
                task.result().release()
            return
        self.down.resume_upload()
        if exc is not None:
            if self.rt.observer is not None:
                self.rt.observer.connect_failed(self.decision, self.key, exc, self.obs)
            self._error(504 if isinstance(exc, TimeoutError) else 502,
                        "upstream connect timeout" if isinstance(exc, TimeoutError)
                        else "upstream connect error")
            return
        conn = task.result()
        if conn.closed:  # the backend closed it before it could carry the request
            conn.close()
            if not self.retried:  # nothing was sent: one more attempt is safe for any method
                self.retried = True
                self.down.pause_upload()
                self._connect()
                return
            self._error(502, "upstream connection closed before the request was sent")
            return
        self._attach(conn)

    def request_body(self, data: bytes) -> None:
        if self.tee is not None:
            self.tee.feed(data)
        if self.up is not None:
            self._send(data)
        elif not self.done:
            self.pending.append(data)

    def request_end(self) -> None:
        self.ended = True
        if self.tee is not None:
            tee, self.tee = self.tee, None
            tee.finish()
        if self.up is not None:
            self._send_end()
        if self.head_timer and not self.started and not self.done:
            # No route timeout: the wait for the response head starts now. The client
            # connection's sweep enforces it (no timer handle per request).
            if self.rt.response_head_timeout:
                self.head_deadline = self.loop.time() + self.rt.response_head_timeout

    def _send(self, data: bytes) -> None:
        assert self.up is not None
        if self.req.chunked:
            self.up.writelines(hdr.chunk(data))
        else:
            self.up.write(data)

    def _send_end(self) -> None:
        if self.sent_end:
            return
        self.sent_end = True
        if self.req.chunked and self.up is not None:
            self.up.write(hdr.CHUNK_END)

    def pause_download(self) -> None:
        """The client stopped taking response bytes: stop reading the backend."""
        self.download_paused = True
        if self.up is not None:
            self.up.pause_reading()

    def resume_download(self) -> None:
        self.download_paused = False
        if self.up is not None:
            self.up.resume_reading()

    # ------------------------------------------------------------------ UpstreamSink

    def upstream_head(self, status: int, reason: str, headers: hdr.Headers, framing: str,
                      length: int | None = None) -> None:
        if status == 101:  # Upgrade is never forwarded, so a switch is a broken backend
            self._error(502, "unexpected protocol switch from upstream")
            return
        out = hdr.apply_modifiers(hdr.response_headers(headers), self.decision.response_headers)
        if framing in ("chunked", "close"):
            framing = "stream"
        elif length is None and (framing == "length" or self.req.method == "HEAD"):
            length = hdr.content_length(headers)
        if self.obs is not None:
            self.rt.observer.head(self.obs, status)
            self.obs = None
        self.started = True
        self.head_deadline = 0.0  # only the wait for the head was bounded
        self.down.start_response(status, reason, out, framing, length)

    def upstream_body(self, data: bytes) -> None:
        self.down.send_body(data)

    def upstream_flush(self) -> None:
        self.down.flush()

    def upstream_done(self, reusable: bool) -> None:
        up, self.up = self.up, None
        self._finish()
        if up is not None:
            if reusable and self.sent_end:
                up.release()
            else:
                up.close()
        self.down.end_response()

    def upstream_failed(self, error: BaseException, got_bytes: bool) -> None:
        self.up = None
        if self.done:
            return
        if (self.reused and not got_bytes and not self.retried and not self.req.has_body
                and self.req.method in IDEMPOTENT and not self.started):
            self.retried = True  # a stale pooled connection: one fresh attempt
            self.sent_end = False
            self._connect()
            return
        self._error(502, "upstream connection failed")

    def upstream_pause_writing(self) -> None:
        self.down.pause_upload()

    def upstream_resume_writing(self) -> None:
        self.down.resume_upload()

    # ------------------------------------------------------------------ endings

    def check_deadline(self, now: float) -> None:
        """Called by the client connection's sweep: enforce the response-head deadline."""
        if self.head_deadline and now >= self.head_deadline and not self.done:
            self.head_deadline = 0.0
            self._error(504, "upstream request timeout")

    def _timeout(self) -> None:
        self.timer = None
        if not self.done:
            self._error(504, "upstream request timeout")

    def _error(self, status: int, text: str) -> None:
        up, self.up = self.up, None
        self._finish()
        if up is not None:
            up.abort()
        self.down.fail(status, text)

    def _finish(self) -> None:
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.connect_task is not None:
            self.connect_task.cancel()
            self.connect_task = None

    def cancel(self) -> None:
        """Drop the exchange at once: the Downstream hears nothing more from it."""
        up, self.up = self.up, None
        self._finish()
        self.tee = None
        self.pending = []
        if up is not None:
            up.abort()
