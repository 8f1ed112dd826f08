"""RequestMirror: copies reach the mirror, never delay or fail the main request."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from aiohttp import web

from rauta.model.config import Backend, Endpoint, Filters, Mirror
from rauta.proxy import Proxy
from rauta.proxy.mirror import sampled

from .conftest import Client, EchoBackend, backend, config, free_port, get, port_config, rule

pytestmark = pytest.mark.timeout(30)


def mirror_to(port: int, numerator: int = 100, denominator: int = 100) -> Mirror:
    return Mirror(backend=Backend(name="default/mirror:80", weight=1,
                                  endpoints=(Endpoint(address="127.0.0.1", port=port),)),
                  numerator=numerator, denominator=denominator)


def test_sampling_fraction() -> None:
    rnd = random.Random(3)
    assert not sampled(mirror_to(1, 0, 100), rnd)
    assert sampled(mirror_to(1, 100, 100), rnd)
    hits = sum(sampled(mirror_to(1, 25, 100), rnd) for _ in range(10_000))
    assert 2300 < hits < 2700


async def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_mirror_gets_a_copy_without_delaying(proxy: Proxy, echo: EchoBackend,
                                                   echo2: EchoBackend) -> None:
    release = asyncio.Event()

    async def slow_mirror(request: web.Request) -> web.Response:
        body = await request.read()
        echo2.seen.append({"path": request.raw_path, "body": body,
                           "host": request.headers.get("Host")})
        await release.wait()  # the mirror never answers in time
        return web.Response(text="mirror")

    echo2.handler = slow_mirror
    port = free_port()
    filters = Filters(mirrors=(mirror_to(echo2.port),))
    await proxy.apply(config(port_config(port, rule(backend(echo.port), filters=filters))))
    client = await Client.open(port)
    started = time.monotonic()
    resp = await client.request("POST", "/m?x=1", body=b"small body")
    assert resp.status == 200 and time.monotonic() - started < 0.5
    resp = await client.request("GET", "/m2")
    assert resp.status == 200
    await wait_for(lambda: len(echo2.seen) == 2)
    by_path = {s["path"]: s for s in echo2.seen}
    assert by_path["/m?x=1"]["body"] == b"small body"
    assert by_path["/m?x=1"]["host"] == "example.com"
    assert by_path["/m2"]["body"] == b""
    release.set()
    await client.close()


@pytest.mark.asyncio
async def test_large_body_mirrored_as_head_only(proxy: Proxy, echo: EchoBackend,
                                                echo2: EchoBackend) -> None:
    async def record(request: web.Request) -> web.Response:
        echo2.seen.append({"path": request.raw_path, "len": len(await request.read()),
                           "cl": request.headers.get("Content-Length")})
        return web.Response(text="ok")

    echo2.handler = record
    port = free_port()
    filters = Filters(mirrors=(mirror_to(echo2.port),))
    await proxy.apply(config(port_config(port, rule(backend(echo.port), filters=filters))))
    client = await Client.open(port)
    resp = await client.request("POST", "/big", body=b"x" * (1 << 20))
    assert resp.status == 200
    await wait_for(lambda: len(echo2.seen) == 1)
    assert echo2.seen[0] == {"path": "/big", "len": 0, "cl": "0"}
    await client.close()


@pytest.mark.asyncio
async def test_unreachable_or_sampled_out_mirror_never_matters(proxy: Proxy,
                                                                echo: EchoBackend) -> None:
    port = free_port()
    filters = Filters(mirrors=(mirror_to(free_port()), mirror_to(free_port(), 0, 100)))
    await proxy.apply(config(port_config(port, rule(backend(echo.port), filters=filters))))
    for _ in range(5):
        assert (await get(port, "/")).status == 200
    reg = proxy.metrics.registry
    await wait_for(lambda: reg.get_sample_value("rauta_mirror_requests_total",
                                                {"outcome": "failed"}) == 5)
