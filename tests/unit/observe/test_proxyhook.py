"""The proxy hook through a real rauta proxy on loopback: events, join table, connects."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from rauta.observe.events import ConnectEvent, Endpoint, HttpEvent
from rauta.observe.proxyhook import ProxyHook
from rauta.proxy import Proxy
from tests.unit.proxy.conftest import (
    Client,
    EchoBackend,
    backend,
    config,
    free_port,
    port_config,
    rule,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


@pytest_asyncio.fixture
async def proxy() -> AsyncIterator[Proxy]:
    p = Proxy(registry=CollectorRegistry(), drain_seconds=1.0)
    yield p
    await p.close()


async def test_hook_events_through_a_real_proxy(proxy: Proxy) -> None:
    echo = await EchoBackend("b1").start()
    try:
        flows: list[tuple[Endpoint, Endpoint, int]] = []
        hook = ProxyHook(set_flow_route=lambda c, s, rid: flows.append((c, s, rid)))
        proxy._rt.observer = hook  # the integrator exposes this as Proxy.observer
        port = free_port()
        await proxy.apply(config(port_config(port, rule(backend(echo.port, name="ns/svc:80"),
                                                        route="ns/r", index=0))))
        t0 = time.monotonic_ns()
        client = await Client.open(port)
        for p in ("/a", "/b"):
            resp = await client.request("GET", p)
            assert resp.status == 200
        await client.close()
        evs = hook.drain()
        conns = [e for e in evs if isinstance(e, ConnectEvent)]
        https = [e for e in evs if isinstance(e, HttpEvent)]
        assert [c.outcome for c in conns] == ["established"]  # keep-alive: one connect
        assert conns[0].server == Endpoint("127.0.0.1", echo.port) and conns[0].service == "ns/svc"
        assert [(h.path, h.status, h.route, h.rule, h.backend, h.service) for h in https] == [
            ("/a", 200, "ns/r", "0", "ns/svc:80", "ns/svc"),
            ("/b", 200, "ns/r", "0", "ns/svc:80", "ns/svc")]
        a, b = https
        assert a.source == "proxy" and a.leg == "upstream"
        assert a.client.ip == "127.0.0.1" and a.client.port > 0
        assert (a.client, a.server) == (conns[0].client, conns[0].server) == (b.client, b.server)
        assert echo.peers == {(a.client.ip, a.client.port)}
        assert t0 <= a.start_ns < a.end_ns <= b.start_ns < b.end_ns
        assert a.connect_ns > 0 and b.connect_ns == 0
        # the join table answers for kernel events on that flow; route pushed once
        rec = hook.table.lookup((a.client, a.server), b.start_ns)
        assert rec is not None and rec.start_ns == b.start_ns and rec.route == "ns/r"
        assert flows == [(a.client, a.server, hook.ids.id("ns/r", "0"))]
    finally:
        await echo.stop()


async def test_hook_reports_refused_connects(proxy: Proxy) -> None:
    hook = ProxyHook()
    proxy._rt.observer = hook
    port, dead = free_port(), free_port()
    await proxy.apply(config(port_config(port, rule(backend(dead, name="ns/gone:80")))))
    client = await Client.open(port)
    resp = await client.request("GET", "/")
    await client.close()
    assert resp.status == 502
    evs = hook.drain()
    assert [(e.outcome, e.server, e.service) for e in evs if isinstance(e, ConnectEvent)] == [
        ("refused", Endpoint("127.0.0.1", dead), "ns/gone")]
