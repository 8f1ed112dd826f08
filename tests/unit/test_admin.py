"""The admin server: /healthz, /readyz, /metrics, /config, /status over a real reconciler
and the real proxy on loopback (aiohttp's test client)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from rauta.admin import admin_app, start_admin
from rauta.model.render import config_document
from rauta.proxy.manager import Proxy
from rauta.reconcile.reconciler import Reconciler
from rauta.reconcile.sinks import MemorySink
from rauta.reconcile.store import Event
from rauta.scenario import free_port
from tests.unit.reconcile import world

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(20)]


@dataclass
class Admin:
    client: TestClient
    reconciler: Reconciler
    proxy: Proxy
    sink: MemorySink
    port: int

    async def configure(self) -> None:
        self.reconciler.submit(Event("ADDED", o) for o in world(self.port))
        await self.reconciler.wait_idle(5)


@pytest_asyncio.fixture
async def admin() -> AsyncIterator[Admin]:
    registry = CollectorRegistry()
    proxy = Proxy(host="127.0.0.1", registry=registry, drain_seconds=0.1)
    sink = MemorySink(clock=lambda: "2026-01-01T00:00:00Z")
    rec = Reconciler(proxy, sink)
    task = asyncio.create_task(rec.run())
    client = TestClient(TestServer(admin_app(rec, registry, status=sink.document),
                                   host="127.0.0.1"))
    await client.start_server()
    try:
        yield Admin(client, rec, proxy, sink, free_port())
    finally:
        await client.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await proxy.close(0)


async def test_healthz(admin: Admin) -> None:
    resp = await admin.client.get("/healthz")
    assert resp.status == 200
    assert await resp.text() == "ok\n"


async def test_readyz_before_and_after_first_apply(admin: Admin) -> None:
    resp = await admin.client.get("/readyz")
    assert resp.status == 503
    assert "no configuration applied" in await resp.text()
    await admin.configure()
    resp = await admin.client.get("/readyz")
    assert resp.status == 200
    assert await resp.text() == "ready\n"


async def test_readyz_reports_a_source_not_ready() -> None:
    rec = Reconciler(Proxy(registry=CollectorRegistry()), MemorySink())
    rec.ready.set()
    why: list[str | None] = ["watch not connected"]
    client = TestClient(TestServer(admin_app(rec, CollectorRegistry(), not_ready=lambda: why[0]),
                                   host="127.0.0.1"))
    await client.start_server()
    try:
        resp = await client.get("/readyz")
        assert resp.status == 503 and "watch not connected" in await resp.text()
        why[0] = None
        assert (await client.get("/readyz")).status == 200
        assert await (await client.get("/status")).json() == []  # no status callable
    finally:
        await client.close()


async def test_metrics_are_the_proxy_registry_in_text_format(admin: Admin) -> None:
    await admin.configure()
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{admin.port}/") as r:
        await r.read()  # one request through the proxy (backend down: any status)
    resp = await admin.client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    assert "rauta_config_generation 1.0" in text
    assert "rauta_requests_total{" in text
    assert "python_gc" not in text  # the private registry, not the process-global one


async def test_config_is_the_applied_config_with_generation(admin: Admin) -> None:
    body = await (await admin.client.get("/config")).json()
    assert body == {"generation": 0, "config": {}}
    await admin.configure()
    resp = await admin.client.get("/config")
    assert resp.status == 200 and resp.content_type == "application/json"
    body = await resp.json()
    assert body["generation"] == admin.reconciler.stats.applies == 1
    assert body["config"] == config_document(admin.proxy.config)
    assert body["config"]["ports"][0]["port"] == admin.port


async def test_status_lists_what_the_sink_wrote(admin: Admin) -> None:
    await admin.configure()
    body = await (await admin.client.get("/status")).json()
    assert body == admin.sink.document()
    kinds = {(d["kind"], d["name"]) for d in body}
    assert {("GatewayClass", "rauta"), ("Gateway", "gw"), ("HTTPRoute", "web")} <= kinds


async def test_start_admin_on_a_real_port() -> None:
    rec = Reconciler(Proxy(registry=CollectorRegistry()), MemorySink())
    port = free_port()
    runner = await start_admin(admin_app(rec, CollectorRegistry()), f"127.0.0.1:{port}")
    try:
        async with aiohttp.ClientSession() as s, \
                s.get(f"http://127.0.0.1:{port}/healthz") as r:
            assert r.status == 200
    finally:
        await runner.cleanup()
