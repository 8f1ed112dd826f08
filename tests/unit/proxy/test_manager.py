"""Proxy.apply: atomic swaps, listener add/remove, drain, bind failures, pool trimming."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from rauta.model.config import EMPTY
from rauta.proxy import Proxy

from .conftest import Client, EchoBackend, backend, config, free_port, get, port_config, rule

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


def slow_handler(seconds: float):
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(seconds)
        return web.Response(text=json.dumps({"backend": "slow", "path": request.raw_path}))
    return handler


def route_to(port: int, b: EchoBackend) -> object:
    return config(port_config(port, rule(backend(b.port))))


async def test_swap_is_atomic_for_requests_in_flight(proxy: Proxy, echo: EchoBackend,
                                                     echo2: EchoBackend) -> None:
    echo.handler = slow_handler(0.5)
    port = free_port()
    await proxy.apply(route_to(port, echo))
    client = await Client.open(port)
    in_flight = asyncio.create_task(client.request("GET", "/slow"))
    await asyncio.sleep(0.15)
    applied = await proxy.apply(route_to(port, echo2))
    assert applied.ports == (port,)
    fresh = await get(port, "/new")
    assert json.loads(fresh.body)["backend"] == "b2"  # new requests: new config at once
    old = await in_flight
    assert old.status == 200 and json.loads(old.body)["backend"] == "slow"
    again = await client.request("GET", "/next")  # same connection, next request: new config
    assert json.loads(again.body)["backend"] == "b2"
    await client.close()


async def test_listeners_added_and_removed_without_disturbing_others(
        proxy: Proxy, echo: EchoBackend) -> None:
    p1, p2, p3 = free_port(), free_port(), free_port()
    pc = lambda p: port_config(p, rule(backend(echo.port)))  # noqa: E731
    assert (await proxy.apply(config(pc(p1), pc(p2)))).ports == tuple(sorted((p1, p2)))
    keep = await Client.open(p1)
    assert (await keep.request("GET", "/")).status == 200
    idle_on_removed = await Client.open(p2)
    assert (await idle_on_removed.request("GET", "/")).status == 200

    applied = await proxy.apply(config(pc(p1), pc(p3)))
    assert applied.ports == tuple(sorted((p1, p3))) and applied.failed == ()
    assert (await keep.request("GET", "/still")).status == 200  # same connection, untouched
    assert (await get(p3, "/")).status == 200
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", p2)
    assert await idle_on_removed.closed(2.0)
    await keep.close()


async def test_removed_port_drains_in_flight_requests(proxy: Proxy, echo: EchoBackend) -> None:
    echo.handler = slow_handler(0.5)
    p1, p2 = free_port(), free_port()
    await proxy.apply(config(port_config(p1, rule(backend(echo.port))),
                             port_config(p2, rule(backend(echo.port)))))
    client = await Client.open(p2)
    in_flight = asyncio.create_task(client.request("GET", "/slow"))
    await asyncio.sleep(0.15)
    await proxy.apply(config(port_config(p1, rule(backend(echo.port)))))
    with pytest.raises(OSError):  # stops accepting at once
        await asyncio.open_connection("127.0.0.1", p2)
    resp = await in_flight
    assert resp.status == 200 and resp.complete
    assert resp.header("Connection") == "close"
    assert await client.closed(2.0)
    await proxy.wait_drained()


async def test_drain_gives_up_after_drain_seconds(echo: EchoBackend) -> None:
    proxy = Proxy(registry=CollectorRegistry(), drain_seconds=0.3)
    echo.handler = slow_handler(1.5)
    port = free_port()
    await proxy.apply(route_to(port, echo))
    client = await Client.open(port)
    in_flight = asyncio.create_task(client.request("GET", "/slow"))
    await asyncio.sleep(0.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await proxy.apply(EMPTY)
    resp = await in_flight
    assert not resp.complete and loop.time() - started < 1.5
    await proxy.close(0)


async def test_port_in_use_is_reported_and_retried(proxy: Proxy, echo: EchoBackend) -> None:
    busy, ok = free_port(), free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", busy))
    holder.listen()
    cfg = config(port_config(busy, rule(backend(echo.port))),
                 port_config(ok, rule(backend(echo.port))))
    applied = await proxy.apply(cfg)
    assert applied.ports == (ok,)
    assert applied.failure(busy) is not None and "in use" in applied.failure(busy).lower()
    holder.close()
    applied = await proxy.apply(cfg)
    assert applied.ports == tuple(sorted((busy, ok))) and applied.failed == ()
    assert (await get(busy, "/")).status == 200


async def test_generation_config_and_metrics(proxy: Proxy, echo: EchoBackend) -> None:
    port = free_port()
    cfg = route_to(port, echo)
    assert proxy.generation == 0 and proxy.config == EMPTY
    await proxy.apply(cfg)
    await proxy.apply(cfg)
    assert proxy.generation == 2 and proxy.config is cfg and proxy.ports == (port,)
    reg = proxy.metrics.registry
    assert reg.get_sample_value("rauta_config_generation") == 2
    assert reg.get_sample_value("rauta_config_apply_duration_seconds_count") == 2
    await get(port, "/")
    await get(port, "/")
    labels = {"port": str(port), "route": "default/r", "rule": "0",
              "backend": "default/svc:80", "code": "2xx"}
    assert reg.get_sample_value("rauta_requests_total", labels) == 2
    assert reg.get_sample_value("rauta_request_duration_seconds_count",
                                {"port": str(port), "route": "default/r"}) == 2
    assert reg.get_sample_value("rauta_port_request_duration_seconds_count",
                                {"port": str(port), "code": "2xx"}) == 2
    # At most 10 series for this route, histogram buckets included, and no _created ones.
    route_series = [s for m in reg.collect() for s in m.samples
                    if s.labels.get("route") == "default/r"]
    assert len(route_series) <= 10, [s.name for s in route_series]
    assert not [s for m in reg.collect() for s in m.samples if s.name.endswith("_created")]
    for _ in range(100):  # the proxy sees the client's close a moment later
        if reg.get_sample_value("rauta_active_connections", {"port": str(port)}) == 0:
            break
        await asyncio.sleep(0.01)
    assert reg.get_sample_value("rauta_active_connections", {"port": str(port)}) == 0
    nothing = {"port": str(port), "route": "", "rule": "", "backend": "", "code": "4xx"}
    client = await Client.open(port)
    await client.send(b"GET / HTTP/1.1\r\n\r\n")
    await client.read_response()
    assert await client.closed()  # a 400 always closes the connection (nginx's rule)
    assert reg.get_sample_value("rauta_requests_total", nothing) == 1


async def test_idle_upstream_connections_closed_when_endpoint_leaves(
        proxy: Proxy, echo: EchoBackend, echo2: EchoBackend) -> None:
    port = free_port()
    await proxy.apply(route_to(port, echo))
    await get(port, "/")
    key = ("127.0.0.1", echo.port)
    assert proxy.pool.idle_count(key) == 1
    await proxy.apply(route_to(port, echo2))
    assert proxy.pool.idle_count(key) == 0
    await get(port, "/")
    assert proxy.pool.idle_count(("127.0.0.1", echo2.port)) == 1


async def test_close_stops_everything(echo: EchoBackend) -> None:
    proxy = Proxy(registry=CollectorRegistry())
    port = free_port()
    await proxy.apply(route_to(port, echo))
    assert (await get(port, "/")).status == 200
    await proxy.close(0.5)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    with pytest.raises(RuntimeError):
        await proxy.apply(route_to(port, echo))


async def test_reuse_port_lets_two_proxies_share_a_port_and_is_off_by_default(
        echo: EchoBackend) -> None:
    """SO_REUSEPORT (the workers of ``--workers N``): with it two proxies bind the same
    port and both answer; without it the second one's bind fails as before."""
    port = free_port()
    shared = [Proxy(registry=CollectorRegistry(), reuse_port=True) for _ in range(2)]
    plain = Proxy(registry=CollectorRegistry())
    try:
        for p in shared:
            assert (await p.apply(route_to(port, echo))).ports == (port,)
        assert (await get(port, "/")).status == 200
        refused = await plain.apply(route_to(port, echo))
        assert refused.ports == () and "cannot listen on" in refused.failed[0][1]
        await shared[0].close()
        assert (await get(port, "/")).status == 200  # the other one still listens
    finally:
        for p in [*shared, plain]:
            await p.close()
