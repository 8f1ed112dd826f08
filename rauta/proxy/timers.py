"""A coarse deadline wheel: per-request deadlines without a timer handle per request.

Role: an ``Exchange`` with a route timeout used to arm one ``loop.call_later`` handle per
request and cancel it when the response ended, nearly always long before it fired: a
``TimerHandle``, a push onto the loop's heap and, later, the loop's sweep of cancelled
handles, for every request. ``at(loop, when, callback)`` instead files the deadline in
the slot of ``RESOLUTION`` seconds that ends at or after ``when``; one loop handle is
armed for the earliest occupied slot, so the loop holds one handle per wheel, not one
per request, and a cancelled deadline is only taken out of its slot's dict.

Rules:
- A deadline never fires early (beyond the loop's clock resolution, as ``call_at``): its
  slot ends at or after ``when``; it fires at most ``RESOLUTION`` (10 ms) plus the
  loop's own lateness after ``when``.
- Deadlines of one slot fire in the order they were filed; a callback that raises is
  logged and the others still run.
- ``Deadline.cancel`` is idempotent and O(1); a fired deadline is inert.
- One wheel per event loop, kept only while it holds deadlines (so a loop with none
  pending is not referenced from here); nothing here reads a clock other than the loop's.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from collections.abc import Callable

log = logging.getLogger(__name__)

RESOLUTION = 0.01  # seconds per slot

__all__ = ["RESOLUTION", "Deadline", "at"]


class Deadline:
    """One filed deadline; ``cancel()`` takes it out (the ``TimerHandle`` interface)."""

    __slots__ = ("wheel", "slot", "callback")

    def __init__(self, wheel: _Wheel, slot: int, callback: Callable[[], object]) -> None:
        self.wheel: _Wheel | None = wheel
        self.slot = slot
        self.callback = callback

    def cancel(self) -> None:
        wheel = self.wheel
        if wheel is not None:
            self.wheel = None
            entries = wheel.slots.get(self.slot)
            if entries is not None:
                entries.pop(self, None)

    def cancelled(self) -> bool:
        """True once cancelled or fired (nothing more will happen)."""
        return self.wheel is None


class _Wheel:
    """The deadlines of one loop, by slot, with one loop handle for the earliest slot."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.slots: dict[int, dict[Deadline, None]] = {}
        self.heap: list[int] = []  # the slot numbers present in ``slots``, once each
        self.handle: asyncio.TimerHandle | None = None
        self.armed: int | None = None  # the slot the handle fires for

    def add(self, when: float, callback: Callable[[], object]) -> Deadline:
        slot = math.ceil(when / RESOLUTION)
        deadline = Deadline(self, slot, callback)
        entries = self.slots.get(slot)
        if entries is None:
            entries = self.slots[slot] = {}
            heapq.heappush(self.heap, slot)
            if self.armed is None or slot < self.armed:
                self._arm(slot)
        entries[deadline] = None
        return deadline

    def _arm(self, slot: int) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.armed = slot
        self.handle = self.loop.call_at(slot * RESOLUTION, self._fire)

    def _fire(self) -> None:
        armed = self.armed if self.armed is not None else 0
        self.handle = None
        self.armed = None
        due = max(armed, math.floor(self.loop.time() / RESOLUTION))
        heap = self.heap
        while heap and heap[0] <= due:
            entries = self.slots.pop(heapq.heappop(heap), None)
            for deadline in list(entries or ()):
                deadline.wheel = None
                try:
                    deadline.callback()
                except Exception:
                    log.exception("deadline callback failed")
        if heap:
            self._arm(heap[0])
        elif _WHEELS.get(self.loop) is self:
            del _WHEELS[self.loop]

    def pending(self) -> int:
        return sum(len(e) for e in self.slots.values())


_WHEELS: dict[asyncio.AbstractEventLoop, _Wheel] = {}


def at(loop: asyncio.AbstractEventLoop, when: float, callback: Callable[[], object]
       ) -> Deadline:
    """Call ``callback`` once ``loop.time()`` reached ``when`` (within ``RESOLUTION``)."""
    wheel = _WHEELS.get(loop)
    if wheel is None:
        for closed in [lp for lp in _WHEELS if lp.is_closed()]:
            del _WHEELS[closed]  # closed with deadlines pending: they can never fire
        wheel = _WHEELS[loop] = _Wheel(loop)
    return wheel.add(when, callback)


def pending(loop: asyncio.AbstractEventLoop) -> int:
    """How many deadlines are filed (not cancelled, not fired) on ``loop``."""
    wheel = _WHEELS.get(loop)
    return wheel.pending() if wheel is not None else 0
