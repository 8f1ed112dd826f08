"""The coarse deadline wheel (``rauta.proxy.timers``) and the route timeouts built on it.

Role: a deadline fires once, never before its time and at most about one slot after it;
a cancelled one never fires; many deadlines share one loop handle; the wheel lets go of
its loop when it is empty; a failing callback does not stop the others. Through a real
``Exchange``, a route timeout still answers 504, and an exchange that finished leaves
nothing filed.

Rules: times are read from the loop's clock only, and no test asserts how fast anything
runs: "late" bounds are generous (a shared CI machine), "early" is exact.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from rauta.proxy import timers


async def test_a_deadline_fires_once_not_before_its_time() -> None:
    loop = asyncio.get_running_loop()
    when = loop.time() + 0.03
    fired: list[float] = []
    timers.at(loop, when, lambda: fired.append(loop.time()))
    await asyncio.sleep(0.005)
    assert fired == []
    for _ in range(100):
        if fired:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.03)
    assert len(fired) == 1
    assert fired[0] >= when - 1e-6  # the loop's clock resolution, as call_at
    assert fired[0] < when + 1.0  # late by a slot plus scheduling, never by a timeout


async def test_cancelled_deadlines_never_fire_and_leave_nothing_filed() -> None:
    loop = asyncio.get_running_loop()
    fired: list[int] = []
    ds = [timers.at(loop, loop.time() + 0.02, lambda i=i: fired.append(i)) for i in range(5)]
    assert timers.pending(loop) == 5
    ds[1].cancel()
    ds[3].cancel()
    ds[3].cancel()  # idempotent
    assert ds[3].cancelled() and not ds[0].cancelled()
    assert timers.pending(loop) == 3
    await asyncio.sleep(0.08)
    assert fired == [0, 2, 4]  # the order they were filed in
    assert timers.pending(loop) == 0
    assert all(d.cancelled() for d in ds)  # fired ones are inert too
    ds[0].cancel()


async def test_many_deadlines_share_one_loop_handle() -> None:
    loop = asyncio.get_running_loop()
    ds = [timers.at(loop, loop.time() + 30 + i / 1000, lambda: None) for i in range(2000)]
    wheel = timers._WHEELS[loop]
    assert wheel.handle is not None and len(wheel.heap) <= 205  # 2 s of 10 ms slots (and the clock moves)
    first = wheel.handle
    for d in ds:
        d.cancel()
    assert timers.pending(loop) == 0
    assert wheel.handle is first  # cancelling touches no loop handle


async def test_an_earlier_deadline_rearms_the_wheel() -> None:
    loop = asyncio.get_running_loop()
    fired: list[str] = []
    late = timers.at(loop, loop.time() + 60, lambda: fired.append("late"))
    timers.at(loop, loop.time() + 0.01, lambda: fired.append("soon"))
    await asyncio.sleep(0.1)
    assert fired == ["soon"]
    late.cancel()


async def test_the_wheel_lets_go_of_its_loop_when_empty() -> None:
    loop = asyncio.get_running_loop()
    timers.at(loop, loop.time(), lambda: None)
    assert loop in timers._WHEELS
    await asyncio.sleep(0.05)
    assert loop not in timers._WHEELS


async def test_a_failing_callback_is_logged_and_the_others_run(
        caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    fired: list[int] = []

    def boom() -> None:
        raise RuntimeError("boom")

    timers.at(loop, loop.time(), boom)
    timers.at(loop, loop.time(), lambda: fired.append(1))
    with caplog.at_level(logging.ERROR, logger="rauta.proxy.timers"):
        await asyncio.sleep(0.05)
    assert fired == [1]
    assert any("deadline callback failed" in r.getMessage() for r in caplog.records)


async def test_a_deadline_in_the_past_fires_at_the_next_turn() -> None:
    loop = asyncio.get_running_loop()
    fired: list[int] = []
    timers.at(loop, loop.time() - 5, lambda: fired.append(1))
    await asyncio.sleep(0.03)
    assert fired == [1]


# ---------------------------------------------------------------------- route timeouts


async def test_a_route_timeout_answers_504_through_the_wheel() -> None:
    from rauta.model.config import Timeouts
    from tests.unit.proxy.test_exchange import FakePool, Req, ScriptedUpstream, make

    up = ScriptedUpstream()
    ex, down = make(Req(), FakePool(up), timeouts=Timeouts(request_ms=20,
                                                           backend_request_ms=5000))
    ex.start()
    assert ex.timer is not None and timers.pending(ex.loop) == 1
    await asyncio.sleep(0.005)
    assert down.calls == []  # not before the 20 ms (the shorter of the two)
    for _ in range(100):
        if down.calls:
            break
        await asyncio.sleep(0.01)
    assert down.calls[-1] == ("fail", 504) and up.ended == "abort"
    assert timers.pending(ex.loop) == 0


async def test_a_finished_exchange_leaves_no_deadline_filed() -> None:
    from rauta.model.config import Timeouts
    from tests.unit.proxy.test_exchange import FakePool, Req, ScriptedUpstream, make

    up = ScriptedUpstream()
    ex, down = make(Req(), FakePool(up), timeouts=Timeouts(backend_request_ms=30))
    ex.start()
    assert timers.pending(ex.loop) == 1
    ex.request_end()
    ex.upstream_head(200, "OK", [], "none", None)
    ex.upstream_done(True)
    assert timers.pending(ex.loop) == 0 and ex.timer is None
    await asyncio.sleep(0.08)
    assert down.kinds() == ["start", "end"]
