"""Gateway API status as the model computes it, and the pure stamping the reconciler applies.

Role: the status half of the translator's output (GatewayClass, Gateway with listeners,
HTTPRoute per parentRef), the ``Applied`` report the proxy gives back, and two pure helpers
the reconciler calls before writing: ``stamp_conditions`` and ``merge_route_parents``.

Rules:
- Model statuses carry no time and no observedGeneration. ``stamp_conditions`` adds them:
  ``observedGeneration`` is the object's generation, and ``lastTransitionTime`` keeps the
  previous value whenever the condition's status did not change (as
  ``meta.SetStatusCondition`` does); the clock is the ``now`` argument.
- ``merge_route_parents`` replaces only the entries whose ``controllerName`` is ours and
  keeps every other controller's entries, in their original order.
- A Gateway's ``status.addresses`` is its own address from the model when it has one
  (address pool), else the caller's static list, else absent: an address left in the
  current status from before is removed.
- Collections are tuples in a fixed order (by namespace/name; conditions in catalog order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from rauta.model.conditions import Condition


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Applied(Frozen):
    """What the proxy actually programmed: listening ports, and ports that failed (why)."""

    ports: tuple[int, ...] = ()  # listening on the proxy's own host (PortConfig.address "")
    failed: tuple[tuple[int, str], ...] = ()
    # Referenced TLS Secrets ("ns/name") whose key material the proxy could not load, and why.
    invalid_certificates: tuple[tuple[str, str], ...] = ()
    # The same for ports bound on a Gateway's own address (PortConfig.address not "").
    addressed: tuple[tuple[str, int], ...] = ()
    failed_at: tuple[tuple[str, int, str], ...] = ()

    def bound(self, port: int, address: str = "") -> bool:
        """Is ``(address, port)`` listening?"""
        return port in self.ports if not address else (address, port) in self.addressed

    def failure(self, port: int, address: str = "") -> str | None:
        if address:
            return next((why for a, p, why in self.failed_at if (a, p) == (address, port)),
                        None)
        for p, why in self.failed:
            if p == port:
                return why
        return None


class GatewayClassStatus(Frozen):
    name: str
    generation: int
    uid: str = ""  # the object's uid: a re-created object is a different status target
    conditions: tuple[Condition, ...]
    supported_features: tuple[str, ...] = ()  # GEP-2162, sorted by name


class ListenerStatus(Frozen):
    name: str
    supported_kinds: tuple[tuple[str, str], ...]  # (group, kind)
    attached_routes: int
    conditions: tuple[Condition, ...]


class GatewayStatus(Frozen):
    namespace: str
    name: str
    generation: int
    uid: str = ""  # the object's uid: a re-created object is a different status target
    # (type, value) of the Gateway's own address; empty when it is served on the shared
    # listen host (no address pool).
    addresses: tuple[tuple[str, str], ...] = ()
    conditions: tuple[Condition, ...]
    listeners: tuple[ListenerStatus, ...]


class RouteParentStatus(Frozen):
    parent_ref: tuple[tuple[str, str | int], ...]  # the parentRef as written, defaults filled
    controller_name: str
    conditions: tuple[Condition, ...]


class RouteStatus(Frozen):
    namespace: str
    name: str
    generation: int
    uid: str = ""  # the object's uid: a re-created object is a different status target
    parents: tuple[RouteParentStatus, ...]


class Statuses(Frozen):
    gateway_classes: tuple[GatewayClassStatus, ...] = ()
    gateways: tuple[GatewayStatus, ...] = ()
    routes: tuple[RouteStatus, ...] = ()


# ---------------------------------------------------------------------- Kubernetes shapes


def parent_ref_dict(entry: RouteParentStatus) -> dict[str, str | int]:
    return dict(entry.parent_ref)


def stamp_conditions(
    desired: Sequence[Condition],
    previous: Sequence[Mapping[str, Any]],
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """Kubernetes condition dicts for ``desired``, timed against ``previous``.

    ``now`` is an RFC 3339 timestamp supplied by the caller (the reconciler's clock).
    """
    before = {c.get("type"): c for c in previous}
    out: list[dict[str, Any]] = []
    for cond in desired:
        old = before.get(cond.type.value)
        keep = old is not None and old.get("status") == cond.status
        out.append({
            "type": cond.type.value,
            "status": cond.status,
            "reason": cond.reason.value,
            "message": cond.message,
            "observedGeneration": generation,
            "lastTransitionTime": old.get("lastTransitionTime", now) if keep and old else now,
        })
    return out


def listener_status_dict(
    lis: ListenerStatus, previous: Mapping[str, Any] | None, generation: int, now: str
) -> dict[str, Any]:
    prev_conds = (previous or {}).get("conditions") or ()
    return {
        "name": lis.name,
        "supportedKinds": [{"group": g, "kind": k} for g, k in lis.supported_kinds],
        "attachedRoutes": lis.attached_routes,
        "conditions": stamp_conditions(lis.conditions, prev_conds, generation, now),
    }


def gateway_status_dict(
    gw: GatewayStatus, previous: Mapping[str, Any] | None, now: str,
    addresses: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """The full ``status`` of a Gateway, stamped against its previous status.

    Its addresses are the model's own (``gw.addresses``) when it has any, else the
    caller's ``addresses`` (a static list shared by every Gateway), else none.
    """
    prev = previous or {}
    prev_listeners = {lst.get("name"): lst for lst in prev.get("listeners") or ()}
    out: dict[str, Any] = {}
    if gw.addresses:
        out["addresses"] = [{"type": t, "value": v} for t, v in gw.addresses]
    elif addresses:
        out["addresses"] = [dict(a) for a in addresses]
    out["conditions"] = stamp_conditions(gw.conditions, prev.get("conditions") or (),
                                         gw.generation, now)
    out["listeners"] = [listener_status_dict(lst, prev_listeners.get(lst.name), gw.generation, now)
                        for lst in gw.listeners]
    return out


def gateway_class_status_dict(gc: GatewayClassStatus, previous: Mapping[str, Any] | None,
                              now: str) -> dict[str, Any]:
    prev = previous or {}
    out: dict[str, Any] = {"conditions": stamp_conditions(gc.conditions,
                                                          prev.get("conditions") or (),
                                                          gc.generation, now)}
    if gc.supported_features:
        out["supportedFeatures"] = [{"name": n} for n in gc.supported_features]
    return out


def _same_parent(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    keys = ("group", "kind", "namespace", "name", "sectionName", "port")
    return all(a.get(k) == b.get(k) for k in keys)


def merge_route_parents(
    route: RouteStatus,
    previous_parents: Sequence[Mapping[str, Any]],
    controller_name: str,
    now: str,
) -> list[dict[str, Any]]:
    """``status.parents`` for an HTTPRoute: other controllers' entries kept, ours replaced."""
    out: list[dict[str, Any]] = [dict(p) for p in previous_parents
                                 if p.get("controllerName") != controller_name]
    ours_before = [p for p in previous_parents if p.get("controllerName") == controller_name]
    for entry in route.parents:
        ref = parent_ref_dict(entry)
        old = next((p for p in ours_before if _same_parent(p.get("parentRef") or {}, ref)), None)
        out.append({
            "parentRef": ref,
            "controllerName": entry.controller_name,
            "conditions": stamp_conditions(entry.conditions,
                                           (old or {}).get("conditions") or (),
                                           route.generation, now),
        })
    return out


AnyStatus = GatewayClassStatus | GatewayStatus | RouteStatus


def status_key(st: AnyStatus) -> tuple[str, str, str]:
    """(kind, namespace, name) of the object a status belongs to."""
    if isinstance(st, GatewayClassStatus):
        return ("GatewayClass", "", st.name)
    if isinstance(st, GatewayStatus):
        return ("Gateway", st.namespace, st.name)
    return ("HTTPRoute", st.namespace, st.name)


def stamp(st: AnyStatus, current: Mapping[str, Any] | None, *, controller_name: str,
          now: str, addresses: Sequence[Mapping[str, str]] = ()) -> dict[str, Any]:
    """The full new ``status`` of an object, stamped against its ``current`` status.

    Fields rauta does not own are kept as they are; for HTTPRoutes only our parent entries
    change. Every sink writes what this returns.
    """
    cur = dict(current or {})
    if isinstance(st, GatewayClassStatus):
        return {**cur, **gateway_class_status_dict(st, cur, now)}
    if isinstance(st, GatewayStatus):
        # status.addresses is wholly ours: a Gateway that lost its address must not keep
        # showing the old one (clients would be sent to an address nothing serves).
        kept = {k: v for k, v in cur.items() if k != "addresses"}
        return {**kept, **gateway_status_dict(st, cur, now, addresses)}
    return {**cur, "parents": merge_route_parents(st, cur.get("parents") or (),
                                                  controller_name, now)}
