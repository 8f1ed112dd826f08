"""Reconciler: coalescing, equal-value no-ops, Programmed from the proxy's Applied,
detached routes, readiness. Driven with a fake proxy that records every apply."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from rauta.model.status import GatewayStatus
from rauta.reconcile.reconciler import Reconciler, StatusChanges
from rauta.reconcile.sinks import MemorySink
from rauta.reconcile.store import Event

from . import (
    CONTROLLER,
    FakeProxy,
    RecordingSink,
    gateway,
    gateway_class,
    route,
    service,
    world,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(15)]

PORT = 18080
ROUTE_KEY = ("HTTPRoute", "default", "web")


class Running:
    """A reconciler with its ``run`` loop as a task."""

    def __init__(self, proxy: Any, sink: Any, **kw: float) -> None:
        self.proxy, self.sink = proxy, sink
        self.r = Reconciler(proxy, sink, **kw)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Reconciler:
        self.task = asyncio.create_task(self.r.run())
        return self.r

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest_asyncio.fixture
async def proxy() -> AsyncIterator[FakeProxy]:
    yield FakeProxy()


def gw_status(changes: list[StatusChanges]) -> GatewayStatus:
    return [g for c in changes for g in c.gateways][-1]


def cond(conds: Any, ctype: str) -> Any:
    return next(c for c in conds if c.type.value == ctype)


# ---------------------------------------------------------------------- coalescing


async def test_synchronous_burst_is_one_apply(proxy: FakeProxy) -> None:
    async with Running(proxy, RecordingSink()) as r:
        r.submit(Event("ADDED", o) for o in world(PORT))
        for i in range(50):
            r.submit([Event("MODIFIED", route(path=f"/p{i}"))])
        await r.wait_idle(5)
    assert len(proxy.calls) == 1
    assert proxy.calls[0][0].ports[0].listeners[0].rules[0].match.path.value == "/p49"


async def test_spread_burst_within_settle_coalesces(proxy: FakeProxy) -> None:
    async with Running(proxy, RecordingSink(), settle=0.2, max_delay=5.0) as r:
        r.submit(Event("ADDED", o) for o in world(PORT))
        await r.wait_idle(5)
        assert len(proxy.calls) == 1
        for i in range(50):
            assert r.submit([Event("MODIFIED", route(path=f"/p{i}"))]) == 1
            await asyncio.sleep(0.002)  # far below the 200 ms settle window
        await r.wait_idle(5)
    assert len(proxy.calls) == 2
    assert proxy.calls[1][0].ports[0].listeners[0].rules[0].match.path.value == "/p49"


async def test_max_delay_caps_coalescing_under_a_continuous_stream(proxy: FakeProxy) -> None:
    applied_at: list[float] = []
    real_apply = proxy.apply

    async def timed_apply(config: Any, tls: Any) -> Any:
        applied_at.append(time.monotonic())
        return await real_apply(config, tls)

    proxy.apply = timed_apply  # type: ignore[method-assign]
    async with Running(proxy, RecordingSink(), settle=0.05, max_delay=0.1) as r:
        r.submit(Event("ADDED", o) for o in world(PORT))
        await r.wait_idle(5)
        applied_at.clear()
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < 0.8:  # an event every 10 ms: never 50 ms of quiet
            r.submit([Event("MODIFIED", route(path=f"/s{i}"))])
            i += 1
            await asyncio.sleep(0.01)
        end = time.monotonic()
        await r.wait_idle(5)
    during = [t for t in applied_at if t < end]
    assert len(during) >= 3, f"only {len(during)} applies during an 0.8 s stream"
    assert during[0] - start < 0.35, "the first apply waited far beyond max_delay"
    assert proxy.calls[-1][0].ports[0].listeners[0].rules[0].match.path.value == f"/s{i - 1}"


# ---------------------------------------------------------------------- equal values


async def test_equal_config_is_not_reapplied_and_equal_status_not_rewritten(
        proxy: FakeProxy) -> None:
    sink = RecordingSink()
    async with Running(proxy, sink) as r:
        r.submit(Event("ADDED", o) for o in world(PORT))
        await r.wait_idle(5)
        assert len(proxy.calls) == 1 and len(sink.writes) == 1
        reconciles = r.stats.reconciles
        # An unreferenced Service and a label on the route: a reconcile, nothing else.
        assert r.submit([Event("ADDED", service("unused")),
                         Event("MODIFIED", route(labels={"team": "a"}))]) == 2
        await r.wait_idle(5)
        assert r.stats.reconciles == reconciles + 1
        assert len(proxy.calls) == 1
        assert len(sink.writes) == 1
        # Equal events: not even a reconcile.
        assert r.submit([Event("MODIFIED", service("unused"))]) == 0
        await r.wait_idle(5)
        assert r.stats.reconciles == reconciles + 1


async def test_config_change_with_same_statuses_writes_nothing(proxy: FakeProxy) -> None:
    sink = RecordingSink()
    async with Running(proxy, sink) as r:
        r.submit(Event("ADDED", o) for o in world(PORT))
        await r.wait_idle(5)
        r.submit([Event("MODIFIED", route(path="/other"))])  # same generation
        await r.wait_idle(5)
    assert len(proxy.calls) == 2
    assert len(sink.writes) == 1


async def test_generation_bump_rewrites_only_that_route(proxy: FakeProxy) -> None:
    sink = RecordingSink()
    async with Running(proxy, sink) as r:
        r.submit(Event("ADDED", o) for o in world(PORT))
        await r.wait_idle(5)
        r.submit([Event("MODIFIED", route(path="/other", generation=2))])
        await r.wait_idle(5)
    assert len(sink.writes) == 2
    last = sink.writes[-1]
    assert last.gateways == () and last.gateway_classes == ()
    assert [(rt.name, rt.generation) for rt in last.routes] == [("web", 2)]


# ---------------------------------------------------------------------- Programmed


async def test_programmed_true_from_applied(proxy: FakeProxy) -> None:
    sink = RecordingSink()
    async with Running(proxy, sink) as r:
        r.submit(Event("ADDED", o) for o in world(PORT))
        await r.wait_idle(5)
        assert r.ready.is_set()
        assert r.applied is not None and r.applied.ports == (PORT,)
    gw = gw_status(sink.writes)
    assert cond(gw.conditions, "Programmed").status == "True"
    assert cond(gw.listeners[0].conditions, "Programmed").status == "True"


async def test_failed_port_is_programmed_false_with_the_message() -> None:
    proxy = FakeProxy(fail={PORT: "cannot listen on 127.0.0.1:18080: Address already in use"})
    sink = RecordingSink()
    async with Running(proxy, sink) as r:
        r.submit(Event("ADDED", o) for o in world(PORT))
        await r.wait_idle(5)
        assert r.ready.is_set()  # applied; the failed port shows in Programmed
    lis = gw_status(sink.writes).listeners[0]
    prog = cond(lis.conditions, "Programmed")
    assert prog.status == "False"
    assert "Address already in use" in prog.message
    assert cond(gw_status(sink.writes).conditions, "Programmed").status == "False"


async def test_apply_raising_is_recorded_and_the_loop_keeps_running(
        caplog: pytest.LogCaptureFixture) -> None:
    proxy = FakeProxy(raises=RuntimeError("boom"))
    sink = RecordingSink()
    async with Running(proxy, sink) as r:
        r.submit(Event("ADDED", o) for o in world(PORT))
        await r.wait_idle(5)
        assert r.stats.applies == 1
        assert r.applied is not None and r.applied.failed == ((PORT, "apply failed: boom"),)
        assert not r.ready.is_set()
        prog = cond(gw_status(sink.writes).listeners[0].conditions, "Programmed")
        assert prog.status == "False" and "boom" in prog.message
        assert any("failed to apply" in rec.getMessage() for rec in caplog.records)
        # The proxy recovers; the next change is applied and the loop is still alive.
        proxy.raises = None
        r.submit([Event("MODIFIED", route(path="/again"))])
        await r.wait_idle(5)
        assert len(proxy.calls) == 2
        assert r.ready.is_set()
        prog = cond(gw_status(sink.writes).listeners[0].conditions, "Programmed")
        assert prog.status == "True"


async def test_config_is_retried_after_apply_raised() -> None:
    proxy = FakeProxy(raises=RuntimeError("boom"))
    async with Running(proxy, RecordingSink()) as r:
        r.submit(Event("ADDED", o) for o in world(PORT))
        await r.wait_idle(5)
        proxy.raises = None
        r.submit([Event("ADDED", service("unrelated"))])  # config unchanged
        await r.wait_idle(5)
        assert len(proxy.calls) == 2
        assert r.ready.is_set()


async def test_a_bug_in_reconcile_does_not_stop_the_loop(proxy: FakeProxy) -> None:
    class BrokenOnce(RecordingSink):
        async def write(self, changes: StatusChanges) -> None:
            if not self.writes:
                self.writes.append(changes)
                raise RuntimeError("sink bug")
            self.writes.append(changes)

    sink = BrokenOnce()
    async with Running(proxy, sink) as r:
        r.submit(Event("ADDED", o) for o in world(PORT))
        await r.wait_idle(5)
        r.submit([Event("MODIFIED", route(generation=2))])
        await r.wait_idle(5)
    assert len(sink.writes) == 2


# ---------------------------------------------------------------------- routes and readiness


@pytest.mark.parametrize("how", ["detach", "delete"])
async def test_route_gone_from_our_gateway_removes_our_entries(proxy: FakeProxy,
                                                                how: str) -> None:
    sink = MemorySink(clock=lambda: "2026-01-01T00:00:00Z")
    foreign = {"parentRef": {"name": "theirs"}, "controllerName": "other.io/ctl",
               "conditions": [{"type": "Accepted", "status": "True"}]}
    async with Running(proxy, sink) as r:
        r.submit(Event("ADDED", o) for o in world(PORT))
        await r.wait_idle(5)
        parents = sink.status[ROUTE_KEY]["parents"]
        assert [p["controllerName"] for p in parents] == [CONTROLLER]
        sink.status[ROUTE_KEY]["parents"].insert(0, foreign)
        if how == "detach":
            r.submit([Event("MODIFIED", route(parent="not-ours"))])
        else:
            r.submit([Event("DELETED", route())])
        await r.wait_idle(5)
        assert r.statuses[ROUTE_KEY].parents == ()
        assert sink.status[ROUTE_KEY]["parents"] == [foreign]
        writes = sink.writes
        # Reported once; a further unrelated change does not report it again.
        r.submit([Event("ADDED", service("unrelated"))])
        await r.wait_idle(5)
        assert sink.writes == writes


async def test_wait_idle_waits_for_the_apply_and_times_out_without_a_loop(
        proxy: FakeProxy) -> None:
    r = Reconciler(proxy, RecordingSink())
    await r.wait_idle(0.1)  # nothing submitted: idle at once
    r.submit(Event("ADDED", o) for o in world(PORT))
    with pytest.raises(TimeoutError):
        await r.wait_idle(0.1)  # no run loop: never idle
    task = asyncio.create_task(r.run())
    try:
        await r.wait_idle(5)
        assert len(proxy.calls) == 1
        assert r.config.port(PORT) is not None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_ready_only_after_first_successful_apply(proxy: FakeProxy) -> None:
    async with Running(proxy, RecordingSink()) as r:
        assert not r.ready.is_set()
        r.submit([Event("ADDED", gateway_class()), Event("ADDED", gateway(PORT))])
        await asyncio.wait_for(r.ready.wait(), 5)
        assert len(proxy.calls) == 1


async def test_invalid_event_is_logged_once_and_never_applied(
        proxy: FakeProxy, caplog: pytest.LogCaptureFixture) -> None:
    async with Running(proxy, RecordingSink()) as r:
        r.submit(Event("ADDED", o) for o in world(PORT))
        await r.wait_idle(5)
        bad = route(path="/bad")
        bad["spec"]["parentRefs"] = [{"name": "gw", "port": 70000}]
        caplog.clear()
        assert r.submit([Event("MODIFIED", bad)]) == 0
        assert r.submit([Event("MODIFIED", bad)]) == 0
        await r.wait_idle(5)
    errors = [rec for rec in caplog.records if rec.levelname == "ERROR"]
    assert len(errors) == 1
    assert "HTTPRoute default/web" in errors[0].getMessage()
    assert "spec.parentRefs[0].port" in errors[0].getMessage()
    assert len(proxy.calls) == 1


async def test_tls_secret_change_reapplies_with_same_config(proxy: FakeProxy) -> None:
    """Regression: certificate rotation (same keys, new material) must reach the proxy."""
    key = b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"

    def secret(body: bytes, name: str = "cert") -> dict[str, Any]:
        crt = b"-----BEGIN CERTIFICATE-----\n" + body + b"\n-----END CERTIFICATE-----\n"
        return {"kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": name, "namespace": "default"},
                "data": {"tls.crt": base64.b64encode(crt).decode(),
                         "tls.key": base64.b64encode(key).decode()}}

    objs = world(PORT)
    gw = next(o for o in objs if o["kind"] == "Gateway")
    gw["spec"]["listeners"].append({
        "name": "https", "port": PORT + 1, "protocol": "HTTPS",
        "tls": {"certificateRefs": [{"name": "cert"}]}})
    async with Running(proxy, RecordingSink()) as r:
        r.submit(Event("ADDED", o) for o in [*objs, secret(b"one"), secret(b"x", "unused")])
        await r.wait_idle(5)
        r.submit([Event("MODIFIED", secret(b"two"))])
        await r.wait_idle(5)
        r.submit([Event("MODIFIED", secret(b"y", "unused"))])  # referenced by nothing
        await r.wait_idle(5)
    assert len(proxy.calls) == 2
    assert proxy.calls[0][0] == proxy.calls[1][0]
    assert b"two" in proxy.calls[1][1]["default/cert"][0]
    assert "default/unused" not in proxy.calls[1][1]


async def test_malformed_secret_does_not_block_reconciling(proxy: FakeProxy) -> None:
    """Regression: a Secret with ``tls.crt: null`` made every reconcile raise."""
    bad = {"kind": "Secret", "type": "kubernetes.io/tls",
           "metadata": {"name": "cert", "namespace": "default"},
           "data": {"tls.crt": None, "tls.key": None}}
    async with Running(proxy, RecordingSink()) as r:
        r.submit(Event("ADDED", o) for o in [*world(PORT), bad])
        await r.wait_idle(5)
        assert len(proxy.calls) == 1


async def test_a_port_that_failed_to_bind_is_retried_until_it_binds() -> None:
    proxy = FakeProxy(fail={PORT: "cannot listen: Address already in use"})
    sink = RecordingSink()
    async with Running(proxy, sink, retry_delay=0.05) as r:
        r.submit(Event("ADDED", o) for o in world(PORT))
        await r.wait_idle(5)
        assert r.applied is not None and r.applied.failed
        proxy.fail.clear()  # the port is free now
        for _ in range(100):
            await asyncio.sleep(0.02)
            if r.applied is not None and not r.applied.failed:
                break
        assert r.applied is not None and r.applied.ports == (PORT,)
    prog = cond(gw_status(sink.writes).listeners[0].conditions, "Programmed")
    assert prog.status == "True"
    assert len(proxy.calls) < 60  # retried on a timer, not in a hot loop


async def test_deleted_gateway_and_class_disappear_from_the_standalone_status(
        proxy: FakeProxy) -> None:
    sink = MemorySink(clock=lambda: "2026-01-01T00:00:00Z")
    objs = world(PORT)
    async with Running(proxy, sink) as r:
        r.submit(Event("ADDED", o) for o in objs)
        await r.wait_idle(5)
        assert ("Gateway", "default", "gw") in sink.status or any(
            k[0] == "Gateway" for k in sink.status)
        r.submit(Event("DELETED", o) for o in objs if o["kind"] in ("Gateway", "GatewayClass"))
        await r.wait_idle(5)
    assert not any(k[0] in ("Gateway", "GatewayClass") for k in sink.status), sink.status.keys()


# ---------------------------------------------------------------------- incremental


async def test_every_pass_equals_a_full_translation_of_the_store(proxy: FakeProxy) -> None:
    from rauta.model.translate import translate

    sink = RecordingSink()
    steps: list[list[Event]] = [
        [Event("ADDED", o) for o in world(PORT)],
        [Event("ADDED", route("second", path="/b", svc="other"))],
        [Event("ADDED", service("other"))],
        [Event("MODIFIED", route(path="/changed"))],
        [Event("DELETED", service())],
        [Event("MODIFIED", gateway(PORT, generation=2))],
        [Event("DELETED", route("second"))],
    ]
    async with Running(proxy, sink) as r:
        for events in steps:
            assert r.submit(events)
            await r.wait_idle(5)
            full = translate(r.store.snapshot(), applied=r.applied)
            assert r.config == full.config
            assert proxy.calls[-1][0] == full.config
            want = {("HTTPRoute", s.namespace, s.name): s for s in full.statuses.routes}
            # (a deleted route keeps an empty entry: the sink removes our parents)
            assert {k: v for k, v in r.statuses.items()
                    if k[0] == "HTTPRoute" and v.parents} == want


async def test_a_failed_translation_drops_the_memo_and_the_next_pass_starts_over(
        proxy: FakeProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    from rauta.model import incremental

    real_update, real_start = incremental.update, incremental.start
    calls = {"update": 0, "start": 0}

    def flaky(*args: Any, **kw: Any) -> Any:
        calls["update"] += 1
        if calls["update"] == 1:
            raise RuntimeError("boom")
        return real_update(*args, **kw)

    def start(*args: Any, **kw: Any) -> Any:
        calls["start"] += 1
        return real_start(*args, **kw)

    async with Running(proxy, RecordingSink()) as r:
        r.submit(Event("ADDED", o) for o in world(PORT))
        await r.wait_idle(5)
        monkeypatch.setattr(incremental, "update", flaky)
        monkeypatch.setattr(incremental, "start", start)
        r.submit([Event("MODIFIED", route(path="/lost"))])  # this pass fails
        await r.wait_idle(5)
        assert proxy.calls[-1][0].ports[0].listeners[0].rules[0].match.path.value == "/"
        r.submit([Event("ADDED", service("unrelated"))])  # starts over: sees /lost too
        await r.wait_idle(5)
    assert calls["start"] == 1  # the memo was gone: it started over
    assert proxy.calls[-1][0].ports[0].listeners[0].rules[0].match.path.value == "/lost"


def test_pairwise_status_diff_agrees_with_the_keyed_one_or_declines() -> None:
    from rauta.model.snapshot import Snapshot
    from rauta.model.translate import translate
    from rauta.reconcile.reconciler import status_diff, status_diff_from

    def statuses(*objs: dict[str, Any]) -> Any:
        return translate(Snapshot.from_dicts(objs)).statuses

    base = [gateway_class(), gateway(PORT), service(), route("a"), route("b")]
    first = statuses(*base)
    before, _ = status_diff({}, first)
    edited = statuses(*base[:3], route("a", generation=2), route("b"))
    assert status_diff_from(first, before, edited) == status_diff(before, edited)
    assert status_diff_from(first, before, edited)[1].routes[0].name == "a"  # type: ignore[index]
    # Another set of routes (same count): the pairwise diff declines.
    assert status_diff_from(first, before, statuses(*base[:3], route("a"), route("c"))) is None
    assert status_diff_from(first, before, statuses(*base[:4])) is None


async def test_the_heap_is_frozen_after_growth_and_every_freeze_every_passes(
        proxy: FakeProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from rauta.reconcile import reconciler as mod

    frozen: list[int] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(1))
    monkeypatch.setattr(mod, "FREEZE_EVERY", 3)
    async with Running(proxy, RecordingSink()) as r:
        r.submit(Event("ADDED", route(f"r{i}")) for i in range(600))  # growth
        await r.wait_idle(5)
        assert len(frozen) == 1
        for i in range(3):
            r.submit([Event("MODIFIED", route("r1", path=f"/p{i}"))])
            await r.wait_idle(5)
        assert len(frozen) == 2
    async with Running(proxy, RecordingSink(), freeze_heap=False) as r:  # type: ignore[arg-type]
        r.submit(Event("ADDED", route(f"r{i}")) for i in range(600))
        await r.wait_idle(5)
    assert len(frozen) == 2


async def test_a_proxy_that_lost_a_port_on_its_own_gets_statuses_from_it_and_a_retry() -> None:
    """``proxy_changed`` (a restarted data-plane worker could not bind a port): the next
    pass writes Programmed=False from it and re-applies, and the port comes back."""
    from rauta.model.status import Applied

    proxy = FakeProxy()
    sink = RecordingSink()
    async with Running(proxy, sink, retry_delay=0.05) as r:
        r.submit(Event("ADDED", o) for o in world(PORT))
        await r.wait_idle(5)
        assert cond(gw_status(sink.writes).listeners[0].conditions, "Programmed").status == "True"
        applies = len(proxy.calls)
        proxy.fail[PORT] = "worker 1: cannot listen: Address already in use"
        r.proxy_changed(Applied(ports=(), failed=((PORT, proxy.fail[PORT]),)))
        await r.wait_idle(5)
        prog = cond(gw_status(sink.writes).listeners[0].conditions, "Programmed")
        assert prog.status == "False" and "worker 1" in prog.message
        assert len(proxy.calls) > applies  # the failed port is retried
        proxy.fail.clear()
        for _ in range(100):
            await asyncio.sleep(0.02)
            if r.applied is not None and not r.applied.failed:
                break
    assert cond(gw_status(sink.writes).listeners[0].conditions, "Programmed").status == "True"
