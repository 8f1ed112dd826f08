"""Incremental translation: the previous result, the keys that changed and the new snapshot
in; the Translation a full ``translate`` of the new snapshot gives out.

Role: the reconciler's translator. ``translate`` stays the reference (and what the CLI,
golden tests and what-if mode call); ``start`` + ``update`` must always produce exactly
what it produces (``tests/stateful/test_incremental_machine.py`` checks that after every
step of random create/update/delete sequences), only without redoing work whose inputs did
not change.

What is memoised, keyed on what, and what invalidates it:
- The gateway layer (``Graph``: GatewayClass acceptance, Gateway and listener verdicts,
  addresses, conflicts) is rebuilt when a GatewayClass, Gateway, Secret or ReferenceGrant
  changed, or the proxy's certificate verdicts (``Applied.invalid_certificates``) did,
  or (with ``--gateway-services``) a Service carrying the gateway-name label changed
  before or after (the generated Services: sticky ports and load-balancer addresses);
  otherwise the previous one is rebased onto the new snapshot (``Graph.rebase``). Each
  Gateway's *signature* (its object and its rejection) is what routes read of it.
- Per HTTPRoute, its ``RouteOutput`` (status, rules per listener, attached listeners)
  together with the reads recorded while computing it (``Graph.reads``). It is recomputed
  when the route changed, or when something it read changed: a Gateway whose signature
  changed (appeared, disappeared, edited), a Service, the EndpointSlices of a Service
  (by the slice's service before and after the change), the ReferenceGrants of a
  namespace, or a Namespace (labels, for allowedRoutes selectors). A recomputed output
  equal to the old one is replaced by the old one, so unchanged pieces keep their identity.
- Per listener, its (SortKey, Rule) entries in precedence order: a changed route's old
  entries are removed and its new ones inserted by bisection (re-sorted when many
  changed). A listener nothing changed in keeps its rules tuple by identity, and
  ``assemble`` reuses its ListenerRoutes, PortConfig and RouterConfig by identity.
- The EndpointSlice index per (namespace, service), updated for the slices that changed.

Rules:
- Pure: no clock, I/O or randomness; ``update`` never mutates its inputs or the previous
  state (every mapping is copied before it is changed); states are frozen.
- ``changed`` must name every key whose object differs between ``prev.snapshot`` and
  ``snapshot`` (added, modified or deleted); extra keys are harmless. ``changed_keys``
  computes it for callers that do not know.
- Every output order comes from an explicit sort (SortKeys, snapshot key order).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from rauta.model import config as cfg
from rauta.model.backends import slice_index
from rauta.model.graph import DEFAULT_CONTROLLER, Graph, Read
from rauta.model.resources import EndpointSlice, HTTPRoute, Service
from rauta.model.services import GATEWAY_NAME_LABEL, ServiceMode
from rauta.model.snapshot import Key, Snapshot
from rauta.model.status import Applied, RouteStatus
from rauta.model.translate import (
    NOTHING,
    ListenerId,
    RouteOutput,
    SortKey,
    Translation,
    assemble,
    route_output,
)

# Kinds the gateway layer reads (Graph.__init__): a change to one rebuilds it.
GATEWAY_LAYER = frozenset({"GatewayClass", "Gateway", "Secret", "ReferenceGrant"})
# Above this many entry changes in one listener (and a quarter of its size), re-sort it.
_RESORT = 64

Entries = tuple[tuple[SortKey, ...], tuple[cfg.Rule, ...]]
_NO_ENTRIES: Entries = ((), ())


def _frozen(d: dict[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(d)


@dataclass(frozen=True)
class Incremental:
    """One translation and everything memoised to produce the next one cheaply."""

    snapshot: Snapshot
    controller_name: str
    address_pool: str | None
    gateway_services: ServiceMode | None
    certificates: tuple[tuple[str, str], ...]  # the certificate verdicts the graph used
    graph: Graph
    signatures: Mapping[str, Any]  # "ns/name" of our Gateways -> what routes read of them
    slices: Mapping[tuple[str, str], tuple[EndpointSlice, ...]]
    routes: Mapping[Key, tuple[RouteOutput, frozenset[Read]]]
    dependents: Mapping[Read, frozenset[Key]]  # a read -> the routes that made it
    listeners: Mapping[ListenerId, Entries]
    attached: Mapping[ListenerId, int]
    status_keys: tuple[Key, ...]  # sorted keys of the routes with a status
    translation: Translation
    recomputed: int = 0  # routes recomputed by the update that made this state (stats)


def _empty(controller_name: str, address_pool: str | None,
           gateway_services: ServiceMode | None) -> Incremental:
    snapshot = Snapshot()
    graph = Graph(snapshot, controller_name, None, address_pool, slices={},
                  services=gateway_services)
    translation = assemble(graph, {}, {}, (), None)
    return Incremental(snapshot, controller_name, address_pool, gateway_services, (), graph,
                       _frozen({}),
                       _frozen({}), _frozen({}), _frozen({}), _frozen({}), _frozen({}), (),
                       translation)


def start(snapshot: Snapshot, *, controller_name: str = DEFAULT_CONTROLLER,
          applied: Applied | None = None, address_pool: str | None = None,
          gateway_services: ServiceMode | None = None) -> Incremental:
    """The state for ``snapshot`` from scratch (its ``translation`` is ``translate``'s)."""
    return update(_empty(controller_name, address_pool, gateway_services), snapshot,
                  snapshot.keys(), applied=applied)


def changed_keys(old: Snapshot, new: Snapshot) -> frozenset[Key]:
    """Keys whose object differs between two snapshots (identity first, then ``==``)."""
    out = set(old.keys()).symmetric_difference(new.keys())
    for key in new.keys():
        before = old.get(*key)
        after = new.get(*key)
        if before is not None and before is not after and before != after:
            out.add(key)
    return frozenset(out)


def _slice_index(prev: Incremental, snapshot: Snapshot, changed: Iterable[Key]
                 ) -> tuple[Mapping[tuple[str, str], tuple[EndpointSlice, ...]],
                            set[tuple[str, str]]]:
    """The EndpointSlice index for ``snapshot`` and the (namespace, service) groups that
    changed (a slice counts for its service before and after the change)."""
    keys = [k for k in changed if k[0] == "EndpointSlice"]
    touched: set[tuple[str, str]] = set()
    if not keys:
        return prev.slices, touched
    names: dict[str, set[str]] = {}  # namespace -> names of the changed slices
    fresh: dict[tuple[str, str], list[EndpointSlice]] = {}  # their new versions by service
    for key in keys:
        names.setdefault(key[1], set()).add(key[2])
        before, after = prev.snapshot.get(*key), snapshot.get(*key)
        for obj in (before, after):
            if isinstance(obj, EndpointSlice) and obj.service_name:
                touched.add((key[1], obj.service_name))
        if isinstance(after, EndpointSlice) and after.service_name:
            fresh.setdefault((key[1], after.service_name), []).append(after)
    if 4 * len(keys) > len(snapshot.of_kind(EndpointSlice)):  # most of them: rebuild
        return _frozen(slice_index(snapshot)), touched
    index = dict(prev.slices)
    for ns, svc in touched:
        gone = names[ns]
        group = [e for e in index.get((ns, svc), ()) if e.metadata.name not in gone]
        group.extend(fresh.get((ns, svc), ()))
        group.sort(key=lambda e: e.metadata.name)  # snapshot key order within a namespace
        if group:
            index[(ns, svc)] = tuple(group)
        else:
            index.pop((ns, svc), None)
    return _frozen(index), touched


def _generated(obj: object) -> bool:
    """Could this be a generated per-Gateway Service (the gateway layer reads those)?"""
    return isinstance(obj, Service) and GATEWAY_NAME_LABEL in obj.metadata.labels


def _signatures(graph: Graph) -> dict[str, Any]:
    """What route attachment reads of each of our Gateways (``Graph._attach_one``)."""
    return {gw.key: (gw.obj, gw.rejected) for gw in graph.gateways}


def _apply_entries(current: Entries, removed: list[SortKey],
                   added: list[tuple[SortKey, cfg.Rule]]) -> Entries:
    """``current`` without the ``removed`` keys and with ``added``, in SortKey order."""
    keys, rules = current
    if len(removed) + len(added) > _RESORT and 4 * (len(removed) + len(added)) > len(keys):
        gone = set(removed)
        entries = [(k, r) for k, r in zip(keys, rules, strict=True) if k not in gone]
        entries.extend(added)
        entries.sort(key=lambda e: e[0])  # SortKeys are unique: rules never compare
        return tuple(k for k, _ in entries), tuple(r for _, r in entries)
    klist, rlist = list(keys), list(rules)
    for key in removed:
        i = bisect_left(klist, key)
        del klist[i], rlist[i]
    for key, rule in added:
        i = bisect_left(klist, key)
        klist.insert(i, key)
        rlist.insert(i, rule)
    return tuple(klist), tuple(rlist)


def update(prev: Incremental, snapshot: Snapshot, changed: Iterable[Key], *,
           applied: Applied | None = None) -> Incremental:
    """The state for ``snapshot``, which differs from ``prev.snapshot`` only in ``changed``
    (see the module doc); ``applied`` is what the proxy reported (None: as desired)."""
    changed = frozenset(changed)
    certs = applied.invalid_certificates if applied is not None else ()
    slices, touched_services = _slice_index(prev, snapshot, changed)

    # The gateway layer, and the Gateways whose signature changed.
    dirty_reads: set[Read] = set()
    services_changed = prev.gateway_services is not None and any(
        k[0] == "Service" and (_generated(prev.snapshot.get(*k)) or _generated(snapshot.get(*k)))
        for k in changed)
    if (certs != prev.certificates or services_changed
            or any(k[0] in GATEWAY_LAYER for k in changed)):
        graph = Graph(snapshot, prev.controller_name, dict(certs), prev.address_pool,
                      slices=slices, services=prev.gateway_services)
        signatures: Mapping[str, Any] = _frozen(_signatures(graph))
        for gw_key in signatures.keys() | prev.signatures.keys():
            if signatures.get(gw_key) != prev.signatures.get(gw_key):
                ns, name = gw_key.split("/", 1)
                dirty_reads.add(("Gateway", ns, name))
    else:
        graph = prev.graph.rebase(snapshot, slices)
        signatures = prev.signatures

    # The routes to recompute: changed ones, and those that read something that changed.
    dirty: set[Key] = {k for k in changed if k[0] == "HTTPRoute"}
    for kind, ns, name in changed:
        if kind == "Service":
            dirty_reads.add(("Service", ns, name))
        elif kind == "ReferenceGrant":
            dirty_reads.add(("Grants", ns))
        elif kind == "Namespace":
            dirty_reads.add(("Namespace", name))
    dirty_reads.update(("Slices", ns, svc) for ns, svc in touched_services)
    for read in dirty_reads:
        dirty.update(prev.dependents.get(read, ()))

    routes = dict(prev.routes)
    dependents = dict(prev.dependents)
    removed: dict[ListenerId, list[SortKey]] = {}
    added: dict[ListenerId, list[tuple[SortKey, cfg.Rule]]] = {}
    attached = dict(prev.attached)
    statuses: dict[Key, RouteStatus | None] = {}  # route key -> its new status (None: none)
    for key in sorted(dirty):
        old_out, old_reads = prev.routes.get(key, (NOTHING, frozenset()))
        obj = snapshot.get(*key)
        if isinstance(obj, HTTPRoute):
            graph.reads = set()
            out = route_output(graph, obj)
            reads = frozenset(graph.reads)
            graph.reads = None
            if out == old_out:
                out = old_out  # keep the identity of what did not change
            routes[key] = (out, reads)
        else:
            out, reads = NOTHING, frozenset()
            routes.pop(key, None)
        for read in old_reads - reads:
            left = dependents[read] - {key}
            if left:
                dependents[read] = left
            else:
                del dependents[read]
        for read in reads - old_reads:
            dependents[read] = dependents.get(read, frozenset()) | {key}
        if out is old_out:
            continue
        old_rules, new_rules = dict(old_out.rules), dict(out.rules)
        for lid in old_rules.keys() | new_rules.keys():
            before, after = old_rules.get(lid, ()), new_rules.get(lid, ())
            if before != after:
                removed.setdefault(lid, []).extend(k for k, _ in before)
                added.setdefault(lid, []).extend(after)
        for lid in old_out.attached:
            attached[lid] -= 1
            if not attached[lid]:
                del attached[lid]
        for lid in out.attached:
            attached[lid] = attached.get(lid, 0) + 1
        if out.status is not old_out.status:
            statuses[key] = out.status

    listeners = dict(prev.listeners)
    for lid in removed.keys() | added.keys():
        entries = _apply_entries(listeners.get(lid, _NO_ENTRIES), removed.get(lid, []),
                                 added.get(lid, []))
        if entries[0]:
            listeners[lid] = entries
        else:
            listeners.pop(lid, None)

    status_keys, route_statuses = prev.status_keys, prev.translation.statuses.routes
    if statuses:
        klist, slist = list(status_keys), list(route_statuses)
        for key, status in sorted(statuses.items()):
            i = bisect_left(klist, key)
            present = i < len(klist) and klist[i] == key
            if status is None:
                if present:
                    del klist[i], slist[i]
            elif present:
                slist[i] = status
            else:
                klist.insert(i, key)
                slist.insert(i, status)
        status_keys, route_statuses = tuple(klist), tuple(slist)

    translation = assemble(graph, {lid: e[1] for lid, e in listeners.items()}, attached,
                           route_statuses, applied, previous=prev.translation.config)
    return Incremental(snapshot, prev.controller_name, prev.address_pool,
                       prev.gateway_services, certs, graph,
                       signatures, slices, _frozen(routes), _frozen(dependents),
                       _frozen(listeners), _frozen(attached), status_keys, translation,
                       recomputed=len(dirty))
