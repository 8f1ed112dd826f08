"""Upstream (proxy -> backend) HTTP/1.1 connections and their keep-alive pool.

Role: one ``asyncio.Protocol`` per backend connection, parsing responses with
``httptools.HttpResponseParser`` and handing them to a *sink* (the client connection that
owns the exchange, or a mirror that discards the response), plus ``UpstreamPool``, the
bounded per-endpoint pool of idle keep-alive connections.

Rules:
- A connection carries one exchange at a time (no upstream pipelining). It goes back to
  the pool only when its response was read completely, the backend allowed keep-alive,
  and the sink finished sending the request; anything else closes it.
- Response framing given to the sink: ``"none"`` (HEAD, 204, 304), ``"chunked"``,
  ``"length"`` (Content-Length) or ``"close"`` (delimited by the backend closing). EOF
  ends a ``"close"`` response normally; EOF anywhere else is a failure, reported with
  ``got_bytes`` telling whether any response byte had arrived (only then is a retry
  unsafe). Interim 1xx responses (other than 101) are skipped.
- The pool keeps at most ``max_idle`` connections per endpoint ``(address, port)``,
  reuses the most recently used first (LIFO), drops connections the backend closed,
  closes idle ones older than ``idle_timeout`` seconds, and closes idle (and later
  released) connections of endpoints that ``retain`` no longer lists.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import httptools

from rauta.proxy import headers as hdr
from rauta.proxy.metrics import ProxyMetrics

Key = tuple[str, int]


class UpstreamSink(Protocol):
    """What receives one upstream response."""

    def upstream_head(self, status: int, reason: str, headers: hdr.Headers,
                      framing: str) -> None: ...

    def upstream_body(self, data: bytes) -> None: ...

    def upstream_done(self, reusable: bool) -> None: ...

    def upstream_failed(self, error: BaseException, got_bytes: bool) -> None: ...

    def upstream_flush(self) -> None: ...

    def upstream_pause_writing(self) -> None: ...

    def upstream_resume_writing(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to a backend endpoint."""

    def __init__(self, pool: UpstreamPool, key: Key) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.sink: UpstreamSink | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.write_paused = False
        self._parser = httptools.HttpResponseParser(self)
        self._reading_paused = False
        self._head_only = False
        self._headers: hdr.Headers = []
        self._chunked = False
        self._has_length = False
        self._reason = ""
        self._interim = False
        self._headers_done = False
        self._framing = ""
        self._got_bytes = False
        self._renew_parser = False

    # ------------------------------------------------------------------ used by sinks

    def begin(self, sink: UpstreamSink, head: bytes, *, head_only: bool = False) -> None:
        """Start an exchange: ``head`` is written now, the body follows via ``write``."""
        self.sink = sink
        self._head_only = head_only
        self._headers = []
        self._chunked = self._has_length = False
        self._reason = ""
        self._interim = False
        self._headers_done = False
        self._framing = ""
        self._got_bytes = False
        assert self.transport is not None
        self.transport.write(head)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def writelines(self, parts: tuple[bytes, ...] | list[bytes]) -> None:
        assert self.transport is not None
        self.transport.writelines(parts)

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def release(self) -> None:
        """Give the connection back to the pool (the caller checked it is reusable)."""
        self.sink = None
        self.resume_reading()
        self.pool.release(self)

    def abort(self) -> None:
        """Drop the connection at once (no reuse); the sink hears nothing more."""
        self.sink = None
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.sink = None
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.sink is None:  # bytes while idle: the backend is out of sync
            self.close()
            return
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(exc)
        if self.sink is not None:
            self.sink.upstream_flush()
        if self._renew_parser:
            self._renew_parser = False
            self._parser = httptools.HttpResponseParser(self)

    def eof_received(self) -> bool | None:
        return False  # the transport closes; connection_lost reports

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        sink, self.sink = self.sink, None
        if sink is None:
            return
        if self._headers_done and self._framing == "close":
            sink.upstream_done(False)
        else:
            sink.upstream_failed(exc or ConnectionResetError("backend closed the connection"),
                                 self._got_bytes)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.sink is not None:
            self.sink.upstream_pause_writing()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.sink is not None:
            self.sink.upstream_resume_writing()

    # ------------------------------------------------------------------ httptools callbacks

    def on_status(self, reason: bytes) -> None:
        self._reason = reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 17 and name.lower() == b"transfer-encoding":
            self._chunked = b"chunked" in value.lower()
        elif len(name) == 14 and name.lower() == b"content-length":
            self._has_length = True
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim = True
            return
        headers = self._headers
        if self._head_only or status in (204, 304) or status < 200:
            framing = "none"
        elif self._chunked:
            framing = "chunked"
        elif self._has_length:
            framing = "length"
        else:
            framing = "close"
        self._framing = framing
        self._headers_done = True
        if self.sink is not None:
            self.sink.upstream_head(status, self._reason, headers, framing)
        if self._head_only and self.sink is not None:
            # llhttp cannot be told the request was HEAD: finish here, parse anew next time.
            self._renew_parser = True
            self._complete(self._parser.should_keep_alive())

    def on_body(self, data: bytes) -> None:
        if self.sink is not None and not self._head_only:
            self.sink.upstream_body(data)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            self._headers = []
            self._chunked = self._has_length = False
            self._reason = ""
            return
        if self._head_only:
            return
        self._complete(self._parser.should_keep_alive())

    def _complete(self, keep_alive: bool) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            # The sink releases or closes us; a backend that will close is never reused.
            sink.upstream_done(keep_alive and not self.closed)

    def _fail(self, exc: BaseException) -> None:
        sink, self.sink = self.sink, None
        self.abort()
        if sink is not None:
            sink.upstream_failed(exc, True)


class UpstreamPool:
    """Idle keep-alive connections per endpoint, and new connections on demand."""

    def __init__(self, *, max_idle: int = 64, idle_timeout: float = 60.0,
                 connect_timeout: float = 5.0, metrics: ProxyMetrics | None = None) -> None:
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.metrics = metrics
        self.opened = 0  # connections ever opened (tests count reuse with it)
        self._idle: dict[Key, list[UpstreamConnection]] = {}
        self._wanted: frozenset[Key] | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def acquire(self, key: Key) -> UpstreamConnection | None:
        """An idle live connection to ``key`` (most recently used first), or None."""
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                return conn
        return None

    async def connect(self, key: Key, backend: str = "") -> UpstreamConnection:
        """A new connection to ``key``; raises OSError/TimeoutError on failure."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, proto = await loop.create_connection(
                    lambda: UpstreamConnection(self, key), key[0], key[1])
        except (OSError, TimeoutError):
            if self.metrics is not None:
                self.metrics.connect_error(backend)
            raise
        self.opened += 1
        if self.metrics is not None:
            self.metrics.connection_opened(backend)
        return proto

    def release(self, conn: UpstreamConnection) -> None:
        if conn.closed or self._closed or (self._wanted is not None
                                           and conn.key not in self._wanted):
            conn.close()
            return
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= self.max_idle:
            conn.close()
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        conn.idle_since = self._loop.time()
        idle.append(conn)
        if self._sweeper is None:
            self._schedule_sweep()

    def forget(self, conn: UpstreamConnection) -> None:
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
            if not idle:
                del self._idle[conn.key]

    def retain(self, keys: frozenset[Key]) -> int:
        """Keep only endpoints in ``keys``: close the others' idle connections (counted)."""
        self._wanted = keys
        closed = 0
        for key in [k for k in self._idle if k not in keys]:
            for conn in self._idle.pop(key):
                conn.close()
                closed += 1
        return closed

    def idle_count(self, key: Key | None = None) -> int:
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(len(v) for v in self._idle.values())

    def sweep(self) -> None:
        """Close idle connections unused for ``idle_timeout`` seconds."""
        now = asyncio.get_running_loop().time()
        for key in list(self._idle):
            keep = []
            for conn in self._idle[key]:
                if now - conn.idle_since > self.idle_timeout:
                    conn.close()
                else:
                    keep.append(conn)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    def _schedule_sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(max(1.0, self.idle_timeout / 4), self._sweep_tick)

    def _sweep_tick(self) -> None:
        self._sweeper = None
        self.sweep()
        if self._idle and not self._closed:
            self._schedule_sweep()

    def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conns in self._idle.values():
            for conn in conns:
                with contextlib.suppress(Exception):
                    conn.close()
        self._idle.clear()
