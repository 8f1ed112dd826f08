"""Per-Gateway addresses in the proxy: PortConfigs keyed by (address, port).

Every 127/8 address is local on Linux, so two Gateways can both listen on one port, each
on its own loopback address, and a connection is routed only among the listeners of the
address that accepted it.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from rauta.model.config import ListenerRoutes, PortConfig
from rauta.proxy import Proxy

from .conftest import EchoBackend, backend, config, free_port, rule

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]

A, B = "127.0.1.1", "127.0.1.2"


def gateway_port(address: str, port: int, echo: EchoBackend, hostname: str = "",
                 gateway: str = "default/gw") -> PortConfig:
    lr = ListenerRoutes(gateway=gateway, listener="http", hostname=hostname,
                        rules=(rule(backend(echo.port), route=f"{gateway}-route"),))
    return PortConfig(address=address, port=port, protocol="HTTP", listeners=(lr,))


async def get_from(address: str, port: int, host: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection(address, port)
    writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body)["backend"] if status == 200 else ""


async def test_two_gateways_share_a_port_on_their_own_addresses(
        proxy: Proxy, echo: EchoBackend, echo2: EchoBackend) -> None:
    port = free_port()
    applied = await proxy.apply(config(gateway_port(A, port, echo, gateway="default/one"),
                                       gateway_port(B, port, echo2, gateway="default/two")))
    assert applied.addressed == ((A, port), (B, port)) and applied.failed_at == ()
    assert applied.bound(port, A) and applied.bound(port, B) and not applied.bound(port)
    assert await get_from(A, port, "x.test") == (200, "b1")
    assert await get_from(B, port, "x.test") == (200, "b2")


async def test_a_newer_gateway_never_captures_another_gateways_traffic(
        proxy: Proxy, echo: EchoBackend, echo2: EchoBackend) -> None:
    """The hole on ab91a90: pay.example.com on a newer Gateway took that traffic from an
    older *.example.com Gateway on the same port. On separate addresses it cannot."""
    port = free_port()
    await proxy.apply(config(gateway_port(A, port, echo, "*.example.com", "default/old"),
                             gateway_port(B, port, echo2, "pay.example.com", "default/new")))
    assert await get_from(A, port, "pay.example.com") == (200, "b1")
    assert await get_from(B, port, "pay.example.com") == (200, "b2")
    assert (await get_from(B, port, "shop.example.com"))[0] == 404


async def test_removing_one_address_keeps_the_other(
        proxy: Proxy, echo: EchoBackend, echo2: EchoBackend) -> None:
    port = free_port()
    await proxy.apply(config(gateway_port(A, port, echo), gateway_port(B, port, echo2)))
    applied = await proxy.apply(config(gateway_port(B, port, echo2)))
    assert applied.addressed == ((B, port),)
    await proxy.wait_drained()
    with pytest.raises(OSError):
        await get_from(A, port, "x.test")
    assert await get_from(B, port, "x.test") == (200, "b2")


async def test_an_address_that_cannot_be_bound_is_reported(proxy: Proxy,
                                                           echo: EchoBackend) -> None:
    port = free_port()
    applied = await proxy.apply(config(gateway_port("192.0.2.77", port, echo),
                                       gateway_port(A, port, echo)))
    assert applied.addressed == ((A, port),)
    assert applied.failure(port, "192.0.2.77") is not None
    assert applied.failure(port, A) is None and applied.failure(port) is None
