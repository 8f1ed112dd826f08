"""Upstream (proxy -> backend) HTTP/1.1 connections and their keep-alive pool.

Role: one ``asyncio.Protocol`` per backend connection, parsing responses with
``httptools.HttpResponseParser`` and handing them to a *sink* (the client connection that
owns the exchange, or a mirror that discards the response), plus ``UpstreamPool``, the
bounded per-endpoint pool of idle keep-alive connections.

Rules:
- A connection carries one exchange at a time (no upstream pipelining), and each exchange
  gets a fresh parser (``begin``): nothing of one response carries over to the next.
- The sink hears the end of the response (``upstream_done``) only after the read that
  held it was parsed whole, so a connection goes back to the pool only at a message
  boundary: its response was read completely, the backend allowed keep-alive, the sink
  finished sending the request, and no byte followed the end of the response in that
  read. A ``release`` asked for while a read is being parsed waits for the end of that
  read. Bytes after the end of a response (a second response, a body on a HEAD response),
  a response beginning with no exchange attached, and bytes while idle in the pool are
  stray: the connection is closed, never pooled (the response already read stands).
  Empty lines (CRLF) after a response are skipped by llhttp and are not stray.
- Response framing given to the sink: ``"none"`` (HEAD, 204, 304), ``"chunked"``,
  ``"length"`` (Content-Length, passed as ``length``; None for the other framings) or
  ``"close"`` (delimited by the backend closing). A clean EOF ends a ``"close"`` response
  normally; a reset (``connection_lost`` with an error) never does, and EOF anywhere else
  is a failure too, reported with ``got_bytes`` telling whether any response byte had
  arrived (only then is a retry unsafe). Interim 1xx responses (other than 101) are
  skipped. A HEAD response ends with its head.
- Head limits, as for client heads: the heads of one response (interim 1xx ones and the
  final one together) may take at most ``max_head_bytes`` bytes and ``max_headers``
  headers. Bytes are counted before parsing and the parser is fed only what still fits
  (it keeps a header value whole, so a huge one is stopped before it is buffered); over a
  limit the sink hears ``upstream_failed(UpstreamHeadTooLarge)`` (the exchange answers
  502) and the connection is aborted.
- The pool keeps at most ``max_idle`` connections per endpoint ``(address, port)``,
  reuses the most recently used first (LIFO), drops connections the backend closed,
  closes idle ones older than ``idle_timeout`` seconds, and closes idle (and later
  released) connections of endpoints that ``retain`` no longer lists.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol, cast

import httptools

from rauta.proxy import headers as hdr
from rauta.proxy.metrics import ProxyMetrics

Key = tuple[str, int]


class UpstreamHeadTooLarge(Exception):
    """The backend's response head is over ``max_head_bytes`` or ``max_headers``."""


class _Stray(Exception):
    """Bytes after the end of the response (or with no exchange attached)."""


class UpstreamSink(Protocol):
    """What receives one upstream response."""

    def upstream_head(self, status: int, reason: str, headers: hdr.Headers,
                      framing: str, length: int | None) -> None: ...

    def upstream_body(self, data: bytes) -> None: ...

    def upstream_done(self, reusable: bool) -> None: ...

    def upstream_failed(self, error: BaseException, got_bytes: bool) -> None: ...

    def upstream_flush(self) -> None: ...

    def upstream_pause_writing(self) -> None: ...

    def upstream_resume_writing(self) -> None: ...


class Pool(Protocol):
    """What an ``UpstreamConnection`` needs of its pool (``UpstreamPool``; tests use fakes)."""

    max_head_bytes: int
    max_headers: int

    def release(self, conn: UpstreamConnection) -> None: ...

    def forget(self, conn: UpstreamConnection) -> None: ...


class Upstream(Protocol):
    """What an exchange uses of one backend connection (``UpstreamConnection``)."""

    reused: bool
    write_paused: bool
    closed: bool

    def begin(self, sink: UpstreamSink, head: bytes, *, head_only: bool = False) -> None: ...

    def write(self, data: bytes) -> None: ...

    def writelines(self, parts: tuple[bytes, ...] | list[bytes]) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def release(self) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class Connections(Protocol):
    """What an exchange uses of the pool: an idle connection, or a new one."""

    def acquire(self, key: Key) -> Upstream | None: ...

    async def connect(self, key: Key, backend: str = "") -> Upstream: ...


# Where the response of the current exchange is.
_HEAD, _BODY, _DONE = 0, 1, 2


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to a backend endpoint."""

    def __init__(self, pool: Pool, key: Key) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.sink: UpstreamSink | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.write_paused = False
        self.max_head_bytes = pool.max_head_bytes
        self.max_headers = pool.max_headers
        self._parser: httptools.HttpResponseParser | None = None
        self._parser_clean = False  # the parser ended a whole response and may be reused
        self._reading_paused = False
        self._head_only = False
        self._headers: hdr.Headers = []
        self._chunked = False
        self._length: int | None = None
        self._reason = ""
        self._interim = False
        self._state = _DONE  # no exchange yet: as clean as a finished one
        self._framing = ""
        self._keep_alive = False
        self._got_bytes = False
        self._head_bytes = 0
        self._header_count = 0
        self._in_feed = False
        self._release_wanted = False
        self._stray = False

    # ------------------------------------------------------------------ used by sinks

    def begin(self, sink: UpstreamSink, head: bytes, *, head_only: bool = False) -> None:
        """Start an exchange: ``head`` is written now, the body follows via ``write``."""
        self.sink = sink
        if not self._parser_clean or self._parser is None:
            # A parser is reused only after a whole final response that keeps the
            # connection (llhttp is then back at a message start); else nothing carries over.
            self._parser = httptools.HttpResponseParser(self)
        self._parser_clean = False
        self._head_only = head_only
        self._headers = []
        self._chunked = False
        self._length = None
        self._reason = ""
        self._interim = False
        self._state = _HEAD
        self._framing = ""
        self._keep_alive = False
        self._got_bytes = False
        self._head_bytes = 0
        self._header_count = 0
        self._release_wanted = False
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
        """Give the connection back to the pool (the caller checked it is reusable).

        Asked for while a read is being parsed, it waits until that read is parsed whole,
        and becomes a close if any byte followed the end of the response."""
        self.sink = None
        if self._in_feed:
            self._release_wanted = True
            return
        if self._stray or self._state != _DONE:
            self.close()
            return
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
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.sink is None or self._parser is None:
            # Bytes while idle, or after the response was handed over: out of sync.
            self._stray = True
            self.close()
            return
        self._got_bytes = True
        error: BaseException | None = None
        self._in_feed = True
        try:
            if self._state == _HEAD and len(data) > self.max_head_bytes - self._head_bytes:
                # Feed only what the head may still take: the parser keeps a header
                # value whole, so a huge one must be stopped before it is buffered.
                room = self.max_head_bytes - self._head_bytes
                view = memoryview(data)
                self._head_bytes += room
                self._parser.feed_data(view[:room])
                if self._state == _HEAD and not self.closed:
                    raise UpstreamHeadTooLarge(
                        f"upstream response head over {self.max_head_bytes} bytes")
                if not self.closed:
                    self._parser.feed_data(view[room:])
            else:
                if self._state == _HEAD:
                    self._head_bytes += len(data)
                self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade,
                UpstreamHeadTooLarge) as exc:
            error = exc.__context__ if isinstance(exc.__context__,
                                                  UpstreamHeadTooLarge) else exc
        finally:
            self._in_feed = False
        if self._stray or (error is not None and self._state == _DONE):
            # Bytes followed the end of the response (or came with no exchange): the
            # response stands, the connection is never pooled again.
            self._stray = True
            sink = self.sink
            self.close()
            if sink is not None and self._state == _DONE:
                sink.upstream_done(False)
            return
        if error is not None:
            self._fail(error)
            return
        if self._state == _DONE:
            sink, self.sink = self.sink, None
            if self._release_wanted:
                self._release_wanted = False
                self.release()
            elif sink is not None:
                # The sink releases or closes us; a backend that will close is never reused.
                sink.upstream_done(self._keep_alive and not self.closed)
            return
        if self._release_wanted:  # released before the response ended: never reused
            self._release_wanted = False
            self.close()
            return
        if self.sink is not None:
            self.sink.upstream_flush()

    def eof_received(self) -> bool | None:
        return False  # the transport closes; connection_lost reports

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        sink, self.sink = self.sink, None
        if sink is None:
            return
        if self._state == _BODY and self._framing == "close" and exc is None:
            sink.upstream_done(False)  # a clean EOF ends a close-delimited body
        else:  # a reset never completes a response
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

    def _check_attached(self) -> None:
        if self._state == _DONE or self.sink is None:
            self._stray = True
            raise _Stray

    def on_message_begin(self) -> None:
        self._check_attached()

    def on_status(self, reason: bytes) -> None:
        self._reason = reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        # (The header count is checked once the head is complete: the raw byte limit
        # already bounds what a head can hold meanwhile.)
        size = len(name)
        if size == 17 or size == 14:
            self._framing_header(name.lower(), value)
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def _framing_header(self, name: bytes, value: bytes) -> None:
        if name == b"transfer-encoding":
            self._chunked = b"chunked" in value.lower()
        elif name == b"content-length":
            digits = value.strip()  # llhttp accepted it: digits only, one value
            self._length = int(digits) if digits.isdigit() else None

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        self._header_count += len(self._headers)
        if self._header_count > self.max_headers:
            raise UpstreamHeadTooLarge(f"upstream response over {self.max_headers} headers")
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim = True
            return
        headers = self._headers
        length = None
        if self._head_only or status in (204, 304) or status < 200:
            framing = "none"
        elif self._chunked:
            framing = "chunked"
        elif self._length is not None:
            framing = "length"
            length = self._length
        else:
            framing = "close"
        self._framing = framing
        self._state = _BODY
        self._keep_alive = self._parser.should_keep_alive()
        if self.sink is not None:
            self.sink.upstream_head(status, self._reason, headers, framing, length)
        if self._head_only:
            # llhttp cannot be told the request was HEAD: the response ends here, and any
            # body llhttp goes on to parse is stray bytes.
            self._state = _DONE

    def on_body(self, data: bytes) -> None:
        sink = self.sink
        if sink is None or self._state == _DONE:  # e.g. a body on a HEAD response
            self._stray = True
            raise _Stray
        sink.upstream_body(data)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            self._headers = []
            self._chunked = False
            self._length = None
            self._reason = ""
            return
        if self._state == _DONE:
            return  # the end of a HEAD response llhttp saw as bodiless
        self._state = _DONE
        assert self._parser is not None
        self._keep_alive = self._parser.should_keep_alive()
        self._parser_clean = self._keep_alive and not self._head_only

    def _fail(self, exc: BaseException) -> None:
        sink, self.sink = self.sink, None
        self.abort()
        if sink is not None:
            sink.upstream_failed(exc, True)


class UpstreamPool:
    """Idle keep-alive connections per endpoint, and new connections on demand."""

    def __init__(self, *, max_idle: int = 64, idle_timeout: float = 60.0,
                 connect_timeout: float = 5.0, metrics: ProxyMetrics | None = None,
                 max_head_bytes: int = 64 * 1024, max_headers: int = 100) -> None:
        self.max_idle = max_idle
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
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
