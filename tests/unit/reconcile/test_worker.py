"""BackgroundWriter: one worker task, flush waits for idleness, close cancels it."""

from __future__ import annotations

import asyncio

import pytest

from rauta.reconcile.worker import BackgroundWriter


class Counting(BackgroundWriter):
    def __init__(self) -> None:
        super().__init__("counting-writer")
        self.rounds = 0
        self.gate = asyncio.Event()

    def kick(self) -> None:
        self._start_worker()
        self._idle.clear()
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.gate.wait()
            self.rounds += 1
            if not self._wake.is_set():
                self._idle.set()


async def test_one_worker_and_flush_waits_until_idle() -> None:
    w = Counting()
    await w.flush(0.1)  # idle from the start
    w.kick()
    first = w._worker
    w.kick()
    assert w._worker is first and first is not None and first.get_name() == "counting-writer"
    with pytest.raises(asyncio.TimeoutError):
        await w.flush(0.05)  # the gate holds the write
    w.gate.set()
    await w.flush(1.0)
    assert w.rounds == 1  # the two kicks coalesced
    await w.close()
    assert first.cancelled()


async def test_a_finished_worker_is_started_again() -> None:
    w = Counting()
    w.gate.set()
    w.kick()
    await w.flush(1.0)
    await w.close()
    w.kick()
    assert w._worker is not None and not w._worker.done()
    await w.flush(1.0)
    assert w.rounds == 2
    await w.close()


async def test_close_without_a_worker_is_fine() -> None:
    await Counting().close()
