"""The Kubernetes status sink: writes Gateway API status subresources, only when changed.

Role: the controller's ``StatusSink``. It stamps the model's statuses against the live
object's current status and writes the ``/status`` subresource.

Rules:
- Start from the live object, build the new status with ``rauta.model.status``
  (observedGeneration set, lastTransitionTime kept for unchanged conditions, other
  controllers' HTTPRoute parent entries kept), and write nothing when it equals the
  current status. With ``cached`` (the controller's watch cache, which holds every
  object's latest resourceVersion and status) the live object is never read with a GET:
  a write costs one PUT, and the controller needs no ``get`` permission. The cached
  object is copied, never changed; until the watch delivers our own write, the object
  that write stored stands in for it (no conflict with ourselves). Without ``cached``
  the object is read with a GET first.
- Writes are optimistic (PUT with that resourceVersion); a 409 Conflict (another writer)
  waits for the watch to deliver the newer version (up to ``CONFLICT_WAIT``; a GET
  without a cache) and retries, a bounded number of times. A 404 (object deleted
  meanwhile) is not an error, nor is an object the watch cache no longer holds.
- Only the leader writes. A non-leader keeps the latest desired status per object, so a
  new leader can write everything at once (``resync``).
- Writing happens in a background worker, so the reconciler never waits for status
  round-trips: up to ``concurrency`` (32) writers, each taking the next waiting key as soon
  as its last write returns (no batch waits for its slowest write); keys that arrive while
  writers are busy start more writers, up to that bound, so statuses handed over a few at
  a time (routes being created) are still written concurrently. One object is never
  written by two writers at once: a status that changes while its write is in flight
  waits for it, and only the latest is written next. A failed write is retried later
  with a backoff.
- Gateway ``status.addresses`` come from configuration (``addresses``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from rauta.model.status import AnyStatus, stamp, status_key
from rauta.reconcile.kube import KINDS, ApiError, KubeClient
from rauta.reconcile.reconciler import StatusChanges
from rauta.reconcile.sinks import utc_now
from rauta.reconcile.worker import BackgroundWriter

log = logging.getLogger("rauta.status")
Key = tuple[str, str, str]
CONFLICT_WAIT = 2.0  # seconds a write waits for the watch to deliver a newer version
PRUNE_MIN = 64  # own-write entries kept before the idle worker looks for caught-up ones


def status_body(live: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
    """The PUT body of a ``/status`` write: identity, resourceVersion and the new status.

    The API server takes everything but ``status`` from the stored object on this
    subresource, so spec, annotations and managedFields are not sent: a smaller body to
    decode on a busy API server, and nothing of another client's that could be undone."""
    meta = live.get("metadata") or {}
    return {"apiVersion": live.get("apiVersion"), "kind": live.get("kind"),
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion")
                         if k in meta},
            "status": status}


class KubeStatusSink(BackgroundWriter):
    def __init__(self, client: KubeClient, *, controller_name: str,
                 is_leader: Callable[[], bool] = lambda: True,
                 addresses: list[Mapping[str, str]] | None = None,
                 clock: Callable[[], str] = utc_now, retries: int = 5,
                 registry: CollectorRegistry | None = None, concurrency: int = 32,
                 cached: Callable[[Key], Mapping[str, Any] | None] | None = None) -> None:
        self.client = client
        self.cached = cached
        self.gets = 0
        self.controller_name = controller_name
        self.is_leader = is_leader
        self.addresses = list(addresses or [])
        self.clock = clock
        self.retries = retries
        self.desired: dict[Key, AnyStatus] = {}
        self.writes = 0
        self.skipped = 0
        self.conflicts = 0
        self.concurrency = concurrency
        self._dirty: dict[Key, None] = {}  # ordered set of keys waiting to be written
        self._inflight: set[Key] = set()  # keys a writer is writing now (one writer each)
        # Per key: (the resourceVersion our last write replaced, the one it got, the status
        # it stored), until the watch cache catches up with it (``_prune`` when idle).
        self._written: dict[Key, tuple[str | None, str | None, Any]] = {}
        self._prune_at = PRUNE_MIN
        self._failures: dict[Key, int] = {}  # consecutive failed writes, for backoff
        BackgroundWriter.__init__(self, "status-writer")
        self.metric = Counter("rauta_status_writes", "Status subresource writes, by outcome",
                              ["kind", "outcome"], registry=registry)

    key = staticmethod(status_key)

    async def write(self, changes: StatusChanges) -> None:
        """Queue changed statuses; a background worker writes them (never blocks the
        reconciler, so config propagation does not wait for status round-trips)."""
        for key in changes.gone:  # never re-sent on a leader resync
            self.desired.pop(key, None)
            self._dirty.pop(key, None)
        items: list[AnyStatus] = [*changes.gateway_classes, *changes.gateways, *changes.routes]
        for st in items:
            key = self.key(st)
            self.desired[key] = st
            self._dirty[key] = None
        self._kick()

    async def resync(self) -> None:
        """Write every desired status (after becoming leader); equal ones are skipped."""
        for key in self.desired:
            self._dirty[key] = None
        self._kick()

    def _kick(self) -> None:
        self._start_worker()
        if self._dirty:
            self._idle.clear()
        self._wake.set()

    async def _run(self) -> None:
        writers: set[asyncio.Task[None]] = set()

        def ended(task: asyncio.Task[None]) -> None:
            writers.discard(task)
            self._wake.set()  # look again: more keys, or idle

        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self.is_leader():
                    # Keys that came while writers were busy get writers of their own; a
                    # key whose write is in flight waits for that writer (no new one, or
                    # writers would start and end at once, over and over).
                    blocked = sum(1 for key in self._inflight if key in self._dirty)
                    ready = len(self._dirty) - blocked
                    for _ in range(min(self.concurrency - len(writers), ready)):
                        task = asyncio.create_task(self._drain())
                        writers.add(task)
                        task.add_done_callback(ended)
                if not self._dirty and not writers:
                    if len(self._written) >= self._prune_at:  # amortised O(1) per write
                        self._prune()
                        self._prune_at = max(PRUNE_MIN, 2 * len(self._written))
                    self._idle.set()
        finally:
            for task in writers:
                task.cancel()

    async def _drain(self) -> None:
        """One writer: the next waiting key no other writer is writing, as long as there
        is one (and we lead). A key written meanwhile stays waiting: the writer that has
        it in flight takes it again when its write returns (the latest status then)."""
        while self.is_leader():
            key = next((k for k in self._dirty if k not in self._inflight), None)
            if key is None:
                return
            del self._dirty[key]
            self._inflight.add(key)
            try:
                await self._write_key(key)
            finally:
                self._inflight.discard(key)

    async def _write_key(self, key: Key) -> None:
        st = self.desired.get(key)
        if st is None:
            return
        try:
            await self._write_one(st)
        except Exception as exc:  # API errors and network failures: retry later
            delay = min(30.0, 2.0 ** self._failures.get(key, 0))
            self._failures[key] = self._failures.get(key, 0) + 1
            log.warning("status write for %s failed: %s; retrying in %.0fs", "/".join(key),
                        exc, delay)
            asyncio.get_running_loop().call_later(delay, self._requeue, key)
            return
        self._failures.pop(key, None)

    def _prune(self) -> None:
        """Forget our own writes the watch cache has caught up with (or lost)."""
        if self.cached is None:
            return
        for key, own in list(self._written.items()):
            live = self.cached(key)
            if live is None or (live.get("metadata") or {}).get("resourceVersion") != own[0]:
                del self._written[key]

    def _requeue(self, key: Key) -> None:
        self._dirty.setdefault(key, None)
        self._kick()

    async def _cached_copy(self, key: Key,
                           stale_rv: str | None) -> Mapping[str, Any] | None:
        """The object to write over: the watch cache's, or the object our own last write
        stored while the cache still shows the version that write replaced. After a
        conflict (``stale_rv``: the version that was refused), wait for the watch to
        deliver a newer version, up to CONFLICT_WAIT s, doubling from 10 ms."""
        assert self.cached is not None
        delay = 0.01
        waited = 0.0
        while True:
            live = self.cached(key)
            if live is None:
                self._written.pop(key, None)
                return None
            rv = (live.get("metadata") or {}).get("resourceVersion")
            own = self._written.get(key)
            if own is not None:
                if own[0] == rv:  # the cache has not seen our write yet
                    rv = own[1]
                    live = {**live, "metadata": {**(live.get("metadata") or {}),
                                                 "resourceVersion": rv}, "status": own[2]}
                else:
                    del self._written[key]  # it has: the cache is as new as our write
            if stale_rv is None or rv != stale_rv or waited >= CONFLICT_WAIT:
                return live
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.5)

    async def _write_one(self, st: AnyStatus) -> None:
        kind, ns, name = self.key(st)
        key = (kind, ns, name)
        ref = KINDS[kind]
        seen_rv: str | None = None  # the resourceVersion of the copy that conflicted
        for _attempt in range(self.retries):
            obj: Mapping[str, Any] | None
            if self.cached is not None:  # read only: the PUT body is built anew
                obj = await self._cached_copy(key, seen_rv)
                if obj is None:
                    return  # not in the watch cache: deleted meanwhile
            else:
                try:
                    self.gets += 1
                    obj = await self.client.request("GET", ref.path(ns or None, name))
                except ApiError as exc:
                    if exc.status == 404:
                        return  # deleted meanwhile: nothing to write
                    raise
            if self.desired.get(key) is not st:
                return  # a newer desired status superseded this one
            current = obj.get("status") or {}
            new = stamp(st, current, controller_name=self.controller_name, now=self.clock(),
                        addresses=self.addresses)
            if new == current:
                self.skipped += 1
                self.metric.labels(kind, "unchanged").inc()
                return
            sent_rv = (obj.get("metadata") or {}).get("resourceVersion")
            try:
                stored = await self.client.request("PUT", ref.path(ns or None, name, "status"),
                                                   body=status_body(obj, new))
                self.writes += 1
                self.metric.labels(kind, "written").inc()
                if self.cached is not None and isinstance(stored, Mapping):
                    meta = stored.get("metadata") or {}
                    self._written[key] = (sent_rv, meta.get("resourceVersion"),
                                          stored.get("status"))
                return
            except ApiError as exc:
                if exc.status == 409:
                    self.conflicts += 1
                    self.metric.labels(kind, "conflict").inc()
                    seen_rv = sent_rv
                    continue
                if exc.status == 404:
                    return
                raise
        # Still conflicting: hand it back to the worker, which retries a second later.
        raise RuntimeError(f"{self.retries} conflicts in a row")
