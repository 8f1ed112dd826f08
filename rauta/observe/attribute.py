"""Attribution: which route, rule, backend, Service and Pod an observed event belongs to.

Role: the pure join between what capture sees (4-tuples, paths, statuses) and what the
configuration says (the proxy's routing decisions and the model's RouterConfig).

Rules:
- Pure: no IO, clock or randomness; inputs are events, join records and a RouterConfig.
- ``RouteIds`` gives stable small ids to (route, rule) names: the id of a name never
  changes once assigned, new names get the next id in sorted order of registration
  batches, so two registries fed the same batches agree.
- Upstream events join the proxy's ``FlowRecord`` on the 4-tuple; with keep-alive the
  record used is the one whose ``start_ns`` is the latest ≤ the kernel event's ``end_ns``
  (the proxy stamps its record just after the write the kernel may already have seen;
  rauta's upstream pool does not pipeline, so the next record starts after ``end_ns``).
- Without a record, the server endpoint maps to its Service through the config's
  backends (``EndpointIndex``), and to its route, rule and backend when only one rule
  sends to it. Its Pod is the endpoint's ``pod`` (the EndpointSlice's targetRef), or
  what ``pods`` ("ip:port" → "namespace/name") says, which wins.
- Downstream events (server = a listener) are attributed with ``rauta.model.routing.route``,
  the same function the proxy routes with, from listener port, Host, path and method.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from rauta.model.config import RouterConfig, Rule
from rauta.model.routing import RequestView, route
from rauta.observe.events import Endpoint, HttpEvent

FourTuple = tuple[Endpoint, Endpoint]  # (client, server) in the request's direction


def rule_name(rule: Rule) -> str:
    """The rule label: its name, or its index as a string."""
    return rule.rule_name or str(rule.rule_index)


class RouteIds:
    """Stable ids for "route#rule" names (1-based; 0 = unattributed)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._names: list[str] = [""]

    def register(self, names: Iterable[str]) -> None:
        for name in sorted(set(names) - self._ids.keys()):
            self._ids[name] = len(self._names)
            self._names.append(name)

    def id(self, route_name: str, rule: str) -> int:
        key = f"{route_name}#{rule}"
        if key not in self._ids:
            self.register([key])
        return self._ids[key]

    def name(self, rid: int) -> tuple[str, str]:
        if not 0 < rid < len(self._names):
            return ("", "")
        r, _, rule = self._names[rid].partition("#")
        return (r, rule)


class FlowRecord(NamedTuple):
    """What the proxy knew when it sent one request on an upstream connection.

    A NamedTuple rather than a frozen dataclass: one is built per proxied request.
    """

    start_ns: int
    route: str
    rule: str
    backend: str
    connect_ns: int = 0


class JoinTable:
    """Per 4-tuple, the proxy's records sorted by request start (bounded per flow)."""

    def __init__(self, per_flow: int = 64, flows: int = 65536) -> None:
        self._flows: dict[FourTuple, list[FlowRecord]] = {}
        self.per_flow = per_flow
        self.flows = flows

    def add(self, flow: FourTuple, rec: FlowRecord) -> None:
        recs = self._flows.get(flow)
        if recs is None:
            if len(self._flows) >= self.flows:
                self._flows.pop(next(iter(self._flows)))
            recs = self._flows[flow] = []
        if recs and recs[-1].start_ns > rec.start_ns:
            bisect.insort(recs, rec, key=lambda r: r.start_ns)
        else:
            recs.append(rec)
        if len(recs) > self.per_flow:
            del recs[0]

    def forget(self, flow: FourTuple) -> None:
        self._flows.pop(flow, None)

    def lookup(self, flow: FourTuple, start_ns: int) -> FlowRecord | None:
        recs = self._flows.get(flow)
        if not recs:
            return None
        i = bisect.bisect_right(recs, start_ns, key=lambda r: r.start_ns)
        return recs[i - 1] if i else None

    def __len__(self) -> int:
        return len(self._flows)


class EndpointIndex:
    """Endpoint "ip:port" → (Service, Pod), and its owners, from a RouterConfig's backends.

    ``owner`` is the (route, rule, backend) that sends to the endpoint when exactly one
    does; when several do it is ("", "", backend) if they share one backend, else empty.
    """

    def __init__(self, config: RouterConfig, pods: Mapping[str, str] | None = None) -> None:
        self._svc: dict[tuple[str, int], str] = {}
        self._owners: dict[tuple[str, int], set[tuple[str, str, str]]] = {}
        self._pods = dict(pods or {})
        for port in config.ports:
            for lr in port.listeners:
                for rule in lr.rules:
                    for b in rule.backends:
                        svc = b.name.rpartition(":")[0] or b.name
                        for e in b.endpoints:
                            self._svc.setdefault((e.address, e.port), svc)
                            if e.pod:
                                self._pods.setdefault(f"{e.address}:{e.port}", e.pod)
                            self._owners.setdefault((e.address, e.port), set()).add(
                                (rule.route, rule_name(rule), b.name))
        self.listeners = frozenset((p.address, p.port) for p in config.ports)

    def service(self, ep: Endpoint) -> tuple[str, str]:
        return (self._svc.get((ep.ip, ep.port), ""), self._pods.get(f"{ep.ip}:{ep.port}", ""))

    def owner(self, ep: Endpoint) -> tuple[str, str, str]:
        owners = self._owners.get((ep.ip, ep.port), set())
        if len(owners) == 1:
            return next(iter(owners))
        backends = {o[2] for o in owners}
        return ("", "", backends.pop()) if len(backends) == 1 else ("", "", "")


class Attributor:
    """Fills an event's attribution fields from the join table, the index and routing."""

    def __init__(self, config: RouterConfig, table: JoinTable,
                 pods: Mapping[str, str] | None = None) -> None:
        self.table = table
        self.update(config, pods)

    def update(self, config: RouterConfig, pods: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.index = EndpointIndex(config, pods)

    def attribute(self, ev: HttpEvent) -> HttpEvent:
        if ev.leg == "downstream":
            return self._downstream(ev)
        svc, pod = self.index.service(ev.server)
        # The proxy stamps a record just after writing the request, so the kernel may
        # see that request first: join on the response's time instead. The next request
        # on the connection is written only after this response was read, so the record
        # wanted is the latest one started before ``end_ns``.
        at = ev.end_ns if ev.source == "xdp" else ev.start_ns
        rec = self.table.lookup((ev.client, ev.server), at) if not ev.route else None
        if rec is not None:
            return dataclasses.replace(
                ev, route=rec.route, rule=rec.rule, backend=rec.backend,
                service=ev.service or svc, pod=ev.pod or pod,
                connect_ns=ev.connect_ns or rec.connect_ns,
            )
        if ev.route or ev.backend:
            return dataclasses.replace(ev, service=ev.service or svc, pod=ev.pod or pod)
        r, rl, b = self.index.owner(ev.server)
        return dataclasses.replace(ev, route=r, rule=rl, backend=b,
                                   service=ev.service or svc, pod=ev.pod or pod)

    def _downstream(self, ev: HttpEvent) -> HttpEvent:
        d = route(self.config, RequestView(
            method=ev.method, host=ev.host, path=ev.path or "/", query="", headers=(),
            port=ev.server.port,
        ), choice=0)
        if d.rule is None:
            return ev
        return dataclasses.replace(
            ev, route=d.rule.route, rule=rule_name(d.rule),
            backend=d.backend.name if d.backend is not None else "",
        )
