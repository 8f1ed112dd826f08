"""Backend resolution: a backendRef → a Service port → its ready endpoints.

Role: the part of the graph stage (``rauta.model.graph.Graph`` inherits it) that turns
an HTTPRoute's backendRef (or a mirror's) into a ``ResolvedBackend``: either the ready
endpoints of one Service port, or the reason the reference is invalid, which the
translator turns into ResolvedRefs=False and a backend answering 500 for its weight.

Rules:
- Pure: reads only the snapshot (through ``snapshot``), the EndpointSlice index
  (``_slices``, see ``slice_index``) and ReferenceGrants (``granted``), and records each
  read with ``_read`` (the incremental translator's dependencies).
- Checks, in order: the kind (core Service only: InvalidKind), a cross-namespace
  reference without a ReferenceGrant (RefNotPermitted), a missing Service, an
  ExternalName Service, a missing or unknown port (BackendNotFound), an appProtocol the
  proxy cannot speak (UnsupportedProtocol).
- Endpoints: from every EndpointSlice of the Service (IPv4/IPv6), the port matched by
  name (a slice without ports uses the numeric targetPort, else the Service port); a
  nil ready condition counts as ready (Kubernetes); sorted by (address, port), unique.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rauta.model.conditions import Reason
from rauta.model.config import Endpoint
from rauta.model.resources import (
    BackendObjectReference,
    EndpointSlice,
    HTTPBackendRef,
    Service,
)
from rauta.model.snapshot import Snapshot

SliceIndex = Mapping[tuple[str, str], Sequence[EndpointSlice]]
# appProtocol values the proxy can speak to a backend (HTTP/1.1, incl. WebSocket upgrade).
# (kubernetes.io/ws is not listed: the proxy does not tunnel Upgrade yet.)
SUPPORTED_APP_PROTOCOLS = frozenset({"http"})


def nsname(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


@dataclass
class ResolvedBackend:
    name: str
    weight: int
    invalid: tuple[Reason, str] | None = None
    app_protocol: str | None = None
    endpoints: tuple[Endpoint, ...] = ()


class BackendResolver:
    """``resolve_backend`` for the Graph (which provides the attributes below)."""

    snapshot: Snapshot
    _slices: SliceIndex

    def _read(self, what: tuple[str, ...]) -> None:
        raise NotImplementedError

    def granted(self, from_kind: str, from_ns: str, to_group: str, to_kind: str, to_ns: str,
                to_name: str) -> bool:
        raise NotImplementedError

    def resolve_backend(self, ref: HTTPBackendRef | BackendObjectReference, route_ns: str,
                        weight: int) -> ResolvedBackend:
        """Resolve a backendRef to a Service port and its ready endpoints (or an invalid one)."""
        ns = ref.namespace or route_ns
        self._read(("Service", ns, ref.name))
        self._read(("Slices", ns, ref.name))
        label = f"{nsname(ns, ref.name)}:{ref.port}" if ref.port else nsname(ns, ref.name)
        if ref.group != "" or ref.kind != "Service":
            return ResolvedBackend(label, weight, (
                Reason.INVALID_KIND,
                f"backendRef {ref.group or 'core'}/{ref.kind} {nsname(ns, ref.name)} "
                "is not a Service"))
        if not self.granted("HTTPRoute", route_ns, "", "Service", ns, ref.name):
            return ResolvedBackend(label, weight, (
                Reason.REF_NOT_PERMITTED,
                f"backendRef Service {nsname(ns, ref.name)} is in another namespace and no "
                "ReferenceGrant allows it"))
        svc = self.snapshot.get("Service", ns, ref.name)
        if not isinstance(svc, Service):
            return ResolvedBackend(label, weight, (
                Reason.BACKEND_NOT_FOUND, f"Service {nsname(ns, ref.name)} does not exist"))
        if svc.spec.type == "ExternalName":
            return ResolvedBackend(label, weight, (
                Reason.BACKEND_NOT_FOUND,
                f"Service {nsname(ns, ref.name)} is an ExternalName Service, not supported"))
        if ref.port is None:
            return ResolvedBackend(label, weight, (
                Reason.BACKEND_NOT_FOUND, f"backendRef Service {nsname(ns, ref.name)} needs a port"))
        sport = next((p for p in svc.spec.ports if p.port == ref.port), None)
        if sport is None:
            return ResolvedBackend(label, weight, (
                Reason.BACKEND_NOT_FOUND,
                f"Service {nsname(ns, ref.name)} has no port {ref.port}"))
        proto = sport.app_protocol
        if proto is not None and proto.lower() not in SUPPORTED_APP_PROTOCOLS:
            return ResolvedBackend(label, weight, (
                Reason.UNSUPPORTED_PROTOCOL,
                f"Service {nsname(ns, ref.name)} port {ref.port} has appProtocol {proto!r}; "
                "supported: http"), app_protocol=proto)
        return ResolvedBackend(label, weight, None, proto,
                               self._endpoints(ns, svc, sport.name, sport.target_port, sport.port))

    def _endpoints(self, ns: str, svc: Service, port_name: str,
                   target: int | str | None, port: int) -> tuple[Endpoint, ...]:
        found: set[Endpoint] = set()
        for eps in self._slices.get((ns, svc.metadata.name), ()):
            if eps.address_type not in ("IPv4", "IPv6"):
                continue
            number: int | None
            if eps.ports is None:
                number = target if isinstance(target, int) else (port if target is None else None)
            else:
                number = next((p.port for p in eps.ports if (p.name or "") == port_name), None)
            if number is None:
                continue
            for ep in eps.endpoints:
                # Kubernetes: a nil ready condition means "unknown", to be read as ready.
                if ep.conditions.ready is False:
                    continue
                ref = ep.target_ref
                pod = (f"{ref.namespace or ns}/{ref.name}"
                       if ref is not None and ref.kind == "Pod" and ref.name else "")
                for addr in ep.addresses:
                    found.add(Endpoint(address=addr, port=number, pod=pod))
        return tuple(sorted(found, key=lambda e: (e.address, e.port)))


def slice_index(snapshot: Snapshot) -> dict[tuple[str, str], tuple[EndpointSlice, ...]]:
    """EndpointSlices by (namespace, service name), each group in snapshot key order."""
    index: dict[tuple[str, str], list[EndpointSlice]] = {}
    for eps in snapshot.of_kind(EndpointSlice):
        if eps.service_name:
            index.setdefault((eps.metadata.namespace, eps.service_name), []).append(eps)
    return {k: tuple(v) for k, v in index.items()}
