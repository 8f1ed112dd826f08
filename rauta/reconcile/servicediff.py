"""The per-Gateway Service diff: what to create, update and delete (no IO).

Role: the reconciler's plan for ``--gateway-services``. ``plan(desired, existing)`` takes
the Services the model wants (``rauta.model.services.render_service``) and the Services
that exist and rauta manages (the caller selects them: label
``gateway.networking.k8s.io/gateway-name`` and an ownerReference to a Gateway of the
class), and returns the writes, sorted by namespace/name.

Rules:
- An equal write does nothing: an existing Service whose managed fields equal the
  desired ones is left alone (no write, so no resourceVersion churn).
- Managed fields: metadata.labels, metadata.annotations, metadata.ownerReferences,
  spec.type, spec.selector and, per port, name/protocol/port/targetPort. Labels and
  annotations are owned whole (an infrastructure label removed from the Gateway is
  removed from the Service).
- Everything else is kept as it exists (other controllers own it): status,
  spec.clusterIP(s), a port's nodePort (matched by port number), resourceVersion, uid,
  finalizers, any other spec field.
- An existing managed Service with no desired counterpart is deleted (the ownerReference
  makes the API server do that too when the Gateway goes; this covers a Gateway that
  leaves the class).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Manifest = Mapping[str, Any]


@dataclass(frozen=True)
class Write:
    op: Literal["create", "update", "delete"]
    namespace: str
    name: str
    body: dict[str, Any] | None  # None for delete


def _ident(svc: Manifest) -> tuple[str, str]:
    meta = svc.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _port_view(port: Mapping[str, Any]) -> tuple[str, str, int, Any]:
    return (str(port.get("name", "")), str(port.get("protocol", "TCP")),
            int(port.get("port", 0)), port.get("targetPort"))


def managed_view(svc: Manifest) -> tuple[Any, ...]:
    """The fields rauta owns, in a comparable form."""
    meta = svc.get("metadata") or {}
    spec = svc.get("spec") or {}
    return (
        tuple(sorted((meta.get("labels") or {}).items())),
        tuple(sorted((meta.get("annotations") or {}).items())),
        tuple(tuple(sorted(ref.items())) for ref in meta.get("ownerReferences") or ()),
        spec.get("type", "ClusterIP"),
        tuple(sorted((spec.get("selector") or {}).items())),
        tuple(sorted(_port_view(p) for p in spec.get("ports") or ())),
    )


def merge(existing: Manifest, desired: Manifest) -> dict[str, Any]:
    """``existing`` with the managed fields of ``desired`` written over it."""
    out = copy.deepcopy(dict(existing))
    meta = out.setdefault("metadata", {})
    dmeta = desired["metadata"]
    for field in ("labels", "annotations", "ownerReferences"):
        meta[field] = copy.deepcopy(dmeta.get(field) or ({} if field != "ownerReferences"
                                                         else []))
    spec = out.setdefault("spec", {})
    dspec = desired["spec"]
    spec["type"] = dspec["type"]
    spec["selector"] = dict(dspec["selector"])
    node_ports = {int(p.get("port", 0)): p["nodePort"]
                  for p in existing.get("spec", {}).get("ports") or () if "nodePort" in p}
    ports = []
    for port in dspec["ports"]:
        new = dict(port)
        if int(port["port"]) in node_ports:
            new["nodePort"] = node_ports[int(port["port"])]
        ports.append(new)
    spec["ports"] = ports
    return out


def plan(desired: Iterable[Manifest], existing: Iterable[Manifest]) -> list[Write]:
    """The writes that make ``existing`` match ``desired`` (see the module rules)."""
    want = {_ident(s): s for s in desired}
    have = {_ident(s): s for s in existing}
    writes: list[Write] = []
    for ident in sorted(set(want) | set(have)):
        ns, name = ident
        if ident not in have:
            writes.append(Write("create", ns, name, copy.deepcopy(dict(want[ident]))))
        elif ident not in want:
            writes.append(Write("delete", ns, name, None))
        elif managed_view(have[ident]) != managed_view(want[ident]):
            writes.append(Write("update", ns, name, merge(have[ident], want[ident])))
    return writes
