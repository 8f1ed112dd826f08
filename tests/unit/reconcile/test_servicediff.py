"""The per-Gateway Service diff (rauta.reconcile.servicediff): create/update/delete,
no write when equal, fields owned by others kept. Expected manifests are written out."""

from __future__ import annotations

import copy
from typing import Any

from rauta.reconcile.servicediff import Write, plan


def svc(name: str, ports: list[tuple[int, int]], labels: dict[str, str] | None = None,
        ns: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns,
                     "labels": labels or {"gateway.networking.k8s.io/gateway-name": name},
                     "annotations": {},
                     "ownerReferences": [{"kind": "Gateway", "name": name, "uid": "u"}]},
        "spec": {"type": "LoadBalancer", "selector": {"app": "rauta"},
                 "ports": [{"name": f"p{p}", "protocol": "TCP", "port": p,
                            "targetPort": t} for p, t in ports]},
    }


def live(desired: dict[str, Any]) -> dict[str, Any]:
    """``desired`` as the API server would return it, with fields others own."""
    out = copy.deepcopy(desired)
    out["metadata"]["resourceVersion"] = "7"
    out["metadata"]["uid"] = "svc-uid"
    out["spec"]["clusterIP"] = "10.0.0.9"
    out["spec"]["sessionAffinity"] = "None"
    for i, port in enumerate(out["spec"]["ports"]):
        port["nodePort"] = 30000 + i
    out["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    return out


def test_create_and_delete() -> None:
    a, b = svc("a", [(80, 100)]), svc("b", [(80, 101)])
    writes = plan([a], [live(b)])
    assert writes == [Write("create", "default", "a", a), Write("delete", "default", "b", None)]


def test_equal_write_does_nothing() -> None:
    a = svc("a", [(80, 100), (443, 101)])
    assert plan([a], [live(a)]) == []


def test_update_keeps_fields_others_own() -> None:
    old = live(svc("a", [(80, 100)]))
    new = svc("a", [(80, 100), (8080, 101)], labels={
        "gateway.networking.k8s.io/gateway-name": "a", "tier": "edge"})
    [write] = plan([new], [old])
    assert write.op == "update"
    body = write.body
    assert body is not None
    assert body["metadata"]["labels"] == {"gateway.networking.k8s.io/gateway-name": "a",
                                          "tier": "edge"}
    assert body["metadata"]["resourceVersion"] == "7"
    assert body["spec"]["clusterIP"] == "10.0.0.9"
    assert body["spec"]["sessionAffinity"] == "None"
    assert body["status"] == {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    assert body["spec"]["ports"] == [
        {"name": "p80", "protocol": "TCP", "port": 80, "targetPort": 100, "nodePort": 30000},
        {"name": "p8080", "protocol": "TCP", "port": 8080, "targetPort": 101},
    ]
    assert plan([new], [body]) == []  # applying the update converges


def test_removed_label_and_port_are_removed() -> None:
    old = live(svc("a", [(80, 100), (443, 101)],
                   labels={"gateway.networking.k8s.io/gateway-name": "a", "x": "1"}))
    new = svc("a", [(443, 101)])
    [write] = plan([new], [old])
    assert write.body is not None
    assert write.body["metadata"]["labels"] == {"gateway.networking.k8s.io/gateway-name": "a"}
    assert write.body["spec"]["ports"] == [
        {"name": "p443", "protocol": "TCP", "port": 443, "targetPort": 101, "nodePort": 30001}]


def test_writes_sorted_by_namespace_name() -> None:
    writes = plan([svc("b", [(80, 1)], ns="x"), svc("a", [(80, 2)], ns="y"),
                   svc("c", [(80, 3)], ns="x")], [])
    assert [(w.namespace, w.name) for w in writes] == [("x", "b"), ("x", "c"), ("y", "a")]
