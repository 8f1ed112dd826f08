"""``rauta serve --address-pool``: every Gateway on its own address, as a real process.

Two Gateways both listen on one port with no hostname (the conformance suite's Setup
applies three such Gateways). With a pool each gets its own 127/8 address, both are
Accepted and Programmed, each serves only its own routes, and ``/status`` shows each
Gateway's address. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from rauta.echo import EchoBackend
from rauta.scenario import free_port
from tests.e2e.test_serve import REPO, until, write

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

POOL = "127.0.1.0/24"  # hosts 127.0.1.1 ... 127.0.1.254, oldest Gateway first


def objects(listen: int, backend_port: int) -> list[dict]:
    objs: list[dict] = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
         "metadata": {"name": "rauta"}, "spec": {"controllerName": "rauta.io/gateway-controller"}}]
    for i, name in enumerate(("first", "second")):
        objs.append({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                     "metadata": {"name": name, "namespace": "default",
                                  "creationTimestamp": f"2026-01-0{i + 1}T00:00:00Z"},
                     "spec": {"gatewayClassName": "rauta",
                              "listeners": [{"name": "http", "port": listen,
                                             "protocol": "HTTP"}]}})
        objs.append({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                     "metadata": {"name": name, "namespace": "default"},
                     "spec": {"parentRefs": [{"name": name}],
                              "rules": [{"backendRefs": [{"name": name, "port": 80}]}]}})
        objs.append({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": name, "namespace": "default"},
                     "spec": {"ports": [{"name": "http", "port": 80}]}})
        objs.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": f"{name}-1", "namespace": "default",
                                  "labels": {"kubernetes.io/service-name": name}},
                     "addressType": "IPv4", "ports": [{"name": "http", "port": backend_port}],
                     "endpoints": [{"addresses": [f"127.0.0.{21 + i}"],
                                    "conditions": {"ready": True}}]})
    return objs


async def test_two_port_80_style_gateways_each_on_their_own_address(tmp_path: Path) -> None:
    backend_port, listen, admin = free_port(), free_port(), free_port()
    backends = [EchoBackend("first", "127.0.0.21", backend_port),
                EchoBackend("second", "127.0.0.22", backend_port)]
    for b in backends:
        await b.start()
    write(tmp_path / "all.yaml", *objects(listen, backend_port))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rauta.cli", "serve", "--config", str(tmp_path / "all.yaml"),
        "--admin", f"127.0.0.1:{admin}", "--address-pool", POOL,
        cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5),
                                    connector=aiohttp.TCPConnector(force_close=True))

    async def backend_at(address: str) -> str | None:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with session.get(f"http://{address}:{listen}/",
                                   headers={"Host": "x.test"}) as r:
                await r.read()
                return r.headers.get("x-backend") if r.status == 200 else str(r.status)
        return None

    async def served() -> bool:
        return (await backend_at("127.0.1.1"), await backend_at("127.0.1.2")) == (
            "first", "second")

    try:
        await until(served, "each Gateway serving its own route on its own address", 30)
        assert await backend_at("127.0.0.1") is None  # nothing on the listen host itself
        async with session.get(f"http://127.0.0.1:{admin}/status") as r:
            status = yaml.safe_load(await r.text())
        gws = {d["name"]: d["status"] for d in status if d["kind"] == "Gateway"}
        for name, address in (("first", "127.0.1.1"), ("second", "127.0.1.2")):
            conds = {c["type"]: c["status"] for c in gws[name]["conditions"]}
            assert conds == {"Accepted": "True", "Programmed": "True"}, gws[name]
            assert gws[name]["addresses"] == [{"type": "IPAddress", "value": address}]
            assert [c["status"] for c in gws[name]["listeners"][0]["conditions"]
                    if c["type"] == "Conflicted"] == ["False"]
    finally:
        proc.kill()
        await proc.wait()
        await session.close()
        for b in backends:
            await b.stop()
