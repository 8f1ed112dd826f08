"""The structured access log: one JSON line per answered request, off the request path.

Role: optional (``rauta serve --access-log FILE``). The proxy hands each answered request
to ``AccessLog.add`` as a tuple of values it already holds; a writer thread formats the
lines and writes them, so the event loop pays one tuple and one ``deque.append`` per
request (``bench/bench_accesslog.py`` measures the cost).

Rules:
- A line: ``{"ts", "client", "method", "path", "host", "version", "status", "port",
  "route", "rule", "backend", "duration_ms"}``; ``ts`` is the wall-clock time the request
  was answered (RFC 3339, UTC, milliseconds). ``route``/``backend`` are "" when none.
- Bounded: at most ``max_pending`` lines wait for the writer; beyond that lines are
  dropped and counted (``dropped``), never blocking the loop. The writer flushes at least
  every ``flush_every`` seconds and on ``close``.
- "-" writes to stdout. A file is opened ``O_APPEND`` and each batch of lines goes out in
  one ``write(2)`` (the rest retried if the kernel took less), so several processes (the
  workers of ``--workers N``) append to one file without splitting each other's lines.
- A write error stops the log with one warning (traffic goes on).
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from json import encoder as json_encoder
from typing import IO

log = logging.getLogger(__name__)

_quote = json_encoder.encode_basestring_ascii  # (C) a JSON string literal, ASCII only

Entry = tuple[float, str, str, bytes, "str | None", str, int, int, str, str, str, float]


class AccessLog:
    """A JSON-lines access log written by a background thread (see the module doc)."""

    def __init__(self, target: str, *, max_pending: int = 100_000,
                 flush_every: float = 0.2) -> None:
        self.target = target
        self.max_pending = max_pending
        self.flush_every = flush_every
        self.dropped = 0
        self.written = 0
        self._queue: collections.deque[Entry] = collections.deque()
        self._wake = threading.Event()
        self._closed = False
        self._out: IO[str] | None = sys.stdout if target == "-" else None
        self._fd = (-1 if target == "-" else
                    os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                            0o644))
        self._thread = threading.Thread(target=self._run, name="rauta-access-log",
                                        daemon=True)
        self._thread.start()

    def add(self, client: str, method: str, url: bytes, host: str | None, version: str,
            status: int, port: int, route: str, rule: str, backend: str,
            seconds: float) -> None:
        """Queue one answered request (called on the event loop: no formatting here)."""
        if len(self._queue) >= self.max_pending or self._closed:
            self.dropped += 1
            return
        self._queue.append((time.time(), client, method, url, host, version, status, port,
                            route, rule, backend, seconds))

    _second: tuple[int, str] = (-1, "")

    def format(self, entry: Entry) -> str:
        """One JSON line (built by hand: ``encode_basestring`` is the C string escaper, and
        the timestamp's seconds are formatted once per second)."""
        ts, client, method, url, host, version, status, port, route, rule, backend, secs = entry
        whole = int(ts)
        if self._second[0] != whole:
            self._second = (whole, datetime.fromtimestamp(whole, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S"))
        stamp = f"{self._second[1]}.{int((ts - whole) * 1000):03d}Z"
        q = _quote
        return (f'{{"ts":"{stamp}","client":{q(client)},"method":{q(method)},'
                f'"path":{q(url.decode("latin-1"))},"host":{q(host or "")},'
                f'"version":{q(version)},"status":{status},"port":{port},'
                f'"route":{q(route)},"rule":{q(rule)},"backend":{q(backend)},'
                f'"duration_ms":{secs * 1000:.3f}}}')

    def _drain(self) -> None:
        queue = self._queue
        lines = []
        while queue:
            lines.append(self.format(queue.popleft()))
        if lines:
            text = "\n".join(lines) + "\n"
            if self._out is not None:
                self._out.write(text)
                self._out.flush()
            else:  # the lines are ASCII (the formatter escapes everything else)
                data = memoryview(text.encode("ascii"))
                while data:
                    data = data[os.write(self._fd, data):]
            self.written += len(lines)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_every)
            self._wake.clear()
            try:
                self._drain()
            except (OSError, ValueError) as exc:
                log.warning("access log %s stopped: %s", self.target, exc)
                self._closed = True
                return
            if self._closed:
                return

    def close(self) -> None:
        """Write what is queued and stop the writer."""
        if self._thread.is_alive():
            self._closed = True
            self._wake.set()
            self._thread.join(5.0)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
