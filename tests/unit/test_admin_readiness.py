"""``/readyz`` while a listener cannot be bound (issue 11): 503 naming the address, and
200 once the port is free and the proxy bound it; a port refused for another reason (an
HTTPS listener without a usable certificate) is the Gateway's status, not readiness."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from rauta.admin import admin_app, bind_failures
from rauta.model.status import Applied
from rauta.proxy.manager import Proxy
from rauta.reconcile.reconciler import Reconciler
from rauta.reconcile.sinks import MemorySink
from rauta.reconcile.store import Event
from rauta.scenario import free_port
from tests.unit.reconcile import world

pytestmark = [pytest.mark.timeout(30)]


async def test_readyz_is_503_while_a_listener_port_is_taken() -> None:
    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    registry = CollectorRegistry()
    proxy = Proxy(host="127.0.0.1", registry=registry, drain_seconds=0.1)
    rec = Reconciler(proxy, MemorySink())
    rec.retry_delay = 0.1
    task = asyncio.create_task(rec.run())
    client = TestClient(TestServer(admin_app(rec, registry), host="127.0.0.1"))
    await client.start_server()
    try:
        rec.submit(Event("ADDED", o) for o in world(port))
        await rec.wait_idle(5)
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert f"127.0.0.1:{port}" in await resp.text()
        holder.close()
        for _ in range(100):  # the reconciler retries failed ports
            if (await client.get("/readyz")).status == 200:
                break
            await asyncio.sleep(0.05)
        assert (await client.get("/readyz")).status == 200
    finally:
        holder.close()
        await client.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await proxy.close(0)


def test_only_bind_failures_count_against_readiness() -> None:
    rec = Reconciler(Proxy(registry=CollectorRegistry()), MemorySink())
    rec.applied = Applied(failed=((8443, "no usable certificate for listener https"),))
    assert bind_failures(rec) is None
    rec.applied = Applied(failed=((8080, "cannot listen on 0.0.0.0:8080: in use"),),
                          failed_at=(("127.0.1.1", 80, "cannot listen on 127.0.1.1:80: denied"),))
    assert bind_failures(rec) == ("cannot listen on 0.0.0.0:8080: in use; "
                                  "cannot listen on 127.0.1.1:80: denied")
