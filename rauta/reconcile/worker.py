"""The background-writer skeleton shared by the controller's API sinks.

Role: ``BackgroundWriter`` owns the one asyncio task that performs a sink's writes (the
status sink, the generated-Service sink), the event that wakes it, and the event that
says it is idle, so that the reconciler never waits for API round trips.

Rules:
- At most one worker task per sink. ``_start_worker`` creates it on first use and again
  if it has ended; the subclass's ``_run`` is its body and sets ``_idle`` when nothing is
  left to write.
- ``flush`` waits for idleness (bounded by a timeout); ``close`` cancels the worker and
  swallows the cancellation. Neither writes anything itself.
- This class knows nothing of what is written: keys, plans, retries and metrics stay in
  the subclasses.
"""

from __future__ import annotations

import asyncio


class BackgroundWriter:
    def __init__(self, worker_name: str) -> None:
        self._worker_name = worker_name
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task[None] | None = None

    def _start_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name=self._worker_name)

    async def _run(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait until the worker has nothing left to write."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def close(self) -> None:
        """Stop the worker (a write in progress is abandoned)."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
