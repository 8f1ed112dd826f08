"""RequestMirror: fire-and-forget copies of requests to mirror backends.

Role: for a forwarded request whose rule has RequestMirror filters, send a copy of the
request to one endpoint of each sampled mirror backend and throw the answer away.

Rules:
- Never delays or fails the main request: the main exchange only appends body chunks to a
  ``MirrorTee`` (a list append, dropped once past ``max_body``); the copies are sent by
  background tasks on the shared upstream pool, and every error in them is swallowed and
  counted (``rauta_mirror_requests{outcome=...}``).
- Sampling: each mirror is used for a request with probability numerator/denominator.
- Bounded: at most ``max_inflight`` mirror exchanges at once, across all mirrors; beyond
  that a copy is dropped (outcome "dropped"). Each copy is cut off after ``timeout`` s.
- The copy gets the request head as sent upstream (after the rule-level request header
  modifier; the mirror backend's own modifier is applied on top) and goes out only once
  the main request's body has been read. Body: when the whole body was at most
  ``max_body`` bytes (64 KiB by default) it is sent with its exact Content-Length; a
  larger (streamed) body is not kept, and the copy carries the head with
  ``Content-Length: 0``. A client that disconnects before its body is complete gets no
  copy sent.
- The endpoint of a mirror backend is chosen at random; invalid backends and backends
  without ready endpoints are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import random

from rauta.model.config import Backend, Mirror
from rauta.proxy import headers as hdr
from rauta.proxy.metrics import ProxyMetrics
from rauta.proxy.upstream import UpstreamConnection, UpstreamPool

log = logging.getLogger(__name__)


def sampled(mirror: Mirror, rnd: random.Random | None = None) -> bool:
    """Is this request mirrored (probability numerator/denominator)?"""
    if mirror.denominator <= 0 or mirror.numerator <= 0:
        return False
    if mirror.numerator >= mirror.denominator:
        return True
    return (rnd or random).randrange(mirror.denominator) < mirror.numerator


class _DiscardSink:
    """Reads a mirror's response to its end and resolves a future with reusability."""

    def __init__(self, done: asyncio.Future[bool]) -> None:
        self.done = done

    def upstream_head(self, status: int, reason: str, headers: hdr.Headers,
                      framing: str, length: int | None) -> None:
        pass

    def upstream_body(self, data: bytes) -> None:
        pass

    def upstream_done(self, reusable: bool) -> None:
        if not self.done.done():
            self.done.set_result(reusable)

    def upstream_failed(self, error: BaseException, got_bytes: bool) -> None:
        if not self.done.done():
            self.done.set_exception(error)

    def upstream_flush(self) -> None:
        pass

    def upstream_pause_writing(self) -> None:
        pass

    def upstream_resume_writing(self) -> None:
        pass


class MirrorTee:
    """The body collector of one mirrored request; ``finish`` sends the copies."""

    __slots__ = ("_mirrorer", "_method", "_target", "_jobs", "_chunks", "_size", "_over",
                 "_has_body")

    def __init__(self, mirrorer: Mirrorer, method: str, target: str,
                 jobs: list[tuple[Backend, hdr.Headers]], has_body: bool) -> None:
        self._mirrorer = mirrorer
        self._method = method
        self._target = target
        self._jobs = jobs
        self._chunks: list[bytes] = []
        self._size = 0
        self._over = False
        self._has_body = has_body

    def feed(self, data: bytes) -> None:
        if self._over:
            return
        self._size += len(data)
        if self._size > self._mirrorer.max_body:
            self._over = True
            self._chunks = []
        else:
            self._chunks.append(data)

    def finish(self) -> None:
        body = b"" if self._over else b"".join(self._chunks)
        self._chunks = []
        self._mirrorer.launch(self._method, self._target, self._jobs, body, self._has_body)


class Mirrorer:
    """Sends mirror copies in bounded background tasks over the upstream pool."""

    def __init__(self, pool: UpstreamPool, metrics: ProxyMetrics | None = None, *,
                 max_inflight: int = 64, max_body: int = 64 * 1024,
                 timeout: float = 30.0) -> None:
        self.pool = pool
        self.metrics = metrics
        self.max_inflight = max_inflight
        self.max_body = max_body
        self.timeout = timeout
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def inflight(self) -> int:
        return len(self._tasks)

    def start(self, mirrors: tuple[Mirror, ...], method: str, target: str,
              headers: hdr.Headers, has_body: bool) -> MirrorTee | None:
        """A tee for a request's body when at least one mirror is sampled, else None.

        ``headers`` is the upstream header list before framing, with the rule-level
        request modifier applied. With ``has_body`` False the copies leave at once.
        """
        jobs: list[tuple[Backend, hdr.Headers]] = []
        for mirror in mirrors:
            backend = mirror.backend
            if backend.invalid is not None or not backend.endpoints or not sampled(mirror):
                continue
            jobs.append((backend, hdr.apply_modifier(headers, backend.request_headers)))
        if not jobs:
            return None
        tee = MirrorTee(self, method, target, jobs, has_body)
        if not has_body:
            tee.finish()
            return None
        return tee

    def launch(self, method: str, target: str, jobs: list[tuple[Backend, hdr.Headers]],
               body: bytes, has_body: bool) -> None:
        loop = asyncio.get_running_loop()
        for backend, headers in jobs:
            if len(self._tasks) >= self.max_inflight:
                self._count("dropped")
                continue
            if has_body:
                headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
                headers.append(("Content-Length", str(len(body))))
            head = hdr.request_head(method, target, headers)
            ep = random.choice(backend.endpoints)
            task = loop.create_task(self._send((ep.address, ep.port), backend.name, head,
                                               body, method == "HEAD"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, key: tuple[str, int], backend: str, head: bytes, body: bytes,
                    head_only: bool) -> None:
        conn: UpstreamConnection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                conn = self.pool.acquire(key) or await self.pool.connect(key, backend)
                done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
                conn.begin(_DiscardSink(done), head, head_only=head_only)
                if body:
                    conn.write(body)
                reusable = await done
            if reusable:
                conn.release()
            else:
                conn.close()
            conn = None
            self._count("sent")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a mirror must never matter to anyone
            log.debug("mirror to %s failed: %r", backend, exc)
            self._count("failed")
        finally:
            if conn is not None:
                conn.abort()

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.mirror(outcome)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
