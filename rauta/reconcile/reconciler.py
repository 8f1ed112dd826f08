"""The reconciler: events in, model out, a live proxy and a status sink kept in step.

Role: feed source events into the ``ObjectStore``, coalesce bursts, run the pure model,
apply the desired ``RouterConfig`` to the proxy when it differs from what is applied, and
hand the statuses that changed to a ``StatusSink``.

Rules:
- Writing an equal value does nothing: an unchanged config is not re-applied and an
  unchanged status is not re-written (both diffs are keyed and compare with ``==``).
- A burst of events coalesces into one apply: the loop waits ``settle`` seconds of quiet
  after the latest event, but never more than ``max_delay`` after the first one. The
  default settle is 1 ms: with incremental translation a pass is cheap, so a single
  change should not wait; events that arrive while a pass runs coalesce into the next.
- ``Programmed`` reflects what the proxy reported it applied: statuses are computed from
  the ``Applied`` the proxy returned, never from the desired config alone.
- Translation is incremental (``rauta.model.incremental``): the store hands out the keys
  that changed since the last snapshot with the snapshot itself (``take_snapshot``), so
  only what they touch is recomputed; the result equals ``translate``'s. When a
  translation fails, the memo is dropped and the next pass starts from scratch.
- Long-lived objects are frozen out of the cyclic garbage collector (``gc.freeze``) after
  the store grows by a quarter and every ``FREEZE_EVERY`` passes: a full collection of a
  heap holding thousands of routes stops the event loop (and so the proxy) for hundreds
  of milliseconds; frozen objects are still freed by reference counting, only cycles
  among them are never collected (the bounded price).
- ``gateway_services``: the model also computes the per-Gateway Services; after every
  pass they go to the ``service_sink`` (which writes only what differs).
- An input that fails to parse never reaches the model; the last good version is kept and
  one error line is logged per distinct problem. ``check_fields``/``strict`` turn on the
  store's field validation (unknown fields: a warning each, logged once; or errors).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from rauta.model import incremental
from rauta.model.config import EMPTY, RouterConfig
from rauta.model.graph import DEFAULT_CONTROLLER
from rauta.model.services import ServiceMode
from rauta.model.snapshot import Key, Snapshot
from rauta.model.status import (
    Applied,
    GatewayClassStatus,
    GatewayStatus,
    RouteStatus,
    Statuses,
)
from rauta.model.translate import Translation
from rauta.reconcile.store import Event, ObjectStore

log = logging.getLogger("rauta.reconcile")
FREEZE_EVERY = 100  # passes between two gc.freeze() (see the module doc)


class ProxyLike(Protocol):
    async def apply(self, config: RouterConfig,
                    tls: Mapping[str, tuple[bytes, bytes]]) -> Applied: ...


@dataclass(frozen=True)
class StatusChanges:
    """Statuses to write: the changed ones, and routes we no longer hold a parent entry for."""

    gateway_classes: tuple[GatewayClassStatus, ...] = ()
    gateways: tuple[GatewayStatus, ...] = ()
    routes: tuple[RouteStatus, ...] = ()
    # Objects rauta no longer computes a status for (deleted, or no longer ours): sinks
    # forget them; nothing is written to them.
    gone: tuple[tuple[str, str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.gateway_classes or self.gateways or self.routes or self.gone)


class StatusSink(Protocol):
    async def write(self, changes: StatusChanges) -> None: ...


class ServiceSink(Protocol):
    def update(self, desired: Iterable[Mapping[str, Any]]) -> None: ...


def status_diff(before: Mapping[tuple[str, str, str], Any],
                statuses: Statuses) -> tuple[dict[tuple[str, str, str], Any], StatusChanges]:
    """Key the new statuses and keep only those that differ from ``before``.

    A route that had our status before and has none now (detached from all our Gateways)
    is reported with an empty ``parents`` so that the sink removes our entries.
    """
    now: dict[tuple[str, str, str], Any] = {}
    for cls in statuses.gateway_classes:
        now[("GatewayClass", "", cls.name)] = cls
    for gw in statuses.gateways:
        now[("Gateway", gw.namespace, gw.name)] = gw
    for rt in statuses.routes:
        now[("HTTPRoute", rt.namespace, rt.name)] = rt
    for key, old in before.items():
        if key[0] == "HTTPRoute" and key not in now and old.parents:
            now[key] = RouteStatus(namespace=key[1], name=key[2], generation=old.generation,
                                   uid=old.uid, parents=())
    changed = {k: v for k, v in now.items()
               if (old := before.get(k)) is not v and old != v}
    return now, StatusChanges(
        gateway_classes=tuple(v for k, v in sorted(changed.items()) if k[0] == "GatewayClass"),
        gateways=tuple(v for k, v in sorted(changed.items()) if k[0] == "Gateway"),
        routes=tuple(v for k, v in sorted(changed.items()) if k[0] == "HTTPRoute"),
        gone=tuple(sorted(before.keys() - now.keys())),
    )


def _status_key(st: Any) -> tuple[str, str, str]:
    if isinstance(st, GatewayClassStatus):
        return ("GatewayClass", "", st.name)
    return ("Gateway" if isinstance(st, GatewayStatus) else "HTTPRoute", st.namespace, st.name)


def status_diff_from(previous: Statuses, before: Mapping[tuple[str, str, str], Any],
                     statuses: Statuses
                     ) -> tuple[dict[tuple[str, str, str], Any], StatusChanges] | None:
    """``status_diff`` when ``before`` is exactly ``previous`` keyed (nothing pending) and
    ``statuses`` has the same objects in the same places, most of them the very same
    ones (an incremental translation): compares pairwise, by identity first. None when
    the shapes differ (then use ``status_diff``)."""
    kinds = (previous.gateway_classes, statuses.gateway_classes), (
        previous.gateways, statuses.gateways), (previous.routes, statuses.routes)
    if len(before) != sum(len(old) for old, _ in kinds) or any(
            len(old) != len(new) for old, new in kinds):
        return None
    changed: list[list[Any]] = [[], [], []]
    for (old, new), out in zip(kinds, changed, strict=True):
        for a, b in zip(old, new, strict=True):
            if a is not b and a != b:
                if _status_key(a) != _status_key(b):
                    return None
                out.append(b)
    now = dict(before)
    for out in changed:
        now.update((_status_key(st), st) for st in out)
    return now, StatusChanges(gateway_classes=tuple(changed[0]), gateways=tuple(changed[1]),
                              routes=tuple(changed[2]))


def referenced_tls(config: RouterConfig, secrets: Mapping[str, tuple[bytes, bytes]]
                   ) -> dict[str, tuple[bytes, bytes]]:
    """Only the TLS pairs the config's listeners reference (others never reach the proxy)."""
    wanted = {s for p in config.ports for c in p.certificates for s in c.secrets}
    return {k: v for k, v in secrets.items() if k in wanted}


@dataclass
class Stats:
    reconciles: int = 0
    applies: int = 0
    status_writes: int = 0
    last_duration_s: float = 0.0
    errors: list[str] = field(default_factory=list)


class Reconciler:
    """Owns the store; one ``run`` task turns events into applies and status writes."""

    def __init__(self, proxy: ProxyLike, sink: StatusSink, *,
                 controller_name: str = DEFAULT_CONTROLLER,
                 settle: float = 0.001, max_delay: float = 0.1,
                 retry_delay: float = 1.0, address_pool: str | None = None,
                 freeze_heap: bool = True, gateway_services: ServiceMode | None = None,
                 service_sink: ServiceSink | None = None, check_fields: bool = False,
                 strict: bool = False) -> None:
        self.proxy, self.sink = proxy, sink
        self.address_pool = address_pool
        self.gateway_services = gateway_services
        self.service_sink = service_sink
        self.retry_delay = retry_delay
        self.controller_name = controller_name
        self.settle, self.max_delay = settle, max_delay
        self.store = ObjectStore(check_fields=check_fields, strict=strict)
        self.config: RouterConfig = EMPTY
        self.applied: Applied | None = None
        self.statuses: dict[tuple[str, str, str], Any] = {}
        self.stats = Stats()
        self._tls: dict[str, tuple[bytes, bytes]] = {}
        self._dirty = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._first_event_at: float | None = None
        self._last_event_at = 0.0
        self._logged_errors: set[str] = set()
        self.ready = asyncio.Event()  # set after the first successful apply
        # The incremental translator's memo (its snapshot is the last one taken).
        self._memo: incremental.Incremental | None = None
        self._diffed: Statuses | None = None  # the statuses ``self.statuses`` was keyed from
        self.freeze_heap = freeze_heap
        self._frozen_at = (0, 0)  # (passes, store size) at the last gc.freeze()

    # ----------------------------------------------------------------- input

    def submit(self, events: Iterable[Event]) -> int:
        """Apply events to the store; schedules a reconcile if anything changed."""
        changed = sum(1 for ev in events if self.store.apply(ev))
        self._log_errors()
        if changed:
            self._mark_dirty()
        return changed

    def replace_all(self, objects: Iterable[Mapping[str, Any]],
                    kinds: Iterable[str] | None = None) -> int:
        """A full listing (re-list, file reload): only real differences are applied."""
        changed = len(self.store.replace_all(objects, kinds))
        self._log_errors()
        if changed:
            self._mark_dirty()
        return changed

    def proxy_changed(self, applied: Applied) -> None:
        """The proxy's bound ports changed on their own (a restarted data-plane worker):
        the next pass writes statuses from ``applied`` and, for failed ports, retries."""
        if applied != self.applied:
            self.applied = applied  # the incremental translator takes it as an input
            self._mark_dirty()

    def _mark_dirty(self) -> None:
        now = time.monotonic()
        if self._first_event_at is None:
            self._first_event_at = now
        self._last_event_at = now
        self._idle.clear()
        self._dirty.set()

    def _log_errors(self) -> None:
        for err in self.store.errors.values():
            if err not in self._logged_errors:
                self._logged_errors.add(err)
                self.stats.errors.append(err)
                log.error("invalid input, keeping the last good version: %s", err)
        for lines in self.store.warnings.values():
            for line in lines:
                if line not in self._logged_errors:
                    self._logged_errors.add(line)
                    log.warning("%s", line)

    # ----------------------------------------------------------------- loop

    async def run(self) -> None:
        """Reconcile forever (cancel to stop)."""
        while True:
            await self._dirty.wait()
            await self._coalesce()
            self._dirty.clear()
            self._first_event_at = None
            try:
                await self.reconcile()
            except Exception:  # a bug must not stop the control loop
                log.exception("reconcile failed; will retry on the next change")
            self._tend_heap()
            if not self._dirty.is_set():
                self._idle.set()

    def _tend_heap(self) -> None:
        """``gc.freeze()`` when the store grew by a quarter or FREEZE_EVERY passes went by."""
        if not self.freeze_heap:
            return
        passes, size = self.stats.reconciles, len(self.store.parsed)
        then, then_size = self._frozen_at
        if passes - then >= FREEZE_EVERY or size * 4 > then_size * 5 + 400:
            gc.freeze()
            self._frozen_at = (passes, size)

    async def _coalesce(self) -> None:
        while True:
            now = time.monotonic()
            first = self._first_event_at or now
            deadline = min(self._last_event_at + self.settle, first + self.max_delay)
            if now >= deadline:
                return
            await asyncio.sleep(deadline - now)

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until every submitted change has been reconciled."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def _translate(self, snapshot: Snapshot, changed: frozenset[Key],
                         applied: Applied | None) -> Translation:
        """Run the pure model in a worker thread: it shares nothing mutable, and the event
        loop (the proxy's hot path) keeps serving while a large config is translated.
        ``changed``: the keys that differ from the memo's snapshot."""
        memo = self._memo
        self._memo = None  # until this succeeds: a failure must not leave a stale memo

        def work() -> incremental.Incremental:
            if memo is None:
                return incremental.start(snapshot, controller_name=self.controller_name,
                                         applied=applied, address_pool=self.address_pool,
                                         gateway_services=self.gateway_services)
            return incremental.update(memo, snapshot, changed, applied=applied)

        self._memo = await asyncio.to_thread(work)
        return self._memo.translation

    async def reconcile(self) -> StatusChanges:
        """One pass: translate, apply if the config changed, write changed statuses."""
        started = time.perf_counter()
        self.stats.reconciles += 1
        snapshot, changed = self.store.take_snapshot()
        desired = await self._translate(snapshot, changed, self.applied)
        secrets = self.store.tls()
        for attempt in range(3):  # an apply can change the verdicts (e.g. a certificate
            # that does not load), and so the config: apply until the config is stable
            tls = referenced_tls(desired.config, secrets)
            if (self.applied is not None and desired.config == self.config
                    and tls == self._tls and (attempt > 0 or not self.applied.failed)):
                break  # (failed ports, e.g. a port in use, are retried once per pass)
            self.stats.applies += 1
            try:
                applied = await self.proxy.apply(desired.config, tls)
                self.config, self._tls = desired.config, tls
                self.ready.set()  # applied, even if some ports failed (Programmed says so)
            except Exception as exc:
                # Not applied: keep the old config as "applied" so the next pass retries.
                log.exception("the proxy failed to apply the configuration; retrying in %.1fs",
                              self.retry_delay)
                applied = Applied(failed=tuple((p.port, f"apply failed: {exc}")
                                               for p in desired.config.ports))
                asyncio.get_running_loop().call_later(self.retry_delay, self._mark_dirty)
                self.applied = applied
                desired = await self._translate(snapshot, frozenset(), applied)
                break
            if applied.failed and attempt == 0:  # try again later, not in a hot loop
                asyncio.get_running_loop().call_later(self.retry_delay, self._mark_dirty)
            if applied != self.applied:
                self.applied = applied
                desired = await self._translate(snapshot, frozenset(), applied)
        fast = (status_diff_from(self._diffed, self.statuses, desired.statuses)
                if self._diffed is not None else None)
        self.statuses, changes = fast or status_diff(self.statuses, desired.statuses)
        self._diffed = desired.statuses
        if self.service_sink is not None:
            self.service_sink.update(desired.services)
        if changes:
            await self.sink.write(changes)
            self.stats.status_writes += (len(changes.gateway_classes) + len(changes.gateways)
                                         + len(changes.routes))
        self.stats.last_duration_s = time.perf_counter() - started
        return changes
