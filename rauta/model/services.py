"""Per-Gateway Services: the internal ports each Gateway is served on, and its Service.

Role: the pure half of the ``--gateway-services`` mode (issue 11, "each Gateway gets its
own address"). ``allocate_ports`` gives every Gateway (key ``namespace/name``) one
internal port per distinct listener port, unique across Gateways, from an inclusive
range ``(lo, hi)``; ``render_service`` turns a Gateway and its ports into the desired
Service manifest (a plain JSON-able dict) that the reconciler diffs and applies;
``parse_port_range`` checks the ``--internal-ports LO-HI`` option.

Rules:
- Pure and deterministic: no IO, clock or randomness; the answer depends only on the
  Gateways, the ports their existing Services already target, and the range, never on
  input order. Gateways are taken in age order: creationTimestamp, namespace, name.
- Sticky (phase 1, in age order): a listener port keeps the targetPort its existing
  Service already maps it to, while that port is inside the range and not claimed by an
  older Gateway (or by another listener port of the same Gateway).
- Phase 2, in age order, listener ports ascending: every port still without an internal
  port takes the lowest free one of the range. When the range is exhausted the Gateway
  gets a problem (``AddressNotAssigned``) and no ports at all (never half a Gateway).
- The Service: type LoadBalancer, in the Gateway's namespace, named ``<gateway>-rauta``
  (truncated to 63 characters with a stable hash suffix when longer), labels =
  spec.infrastructure.labels plus ``gateway.networking.k8s.io/gateway-name`` (which
  wins), annotations = spec.infrastructure.annotations, an ownerReference to the
  Gateway (controller, blockOwnerDeletion) so the API server garbage-collects it, the
  configured pod selector, and one TCP port per listener port (name ``p<port>``) with
  ``targetPort`` = the internal port. Ports are sorted by port number; label and
  annotation maps are sorted by key.
- Addresses (``gateway_addresses``): the Service's ``status.loadBalancer.ingress``
  entries in their order, ``ip`` as IPAddress, else ``hostname`` as Hostname, duplicates
  dropped. With none, the configured fallback addresses (``--address-fallback``), with a
  note saying so; with no fallback either, a problem ``AddressNotAssigned`` (Programmed
  False: "yet to assign addresses").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict

from rauta.model.conditions import Reason
from rauta.model.resources import Gateway

GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"


class PortAllocation(BaseModel):
    """A Gateway's internal ports (listener port → internal port), or why it has none."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ports: tuple[tuple[int, int], ...] = ()
    problem: tuple[Reason, str] | None = None

    def as_dict(self) -> dict[int, int]:
        return dict(self.ports)


def parse_port_range(text: str) -> tuple[int, int]:
    """``"LO-HI"`` as ``(lo, hi)``; ``ValueError`` naming the value when it is not one."""
    lo_s, sep, hi_s = text.partition("-")
    try:
        lo, hi = int(lo_s), int(hi_s)
    except ValueError:
        lo = hi = 0
    if not sep or not (1 <= lo <= hi <= 65535):
        raise ValueError(f"--internal-ports {text!r} is not a port range LO-HI "
                         "with 1 <= LO <= HI <= 65535 (e.g. 20000-20999)")
    return lo, hi


def _key(gw: Gateway) -> str:
    return f"{gw.metadata.namespace}/{gw.metadata.name}"


def _listener_ports(gw: Gateway) -> list[int]:
    return sorted({listener.port for listener in gw.spec.listeners})


def allocate_ports(gateways: Iterable[Gateway],
                   existing: Mapping[str, Mapping[int, int]],
                   port_range: tuple[int, int]) -> dict[str, PortAllocation]:
    """Every Gateway's internal ports ("ns/name" → PortAllocation); see the module rules.

    ``existing`` maps a Gateway key to its current Service's port → targetPort.
    """
    lo, hi = port_range
    ordered = sorted(gateways, key=lambda g: (g.metadata.creation_timestamp,
                                              g.metadata.namespace, g.metadata.name))
    claimed: set[int] = set()
    chosen: dict[str, dict[int, int]] = {}
    for gw in ordered:  # phase 1: keep what the existing Service targets, while valid
        key = _key(gw)
        current = existing.get(key, {})
        mine: dict[int, int] = {}
        for port in _listener_ports(gw):
            target = current.get(port)
            if target is not None and lo <= target <= hi and target not in claimed:
                mine[port] = target
                claimed.add(target)
        chosen[key] = mine
    out: dict[str, PortAllocation] = {}
    cursor = lo
    for gw in ordered:  # phase 2: the rest take the lowest free port
        key = _key(gw)
        mine = chosen[key]
        missing = [p for p in _listener_ports(gw) if p not in mine]
        taken: list[int] = []
        for _port in missing:
            while cursor <= hi and cursor in claimed:
                cursor += 1
            if cursor > hi:
                break
            taken.append(cursor)
            claimed.add(cursor)
        if len(taken) < len(missing):
            for target in taken + list(mine.values()):  # give back: no half Gateways
                claimed.discard(target)
            cursor = lo
            out[key] = PortAllocation(problem=(
                Reason.ADDRESS_NOT_ASSIGNED,
                f"the internal port range {lo}-{hi} has no free port left for "
                f"{len(missing)} listener port(s) of this Gateway"))
            continue
        mine.update(zip(missing, taken, strict=True))
        out[key] = PortAllocation(ports=tuple(sorted(mine.items())))
    return out


def service_name(gateway_name: str) -> str:
    """The Service's name for a Gateway: ``<name>-rauta``, at most 63 characters."""
    name = f"{gateway_name}-rauta"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(gateway_name.encode()).hexdigest()[:8]
    return f"{gateway_name[:63 - 15]}-{digest}-rauta"


def _infra_map(gw: Gateway, field: str) -> dict[str, str]:
    infra = gw.spec.infrastructure or {}
    value = infra.get(field) or {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def render_service(gw: Gateway, allocation: PortAllocation,
                   selector: Mapping[str, str]) -> dict[str, object]:
    """The desired Service manifest for ``gw`` (see the module rules)."""
    labels = _infra_map(gw, "labels")
    labels[GATEWAY_NAME_LABEL] = gw.metadata.name
    annotations = _infra_map(gw, "annotations")
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(gw.metadata.name),
            "namespace": gw.metadata.namespace,
            "labels": dict(sorted(labels.items())),
            "annotations": dict(sorted(annotations.items())),
            "ownerReferences": [{
                "apiVersion": GATEWAY_API_VERSION,
                "kind": "Gateway",
                "name": gw.metadata.name,
                "uid": gw.metadata.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }],
        },
        "spec": {
            "type": "LoadBalancer",
            "selector": dict(sorted(selector.items())),
            "ports": [{"name": f"p{port}", "protocol": "TCP", "port": port,
                       "targetPort": target}
                      for port, target in allocation.ports],
        },
    }


def gateway_addresses(service_status: Mapping[str, object] | None,
                      fallback: tuple[tuple[str, str], ...] = ()
                      ) -> tuple[tuple[tuple[str, str], ...], tuple[Reason, str] | None, str]:
    """A Gateway's status.addresses ((type, value), ...) from its Service's status, the
    problem when there are none, and a note for the Programmed message."""
    lb = (service_status or {}).get("loadBalancer")
    ingress = lb.get("ingress") if isinstance(lb, dict) else None
    found: list[tuple[str, str]] = []
    for entry in ingress if isinstance(ingress, list) else ():
        if not isinstance(entry, dict):
            continue
        if entry.get("ip"):
            item = ("IPAddress", str(entry["ip"]))
        elif entry.get("hostname"):
            item = ("Hostname", str(entry["hostname"]))
        else:
            continue
        if item not in found:
            found.append(item)
    if found:
        return tuple(found), None, ""
    if fallback:
        return fallback, None, ("the Service has no load-balancer address yet; "
                                "status.addresses holds the configured fallback")
    return (), (Reason.ADDRESS_NOT_ASSIGNED,
                "the Gateway's Service has no load-balancer address yet "
                "(status.loadBalancer.ingress is empty) and no fallback is configured"), ""
