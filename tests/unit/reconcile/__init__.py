"""Tests of the reconcile layer: store, reconciler, sinks, file source.

Shared builders live here (raw Kubernetes objects, a fake proxy, a recording sink) so the
test modules, and ``tests/unit/test_admin.py``, build the same small world.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from rauta.model.config import RouterConfig
from rauta.model.status import Applied
from rauta.reconcile.reconciler import StatusChanges

CONTROLLER = "rauta.io/gateway-controller"


def gateway_class(name: str = "rauta", controller: str = CONTROLLER) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": name}, "spec": {"controllerName": controller}}


def gateway(port: int, name: str = "gw", ns: str = "default", cls: str = "rauta",
            generation: int = 1) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": ns, "generation": generation},
            "spec": {"gatewayClassName": cls,
                     "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]}}


def route(name: str = "web", ns: str = "default", parent: str = "gw", path: str = "/",
          svc: str = "svc", generation: int = 1, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": ns, "generation": generation, **meta},
            "spec": {"parentRefs": [{"name": parent}],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                                "backendRefs": [{"name": svc, "port": 80}]}]}}


def service(name: str = "svc", ns: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80}]}}


def endpoint_slice(svc: str = "svc", addresses: tuple[str, ...] = ("127.0.0.2",),
                   port: int = 8000, ns: str = "default") -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-1", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses]}


def world(port: int = 18080, backend_port: int = 8000) -> list[dict[str, Any]]:
    """GatewayClass, Gateway on ``port``, one route to one Service with one endpoint."""
    return [gateway_class(), gateway(port), route(), service(),
            endpoint_slice(port=backend_port)]


class FakeProxy:
    """Records every apply; reports ``fail`` ports as failed, or raises ``raises``."""

    def __init__(self, fail: Mapping[int, str] | None = None,
                 raises: Exception | None = None) -> None:
        self.calls: list[tuple[RouterConfig, dict[str, tuple[bytes, bytes]]]] = []
        self.fail = dict(fail or {})
        self.raises = raises

    async def apply(self, config: RouterConfig,
                    tls: Mapping[str, tuple[bytes, bytes]]) -> Applied:
        self.calls.append((config, dict(tls)))
        await asyncio.sleep(0)
        if self.raises is not None:
            raise self.raises
        ok = tuple(p.port for p in config.ports if p.port not in self.fail)
        failed = tuple((p.port, self.fail[p.port]) for p in config.ports if p.port in self.fail)
        return Applied(ports=ok, failed=failed)


class RecordingSink:
    """A StatusSink that keeps every ``StatusChanges`` it was given."""

    def __init__(self) -> None:
        self.writes: list[StatusChanges] = []

    async def write(self, changes: StatusChanges) -> None:
        self.writes.append(changes)
