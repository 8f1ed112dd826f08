"""Weighted backend choice and Maglev endpoint stickiness, as the proxy drives them."""

from __future__ import annotations

import collections
import json
import random

import pytest

from rauta.model.config import Backend, Endpoint
from rauta.model.routing import RequestView, route
from rauta.proxy import Proxy

from .conftest import Client, EchoBackend, backend, config, free_port, port_config, rule

pytestmark = pytest.mark.timeout(30)


def view(client_port: int = 40000, path: str = "/") -> RequestView:
    return RequestView(method="GET", host="example.com", path=path, query="", headers=(),
                       port=80, client_ip="10.1.2.3", client_port=client_port)


def test_weighted_distribution_within_5_percent() -> None:
    eps = tuple(Endpoint(address=f"10.0.0.{i}", port=80) for i in range(1, 4))
    backends = (Backend(name="ns/a:80", weight=1, endpoints=eps),
                Backend(name="ns/b:80", weight=3, endpoints=eps),
                Backend(name="ns/c:80", weight=6, endpoints=eps))
    cfg = config(port_config(80, rule(*backends)))
    rnd = random.Random(7)  # the proxy passes random.getrandbits(32) as ``choice``
    counts: collections.Counter[str] = collections.Counter()
    n = 10_000
    for i in range(n):
        d = route(cfg, view(40000 + i % 1000), choice=rnd.getrandbits(32))
        assert d.kind == "forward" and d.backend is not None
        counts[d.backend.name] += 1
    for name, weight in (("ns/a:80", 1), ("ns/b:80", 3), ("ns/c:80", 6)):
        expected = n * weight / 10
        assert abs(counts[name] - expected) <= 0.05 * expected, (name, counts)


def test_maglev_endpoint_sticks_to_the_flow() -> None:
    eps = tuple(Endpoint(address=f"10.0.0.{i}", port=80) for i in range(1, 9))
    cfg = config(port_config(80, rule(Backend(name="ns/a:80", weight=1, endpoints=eps))))
    rnd = random.Random(1)
    for client_port in range(40000, 40050):
        picks = {route(cfg, view(client_port), choice=rnd.getrandbits(32)).endpoint
                 for _ in range(20)}
        assert len(picks) == 1  # random weighted choice never moves the endpoint of a flow
    spread = {route(cfg, view(p)).endpoint for p in range(40000, 40400)}
    assert len(spread) == len(eps)
    # Removing one endpoint moves only the flows that were on it.
    fewer = config(port_config(80, rule(Backend(name="ns/a:80", weight=1, endpoints=eps[1:]))))
    moved = sum(route(cfg, view(p)).endpoint != route(fewer, view(p)).endpoint
                for p in range(40000, 42000) if route(cfg, view(p)).endpoint != eps[0])
    assert moved < 0.05 * 2000


@pytest.mark.asyncio
async def test_sticky_and_weighted_over_sockets(proxy: Proxy, echo: EchoBackend,
                                                echo2: EchoBackend) -> None:
    port = free_port()
    one_backend_two_endpoints = backend(echo.port, echo2.port)
    await proxy.apply(config(port_config(port, rule(one_backend_two_endpoints))))
    client = await Client.open(port)
    names = set()
    for _ in range(15):
        names.add(json.loads((await client.request("GET", "/same")).body)["backend"])
    assert len(names) == 1  # one flow (client connection + path): one endpoint
    await client.close()

    await proxy.apply(config(port_config(port, rule(
        backend(echo.port, name="ns/one:80", weight=1),
        backend(echo2.port, name="ns/two:80", weight=1)))))
    client = await Client.open(port)
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(300):
        counts[json.loads((await client.request("GET", "/w")).body)["backend"]] += 1
    await client.close()
    assert 90 <= counts["b1"] <= 210 and counts["b1"] + counts["b2"] == 300
