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
- "-" writes to stdout. A write error stops the log with one warning (traffic goes on).
"""

from __future__ import annotations

import collections
import json
import logging
import sys
import threading
import time
from datetime import UTC, datetime
from typing import IO, Any

log = logging.getLogger(__name__)

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
        self._out: IO[str] = (sys.stdout if target == "-"
                              else open(target, "a", encoding="utf-8"))  # noqa: SIM115
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

    @staticmethod
    def format(entry: Entry) -> str:
        ts, client, method, url, host, version, status, port, route, rule, backend, secs = entry
        stamp = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
        doc: dict[str, Any] = {
            "ts": stamp.replace("+00:00", "Z"), "client": client, "method": method,
            "path": url.decode("latin-1"), "host": host or "", "version": version,
            "status": status, "port": port, "route": route, "rule": rule,
            "backend": backend, "duration_ms": round(secs * 1000, 3),
        }
        return json.dumps(doc, separators=(",", ":"))

    def _drain(self) -> None:
        queue = self._queue
        lines = []
        while queue:
            lines.append(self.format(queue.popleft()))
        if lines:
            self._out.write("\n".join(lines) + "\n")
            self._out.flush()
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
        if self._out is not sys.stdout:
            self._out.close()
