"""The resource graph: which objects are ours, which are valid, and what attaches to what.

Role: the middle stage of the translator (snapshot → **graph** → RouterConfig + statuses).
It decides GatewayClass acceptance, listener validity and conflicts, route attachment
(sectionName, port, hostname intersection, allowedRoutes) and reference resolution
(ReferenceGrant, Service → port → ready endpoints), and records every verdict as data.

Rules:
- Pure and deterministic: objects are visited in snapshot key order or an explicit sort.
- While ``Graph.reads`` is a set, every snapshot read a route's attachment or backend
  resolution makes is recorded there (``Read``), where it happens: the incremental
  translator's dependency tracking. ``rebase`` reuses the Gateway verdicts for a snapshot
  that differs only in objects they do not read.
- A verdict is recorded once, where it is decided, with a reason from ``conditions``.
- Each Gateway is served on its own address when an address pool is given
  (``rauta.model.addresses``; without a pool every Gateway shares the listen host "").
  A connection is routed only among the listeners bound on the (address, port) that
  accepted it, so listeners of *different* Gateways are checked against each other only
  when they share an address and port: the older Gateway (creationTimestamp, then
  namespace/name) keeps it; a later one with another protocol gets ``PortUnavailable``
  and one with the same hostname gets ``HostnameConflict``. Gateways on different
  addresses never conflict.
- A Gateway whose address cannot be assigned (``AddressNotAssigned``) keeps the Accepted
  verdict of its spec but none of its listeners is served (``ListenerState.served``); one
  with an address type rauta cannot bind under a pool (``UnsupportedAddress``) is not
  accepted. Gateways that are not accepted take no address from the pool.
- ``--gateway-services`` (a ``ServiceMode``): every accepted Gateway gets internal ports
  unique to it (``services.allocate_ports``, sticky from the Service it already has) and
  its listeners bind on (listen host, internal port), so Gateways never share a socket;
  ``services`` holds the Service each one should have, and status.addresses come from
  that Service's load-balancer ingress, else the fallback, else Programmed=False
  AddressNotAssigned (the listeners are served all the same: the load balancer needs
  them to be up). A range with no free port left is AddressNotAssigned, nothing served.
  With an address pool too, addresses come from the pool and each listener is bound on
  both sockets, (pool address, listener port) and (listen host, internal port).
- A field rauta does not implement is never pretended: a Gateway with ``spec.tls``
  (client-certificate validation) or ``spec.infrastructure`` is not accepted (Accepted
  False, reason Invalid, or InvalidParameters for ``infrastructure.parametersRef``; see
  ``_unsupported_gateway_fields``) and not served; in the service mode
  ``infrastructure.labels``/``annotations`` are supported (they go on the Service),
  ``parametersRef`` still gets InvalidParameters; an HTTPS listener with
  ``tls.frontendValidation`` is not accepted (UnsupportedValue). Messages name the field.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rauta.model import hostnames
from rauta.model.addresses import allocate
from rauta.model.backends import BackendResolver, SliceIndex, nsname, slice_index
from rauta.model.conditions import Reason
from rauta.model.hostnames import valid_hostname
from rauta.model.resources import (
    GATEWAY_GROUP,
    Gateway,
    GatewayClass,
    HTTPRoute,
    Listener,
    Namespace,
    ParentReference,
    ReferenceGrant,
    Secret,
    SecretObjectReference,
    Service,
)
from rauta.model.services import ServiceMode, plan_gateways
from rauta.model.snapshot import Snapshot

DEFAULT_CONTROLLER = "rauta.io/gateway-controller"
SUPPORTED_PROTOCOLS = ("HTTP", "HTTPS")
HTTPROUTE_KIND = (GATEWAY_GROUP, "HTTPRoute")
# What a route's translation read, recorded while ``Graph.reads`` is a set (the incremental
# translator's dependencies): ("Gateway", ns, name), ("Namespace", name), ("Service", ns,
# name), ("Slices", ns, service) for the EndpointSlices of a Service, ("Grants", ns) for
# the ReferenceGrants of a namespace.
Read = tuple[str, ...]


def age_key(obj: Gateway | HTTPRoute) -> tuple[str, str, str]:
    """Older first: creationTimestamp (RFC 3339 sorts as text), then namespace/name."""
    meta = obj.metadata
    return (meta.creation_timestamp, meta.namespace, meta.name)


def _unsupported_gateway_fields(gw: Gateway, generated: bool = False
                                ) -> tuple[Reason, str] | None:
    """Why the Gateway cannot be accepted as written (reason of the first problem, every
    problem in the message, each naming its field), or None.

    - ``spec.addresses`` of a type other than IPAddress/Hostname: UnsupportedAddress.
    - ``spec.tls`` (frontend client-certificate validation, backend client certificate):
      Invalid, the spec's reason for "unrecognized or invalid values in the TLS
      configuration". Serving the Gateway without them would accept clients the user
      meant to reject, so the Gateway is not served (fail closed).
    - ``spec.infrastructure.parametersRef``: InvalidParameters (GatewayInfrastructure:
      a reference to an unsupported kind SHOULD be rejected with Accepted=False and
      InvalidParameters); ``labels``/``annotations``: Invalid (rauta generates no
      infrastructure to carry them), unless ``generated`` (the ``--gateway-services``
      mode: the Gateway's Service carries them).
    """
    problems: list[tuple[Reason, str]] = []
    for addr in gw.spec.addresses:
        if addr.type not in ("IPAddress", "Hostname"):
            problems.append((Reason.UNSUPPORTED_ADDRESS,
                             f"address type {addr.type!r} is not supported"))
    tls = sorted(k for k, v in (gw.spec.tls or {}).items() if v)
    if tls:
        why = {"frontend": "rauta does not validate client certificates",
               "backend": "rauta presents no client certificate to backends"}
        problems.append((Reason.INVALID,
                         f"{_fields('spec.tls', tls)} not supported ("
                         + "; ".join(why.get(k, "unknown field") for k in tls)
                         + "): the Gateway is not served rather than served without it"))
    infra = sorted(k for k, v in (gw.spec.infrastructure or {}).items() if v)
    if "parametersRef" in infra:
        problems.append((Reason.INVALID_PARAMETERS,
                         "spec.infrastructure.parametersRef is not supported (rauta takes "
                         "no infrastructure parameters)"))
    rest = [k for k in infra if k != "parametersRef"
            and not (generated and k in ("labels", "annotations"))]
    if rest:
        problems.append((Reason.INVALID, f"{_fields('spec.infrastructure', rest)} not "
                         "supported (rauta generates no infrastructure to carry them)"))
    if not problems:
        return None
    return problems[0][0], "; ".join(m for _, m in problems)


def _fields(prefix: str, names: list[str]) -> str:
    """``spec.tls.frontend is`` / ``spec.x.a, spec.x.b are``."""
    text = ", ".join(f"{prefix}.{n}" for n in names)
    return text + (" is" if len(names) == 1 else " are")


def _s(group: list[ListenerState]) -> str:
    """Plural suffix for the *other* listeners of a group (the group minus one)."""
    return "s" if len(group) > 2 else ""


def _who(lis: ListenerState) -> str:
    meta = lis.gateway.metadata
    return f"listener {lis.spec.name!r} of Gateway {nsname(meta.namespace, meta.name)}"


@dataclass
class ListenerState:
    gateway: Gateway
    spec: Listener
    accepted: tuple[bool, Reason, str] = (True, Reason.ACCEPTED, "")
    conflicted: Reason | None = None  # HostnameConflict / ProtocolConflict
    conflict_note: str = ""  # who it conflicts with (the Conflicted condition's message)
    resolved: tuple[bool, Reason, str] = (True, Reason.RESOLVED_REFS, "")
    tls_ok: bool = True  # HTTPS only: at least one usable certificate and no bad ref
    supported_kinds: tuple[tuple[str, str], ...] = (HTTPROUTE_KIND,)
    certificates: tuple[str, ...] = ()  # "ns/name" of usable TLS Secrets
    index: int = 0  # position in the Gateway's spec.listeners

    @property
    def valid(self) -> bool:
        """Can the proxy serve this listener? (Invalid route kinds alone do not stop it.)"""
        return (self.accepted[0] and self.conflicted is None and self.tls_ok
                and self.gateway_ok)

    gateway_ok: bool = True  # False when the whole Gateway is not accepted
    address: str = ""  # the Gateway's address ("" = the proxy's listen host)
    address_ok: bool = True  # False when the Gateway's address could not be assigned
    # The internal port the listener is bound on (``--gateway-services``), else None: it
    # is then bound on its own spec.port.
    bind_port: int | None = None
    # With an address pool as well: the internal port the listener is *also* bound on,
    # on the listen host (the Service's targetPort), besides (pool address, spec.port).
    service_port: int | None = None

    @property
    def listen_port(self) -> int:
        """The port the proxy binds this listener on."""
        return self.spec.port if self.bind_port is None else self.bind_port

    @property
    def served(self) -> bool:
        """Is this listener programmed into the RouterConfig?"""
        return self.valid and self.address_ok

    @property
    def hostname(self) -> str:
        return (self.spec.hostname or "").lower()

    @property
    def lid(self) -> tuple[str, int]:
        """The listener's identity across translations: ("ns/gateway", index)."""
        meta = self.gateway.metadata
        return nsname(meta.namespace, meta.name), self.index

    @property
    def protocol(self) -> str:
        """Core protocol names are case-insensitive (Gateway API ProtocolType)."""
        return self.spec.protocol.upper()


@dataclass
class GatewayState:
    obj: Gateway
    listeners: list[ListenerState]
    # Why the whole Gateway is not accepted (reason, message naming the field), or None.
    rejected: tuple[Reason, str] | None = None
    address: str = ""  # the address it is served on ("" = the proxy's listen host)
    # Why no address could be assigned (AddressNotAssigned or AddressNotUsable, message).
    unassigned: tuple[Reason, str] | None = None
    # ``--gateway-services``: status.addresses (from the Service's load balancer, or the
    # fallback), the note for Programmed when they are the fallback, and why there are
    # none (Programmed False, AddressNotAssigned: the listeners are still served).
    status_addresses: tuple[tuple[str, str], ...] = ()
    address_note: str = ""
    address_problem: tuple[Reason, str] | None = None

    @property
    def key(self) -> str:
        return nsname(self.obj.metadata.namespace, self.obj.metadata.name)


@dataclass
class Attachment:
    """One parentRef of a route, with its verdict and the listeners it attached to."""

    ref: ParentReference
    accepted: tuple[bool, Reason, str]
    listeners: list[tuple[ListenerState, tuple[str, ...]]] = field(default_factory=list)


class Graph(BackendResolver):
    """Everything the translator needs, decided once from a snapshot."""

    def __init__(self, snapshot: Snapshot, controller_name: str = DEFAULT_CONTROLLER,
                 bad_certificates: Mapping[str, str] | None = None,
                 address_pool: str | None = None, slices: SliceIndex | None = None,
                 services: ServiceMode | None = None) -> None:
        self.snapshot = snapshot
        self.reads: set[Read] | None = None  # a set: record what routes read (see Read)
        self.address_pool = address_pool
        self.service_mode = services
        # The Services to generate (``--gateway-services``), sorted by namespace/name.
        self.services: tuple[dict[str, object], ...] = ()
        # Secrets the proxy reported it could not load (key material only it parses).
        self.bad_certificates = dict(bad_certificates or {})
        self.controller_name = controller_name
        self.classes: dict[str, tuple[GatewayClass, bool]] = {}
        for gc in snapshot.of_kind(GatewayClass):
            if gc.spec.controller_name == controller_name:
                self.classes[gc.metadata.name] = (gc, True)
        # EndpointSlices by (namespace, service): resolution is then linear, not
        # backendRefs x slices.
        self._slices: SliceIndex = slice_index(snapshot) if slices is None else slices
        self.gateways: list[GatewayState] = [
            self._gateway(gw)
            for gw in sorted(snapshot.of_kind(Gateway), key=age_key)
            if gw.spec.gateway_class_name in self.classes
        ]
        self._assign_addresses()
        if services is not None:
            self._assign_services(services)
        self._cross_gateway_conflicts()
        self._gw_index = {g.key: g for g in self.gateways}

    def rebase(self, snapshot: Snapshot, slices: SliceIndex) -> Graph:
        """This graph's GatewayClass and Gateway verdicts over ``snapshot`` (and its slice
        index). Valid only when nothing those verdicts read differs between the two
        snapshots: GatewayClasses, Gateways, Secrets, ReferenceGrants (and the same
        certificate verdicts, address pool and service mode; with a service mode also the
        generated Services, ``rauta.model.incremental``). A shallow copy: ``self`` is
        unchanged."""
        new = copy.copy(self)
        new.snapshot, new._slices, new.reads = snapshot, slices, None
        return new

    def _read(self, what: Read) -> None:
        if self.reads is not None:
            self.reads.add(what)

    # ------------------------------------------------------------------ references

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        self._read(("Namespace", namespace))
        ns = self.snapshot.get("Namespace", "", namespace)
        labels = dict(ns.metadata.labels) if isinstance(ns, Namespace) else {}
        labels.setdefault("kubernetes.io/metadata.name", namespace)
        return labels

    def granted(self, from_kind: str, from_ns: str, to_group: str, to_kind: str, to_ns: str,
                to_name: str) -> bool:
        """Is a reference from ``from_ns`` to ``to_ns/to_name`` allowed by a ReferenceGrant?"""
        if from_ns == to_ns:
            return True
        self._read(("Grants", to_ns))
        from_group = GATEWAY_GROUP
        for grant in self.snapshot.of_kind(ReferenceGrant):
            if grant.metadata.namespace != to_ns:
                continue
            if not any(f.group == from_group and f.kind == from_kind and f.namespace == from_ns
                       for f in grant.spec.from_):
                continue
            if any(t.group == to_group and t.kind == to_kind and t.name in (None, "", to_name)
                   for t in grant.spec.to):
                return True
        return False

    # ------------------------------------------------------------------ gateways

    def _gateway(self, gw: Gateway) -> GatewayState:
        state = GatewayState(gw, [ListenerState(gw, lis, index=i)
                                  for i, lis in enumerate(gw.spec.listeners)])
        state.rejected = _unsupported_gateway_fields(gw, self.service_mode is not None)
        if state.rejected:
            for lis in state.listeners:
                lis.gateway_ok = False
        for lis in state.listeners:
            self._check_listener(lis)
        self._conflicts(state.listeners)
        return state

    def _check_listener(self, lis: ListenerState) -> None:
        spec = lis.spec
        if spec.protocol.upper() not in SUPPORTED_PROTOCOLS:
            lis.accepted = (False, Reason.UNSUPPORTED_PROTOCOL,
                            f"protocol {spec.protocol!r} is not supported; use HTTP or HTTPS")
            lis.supported_kinds = ()
            return
        if spec.hostname is not None and not valid_hostname(spec.hostname):
            lis.accepted = (False, Reason.UNSUPPORTED_VALUE,
                            f"hostname {spec.hostname!r} is not a valid DNS name")
        # Route kinds.
        if spec.allowed_routes.kinds:
            good = tuple(sorted({(k.group, k.kind) for k in spec.allowed_routes.kinds
                                 if (k.group, k.kind) == HTTPROUTE_KIND}))
            lis.supported_kinds = good
            bad = [k.kind for k in spec.allowed_routes.kinds if (k.group, k.kind) != HTTPROUTE_KIND]
            if bad:
                lis.resolved = (False, Reason.INVALID_ROUTE_KINDS,
                                f"route kinds not supported on {spec.protocol}: "
                                + ", ".join(sorted(bad)))
        if spec.protocol.upper() == "HTTPS":
            self._check_tls(lis)

    def _check_tls(self, lis: ListenerState) -> None:
        tls = lis.spec.tls
        if tls is None or tls.mode != "Terminate":
            lis.accepted = (False, Reason.UNSUPPORTED_VALUE,
                            "HTTPS listeners need tls.mode Terminate")
            lis.tls_ok = False
            return
        if tls.frontend_validation:
            # Serving it without the client-certificate check would pretend mTLS.
            lis.accepted = (False, Reason.UNSUPPORTED_VALUE,
                            "tls.frontendValidation is not supported: rauta does not "
                            "validate client certificates, so the listener is not served")
            lis.tls_ok = False
            return
        if not tls.certificate_refs:
            lis.resolved = (False, Reason.INVALID_CERTIFICATE_REF,
                            "HTTPS listener has no certificateRefs")
            lis.tls_ok = False
            return
        gw_ns = lis.gateway.metadata.namespace
        good: list[str] = []
        for ref in tls.certificate_refs:
            problem = self._cert_problem(ref, gw_ns)
            if problem is not None:
                lis.tls_ok = False
                if lis.resolved[0]:
                    lis.resolved = (False, problem[0], problem[1])
            else:
                good.append(nsname(ref.namespace or gw_ns, ref.name))
        lis.certificates = tuple(good)

    def _cert_problem(self, ref: SecretObjectReference, gw_ns: str) -> tuple[Reason, str] | None:
        ns = ref.namespace or gw_ns
        where = nsname(ns, ref.name)
        # RefNotPermitted comes first: InvalidCertificateRef is only for allowed references.
        if not self.granted("Gateway", gw_ns, ref.group, ref.kind, ns, ref.name):
            return (Reason.REF_NOT_PERMITTED,
                    f"certificateRef {where} is in another namespace and no ReferenceGrant "
                    "allows it")
        if ref.group != "" or ref.kind != "Secret":
            return (Reason.INVALID_CERTIFICATE_REF,
                    f"certificateRef {ref.group or 'core'}/{ref.kind} {where} is not a core "
                    "Secret")
        secret = self.snapshot.get("Secret", ns, ref.name)
        if not isinstance(secret, Secret):
            return (Reason.INVALID_CERTIFICATE_REF, f"Secret {where} does not exist")
        if secret.type != "kubernetes.io/tls" or not {"tls.crt", "tls.key"} <= set(
                secret.data_keys):
            return (Reason.INVALID_CERTIFICATE_REF,
                    f"Secret {where} is not a kubernetes.io/tls Secret with tls.crt and tls.key")
        if secret.tls_problem:
            return (Reason.INVALID_CERTIFICATE_REF,
                    f"Secret {where} is malformed: {secret.tls_problem}")
        if where in self.bad_certificates:
            return (Reason.INVALID_CERTIFICATE_REF,
                    f"Secret {where} is malformed: {self.bad_certificates[where]}")
        return None

    @staticmethod
    def _conflicts(listeners: Iterable[ListenerState]) -> None:
        """Within one Gateway: listeners sharing a port clash on protocol or hostname. No
        listener of a clashing group wins; each one's note names the others."""
        by_port: dict[int, list[ListenerState]] = {}
        for lis in listeners:
            if lis.accepted[0]:
                by_port.setdefault(lis.spec.port, []).append(lis)
        for port, group in sorted(by_port.items()):
            if len({lis.protocol for lis in group}) > 1:
                for lis in group:
                    lis.conflicted = Reason.PROTOCOL_CONFLICT
                    others = ", ".join(f"{o.spec.name!r} ({o.protocol})" for o in group
                                       if o is not lis)
                    lis.conflict_note = (f"port {port} is also used by listener{_s(group)} "
                                         f"{others} of this Gateway with another protocol; "
                                         "none of them is served")
                continue
            by_host: dict[str, list[ListenerState]] = {}
            for lis in group:
                by_host.setdefault(lis.hostname, []).append(lis)
            for host, same in by_host.items():
                if len(same) < 2:
                    continue
                for lis in same:
                    lis.conflicted = Reason.HOSTNAME_CONFLICT
                    others = ", ".join(repr(o.spec.name) for o in same if o is not lis)
                    lis.conflict_note = (f"port {port} with hostname {host or '*'!r} is also "
                                         f"used by listener{_s(same)} {others} of this "
                                         "Gateway; none of them is served")

    def _assign_addresses(self) -> None:
        """Give every accepted Gateway its address (``addresses.allocate``)."""
        allocs = allocate([g.obj for g in self.gateways if not g.rejected], self.address_pool)
        for gw in self.gateways:
            alloc = allocs.get(gw.key)
            if alloc is None:
                continue
            gw.address = alloc.address
            if alloc.problem is not None and alloc.problem[0] == Reason.UNSUPPORTED_ADDRESS:
                gw.rejected = alloc.problem
            elif alloc.problem is not None:
                gw.unassigned = alloc.problem
            for lis in gw.listeners:
                lis.address = gw.address
                lis.gateway_ok = lis.gateway_ok and gw.rejected is None
                lis.address_ok = gw.unassigned is None

    def _assign_services(self, mode: ServiceMode) -> None:
        """``--gateway-services`` (``services.plan_gateways``): internal ports, desired
        Services, status.addresses. With an address pool as well, the pool decides what
        status.addresses say and listeners bind on (pool address, listener port) and on
        (listen host, internal port), so the generated Services' targetPorts are served
        too (``ListenerState.service_port``)."""
        ours = [g for g in self.gateways if not g.rejected and g.unassigned is None]
        plans = plan_gateways([g.obj for g in ours], self.snapshot.of_kind(Service), mode,
                              self.controller_name)
        for gw in ours:
            plan = plans[gw.key]
            ports = plan.allocation.as_dict()
            if plan.allocation.problem is not None:
                gw.unassigned = plan.allocation.problem
                for lis in gw.listeners:
                    lis.address_ok = False
            elif self.address_pool is not None:
                for lis in gw.listeners:
                    lis.service_port = ports.get(lis.spec.port)
            else:
                for lis in gw.listeners:
                    lis.bind_port = ports.get(lis.spec.port)
                gw.status_addresses, gw.address_problem = plan.addresses, plan.address_problem
                gw.address_note = plan.note
        self.services = tuple(p.service for _, p in sorted(plans.items())
                              if p.service is not None)

    def _cross_gateway_conflicts(self) -> None:
        """Across Gateways sharing an address (oldest first): the first to take a port or
        hostname on that address keeps it. Gateways left without an address under a pool
        serve nothing and take part in no conflict."""
        owner: dict[tuple[str, int], ListenerState] = {}
        claimed: dict[tuple[str, int, str], ListenerState] = {}
        for gw in self.gateways:
            if self.address_pool is not None and not gw.address:
                continue
            for lis in gw.listeners:
                if not lis.accepted[0] or lis.conflicted is not None:
                    continue
                first = owner.setdefault((gw.address, lis.listen_port), lis)
                where = f"port {lis.spec.port}" + (f" on {gw.address}" if gw.address else "")
                if lis.protocol != first.protocol:
                    lis.accepted = (False, Reason.PORT_UNAVAILABLE,
                                    f"{where} is already served as {first.protocol} by "
                                    f"{_who(first)}, which is older and keeps it")
                    continue
                holder = claimed.setdefault((gw.address, lis.listen_port, lis.hostname), lis)
                if holder.gateway is not lis.gateway:
                    lis.conflicted = Reason.HOSTNAME_CONFLICT
                    lis.conflict_note = (f"{where} with hostname {lis.hostname or '*'!r} is "
                                         f"already served by {_who(holder)}, which is "
                                         "older and keeps it; this listener is not served")

    # ------------------------------------------------------------------ routes

    def attach(self, route: HTTPRoute) -> list[Attachment]:
        """Attach a route to our Gateways' listeners; one Attachment per parentRef of ours."""
        out: list[Attachment] = []
        route_ns = route.metadata.namespace
        for ref in route.spec.parent_refs:
            if (ref.group, ref.kind) != (GATEWAY_GROUP, "Gateway"):
                continue  # another kind of parent: not ours to judge
            self._read(("Gateway", ref.namespace or route_ns, ref.name))
            gw = self._gw_index.get(nsname(ref.namespace or route_ns, ref.name))
            if gw is None:
                continue  # not one of our Gateways: no status from us
            out.append(self._attach_one(route, ref, gw))
        return out

    def _attach_one(self, route: HTTPRoute, ref: ParentReference, gw: GatewayState) -> Attachment:
        candidates = [lis for lis in gw.listeners
                      if (ref.section_name is None or lis.spec.name == ref.section_name)
                      and (ref.port is None or lis.spec.port == ref.port)]
        if not candidates:
            what = []
            if ref.section_name is not None:
                what.append(f"sectionName {ref.section_name!r}")
            if ref.port is not None:
                what.append(f"port {ref.port}")
            return Attachment(ref, (False, Reason.NO_MATCHING_PARENT,
                                    f"Gateway {gw.key} has no listener with "
                                    + " and ".join(what)))
        if gw.rejected:
            return Attachment(ref, (False, Reason.NO_MATCHING_PARENT,
                                    f"Gateway {gw.key} is not accepted: {gw.rejected[1]}"))
        # Attachment depends only on parentRefs and allowedRoutes (ListenerStatus
        # AttachedRoutes): a conflicted or unresolved listener still counts the route, but
        # only valid listeners are programmed.
        allowed = [lis for lis in candidates if self._allows(lis, route)]
        if not allowed:
            return Attachment(ref, (False, Reason.NOT_ALLOWED_BY_LISTENERS,
                                    "the route's namespace or kind is not allowed by the "
                                    f"listeners of Gateway {gw.key}"))
        att = Attachment(ref, (True, Reason.ACCEPTED, "the route is accepted"))
        for lis in allowed:
            names = hostnames.effective(lis.hostname, route.spec.hostnames)
            if names:
                att.listeners.append((lis, names))
        if not att.listeners:
            att.accepted = (False, Reason.NO_MATCHING_LISTENER_HOSTNAME,
                            "no hostname of the route intersects a listener hostname of "
                            f"Gateway {gw.key}")
        return att

    def _allows(self, lis: ListenerState, route: HTTPRoute) -> bool:
        if HTTPROUTE_KIND not in lis.supported_kinds:
            return False
        ns = lis.spec.allowed_routes.namespaces
        route_ns, gw_ns = route.metadata.namespace, lis.gateway.metadata.namespace
        if ns.from_ == "All":
            return True
        if ns.from_ == "Same":
            return route_ns == gw_ns
        return ns.selector is not None and ns.selector.matches(self.namespace_labels(route_ns))
