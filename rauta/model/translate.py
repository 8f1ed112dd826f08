"""The translator: snapshot → graph → RouterConfig + Gateway API statuses.

Role: the reference entry point of the pure model, ``translate(snapshot, ...)``.
``rauta translate``, the golden tests and the stateful tests call exactly this; the
reconciler calls ``rauta.model.incremental``, which must give the same result and shares
the per-route work (``route_output``) and the assembly (``assemble``) defined here.

Rules:
- Pure: the result depends only on the arguments. ``applied`` (what the proxy really
  programmed) is a parameter; ``None`` means "as desired" (what-if mode, used by the CLI and
  the golden files), so Programmed says what *would* hold once applied.
- Rules are ordered by ``precedence_key``, the HTTPRoute spec's precedence:
  hostname (non-wildcard characters, then all characters), Exact path, then
  RegularExpression paths (longer pattern first: rauta's documented choice), then longer
  PathPrefix, method match, more header matches, more query matches, older route
  (creationTimestamp), namespace/name, rule index, match index.
- Only matches decide whether a rule is programmed. A rule whose matches cannot compile
  (a pattern RE2 rejects, a path that is not a valid absolute path) can catch nothing and
  is left out. Every other rule is programmed in its normal precedence place, even when
  it is the route's only rule: one with a value rauta cannot honour (unknown filter type,
  ExtensionRef, a filter without its field, a repeated filter, RequestRedirect with
  URLRewrite, ReplacePrefixMatch without a PathPrefix match, an unsupported backendRef
  filter, a bad mirror fraction, header or URL values, an invalid or inconsistent timeout)
  becomes a ``Rule`` with ``invalid`` set, no filters and no backends, which answers 500:
  the spec says such a filter MUST NOT be skipped and the requests it would have handled
  MUST get an error, so they must never fall through to another (catch-all) rule.
- Route status: some rules invalid -> Accepted=True plus PartiallyInvalid=True; every rule
  invalid -> Accepted=False (no PartiallyInvalid, the spec's "fully invalid"); both with
  reason UnsupportedValue and a message naming each rule and whether it answers 500 or
  was dropped. A route attached to a listener counts in ``attachedRoutes`` whatever its
  Accepted condition (spec ListenerStatus.AttachedRoutes).
- Regular expressions are checked with RE2 (``routing.regex_error``), the engine the
  router matches with, so a pattern is valid here exactly when it can be matched there.
- Addresses (``rauta.model.addresses``, only with ``address_pool``): one PortConfig per
  (address, port), sorted by (address, port), holding only the listeners of the
  Gateways on that address; each Gateway's status lists its own address. A Gateway
  without one (AddressNotAssigned) keeps its Accepted condition and gets Programmed=False
  with that reason; its listeners get Programmed=False, reason Pending (not online),
  and nothing of it is programmed. Without a pool everything is on address "" and
  statuses carry no address (the sink adds its own, if any).
- ``gateway_services``: listeners on ("", internal port) with ``public_port`` (under a
  pool as well as on the pool address); ``Translation.services``; see ``graph``.
- Unresolvable backendRefs stay in the config as ``invalid`` backends that answer 500 for
  their weight's share; ResolvedRefs=False names the first problem.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from rauta.model import config as cfg
from rauta.model import hostnames
from rauta.model.backends import ResolvedBackend, nsname
from rauta.model.conditions import Condition, CondType, Reason, cond
from rauta.model.features import supported as _supported_features
from rauta.model.graph import DEFAULT_CONTROLLER, Attachment, GatewayState, Graph, ListenerState
from rauta.model.hostnames import valid_hostname
from rauta.model.paths import normalize_path
from rauta.model.resources import (
    HTTPHeaderFilter,
    HTTPPathModifier,
    HTTPRoute,
    HTTPRouteFilter,
    HTTPRouteMatch,
    HTTPRouteRule,
)
from rauta.model.routing import regex_error
from rauta.model.services import ServiceMode
from rauta.model.snapshot import Snapshot
from rauta.model.status import (
    Applied,
    GatewayClassStatus,
    GatewayStatus,
    ListenerStatus,
    RouteParentStatus,
    RouteStatus,
    Statuses,
)

_DURATION = re.compile(r"^(?:[0-9]{1,5}(?:h|ms|m|s)){1,4}$")
_DURATION_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_UNIT_MS = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}
_PATH_RANK = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}


@dataclass(frozen=True)
class Translation:
    config: cfg.RouterConfig
    statuses: Statuses
    # ``--gateway-services``: the Services to generate, by namespace/name (else empty).
    services: tuple[dict[str, object], ...] = ()


class RuleError(Exception):
    """A rule that cannot be programmed (UnsupportedValue)."""


# GatewayClass status.supportedFeatures (GEP-2162), by (address pool?, services mode?).
SUPPORTED_FEATURES = {(pool, svc): tuple(sorted(f.name for f in _supported_features(
    pool, services=svc))) for pool in (True, False) for svc in (True, False)}


def parse_duration_ms(text: str) -> int:
    """Gateway API Duration (``1h2m3s``, ``500ms``) in milliseconds; ``0s`` means none."""
    if not _DURATION.match(text):
        raise RuleError(f"invalid duration {text!r}")
    return sum(int(n) * _UNIT_MS[u] for n, u in _DURATION_PART.findall(text))


def _check_regex(pattern: str, what: str) -> None:
    why = regex_error(pattern)
    if why is not None:
        raise RuleError(f"invalid regular expression in {what} {pattern!r} "
                        f"(RE2 syntax): {why}")


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # CTLs except HTAB
# Headers that frame the message or the connection: a filter that sets them could split
# one request into two on the way to the backend (request smuggling).
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "upgrade",
                             "te", "trailer", "keep-alive", "proxy-connection", "host"})


def _check_header(name: str, value: str | None, what: str) -> None:
    if not _TOKEN.match(name):
        raise RuleError(f"{what}: header name {name!r} is not a valid HTTP token")
    if name.lower() in FRAMING_HEADERS:
        raise RuleError(f"{what}: header {name} cannot be modified by a filter")
    if value is not None and _CONTROL.search(value):
        raise RuleError(f"{what}: header {name} value contains control characters")


def _check_text(value: str, what: str, *, path: bool = False) -> str:
    """Reject CR/LF and other control characters (response splitting) in URL parts."""
    if _CONTROL.search(value) or "\t" in value or (path and not value.startswith("/")):
        raise RuleError(f"{what} {value!r} is not a valid "
                        + ("absolute path" if path else "value"))
    return value


def _header_mod(f: HTTPHeaderFilter | None, what: str) -> cfg.HeaderModifier:
    if f is None:
        raise RuleError(f"filter {what} has no {what[0].lower() + what[1:]} field")
    for h in (*f.set, *f.add):
        _check_header(h.name, h.value, what)
    for name in f.remove:
        _check_header(name, None, what)
    return cfg.HeaderModifier(
        set=tuple(cfg.Header(name=h.name, value=h.value) for h in f.set),
        add=tuple(cfg.Header(name=h.name, value=h.value) for h in f.add),
        remove=tuple(f.remove),
    )


def _path_mod(p: HTTPPathModifier | None, matches: tuple[HTTPRouteMatch, ...]
              ) -> cfg.PathModifier | None:
    if p is None:
        return None
    if p.type == "ReplaceFullPath":
        if p.replace_full_path is None:
            raise RuleError("ReplaceFullPath needs replaceFullPath")
        return cfg.PathModifier(type="ReplaceFullPath",
                                value=_check_text(p.replace_full_path, "replaceFullPath",
                                                  path=True))
    if p.replace_prefix_match is None:
        raise RuleError("ReplacePrefixMatch needs replacePrefixMatch")
    if any(m.path.type != "PathPrefix" for m in matches):
        raise RuleError("ReplacePrefixMatch is only allowed with PathPrefix matches")
    return cfg.PathModifier(type="ReplacePrefixMatch",
                            value=_check_text(p.replace_prefix_match, "replacePrefixMatch",
                                              path=True))


@functools.lru_cache(maxsize=65536)
def _match(m: HTTPRouteMatch) -> cfg.Match:
    """Compile one match (memoised: pure, and most matches survive from one translate to
    the next; an invalid match raises and is never cached)."""
    path = m.path
    value = path.value
    if path.type == "RegularExpression":
        _check_regex(path.value, "path")
    else:
        # Route paths take the same normal form as request paths (rauta.model.paths).
        normal = normalize_path(path.value)
        if normal is None:
            raise RuleError(f"path {path.value!r} is not a valid absolute path")
        value = normal.rstrip("/") or "/" if path.type == "PathPrefix" else normal
    headers: dict[str, cfg.HeaderMatch] = {}
    for h in m.headers:
        if h.type == "RegularExpression":
            _check_regex(h.value, f"header {h.name}")
        headers.setdefault(h.name.lower(), cfg.HeaderMatch(type=h.type, name=h.name.lower(),
                                                           value=h.value))
    query: dict[str, cfg.QueryMatch] = {}
    for q in m.query_params:
        if q.type == "RegularExpression":
            _check_regex(q.value, f"query parameter {q.name}")
        query.setdefault(q.name, cfg.QueryMatch(type=q.type, name=q.name, value=q.value))
    return cfg.Match(path=cfg.PathMatch(type=path.type, value=value), method=m.method,
                     headers=tuple(headers.values()), query=tuple(query.values()))


class _RouteCompiler:
    """Compiles one HTTPRoute's rules and collects its ResolvedRefs problems."""

    def __init__(self, graph: Graph, route: HTTPRoute) -> None:
        self.graph, self.route = graph, route
        self.ns = route.metadata.namespace
        self.ref_problems: list[tuple[Reason, str]] = []
        self.rule_errors: list[str] = []
        self.rules: list[tuple[int, HTTPRouteRule, tuple[cfg.Match, ...], cfg.Filters,
                               tuple[cfg.Backend, ...], cfg.Timeouts, str | None]] = []
        self.valid_rules = 0
        for idx, rule in enumerate(route.spec.rules):
            try:
                matches = tuple(_match(m) for m in rule.matches) or (_match(HTTPRouteMatch()),)
            except RuleError as exc:  # no usable match: the rule cannot catch anything
                self.rule_errors.append(f"rule {rule.name or idx}: {exc} (dropped)")
                continue
            try:
                self.rules.append((idx, rule, matches, *self._rule(rule), None))
                self.valid_rules += 1
            except RuleError as exc:
                # The spec forbids skipping a filter: requests this rule would have taken
                # get an error (500) instead of falling through to another rule.
                why = f"rule {rule.name or idx}: {exc}"
                self.rule_errors.append(f"{why} (answers 500)")
                self.rules.append((idx, rule, matches, cfg.Filters(), (), cfg.Timeouts(), why))

    def _backend(self, rb: ResolvedBackend, req: cfg.HeaderModifier | None = None,
                 resp: cfg.HeaderModifier | None = None) -> cfg.Backend:
        if rb.invalid is not None:
            self.ref_problems.append(rb.invalid)
        return cfg.Backend(name=rb.name, weight=rb.weight,
                           invalid=rb.invalid[1] if rb.invalid else None,
                           app_protocol=rb.app_protocol, endpoints=rb.endpoints,
                           request_headers=req, response_headers=resp)

    def _filters(self, filters: tuple[HTTPRouteFilter, ...],
                 matches: tuple[HTTPRouteMatch, ...], *, backend_level: bool) -> cfg.Filters:
        seen: set[str] = set()
        out: dict[str, Any] = {}
        mirrors: list[cfg.Mirror] = []
        for f in filters:
            if f.type != "RequestMirror" and f.type in seen:
                raise RuleError(f"filter {f.type} appears more than once")
            seen.add(f.type)
            if backend_level and f.type not in ("RequestHeaderModifier",
                                                "ResponseHeaderModifier"):
                raise RuleError(f"filter {f.type} is not supported on a backendRef")
            if f.type == "RequestHeaderModifier":
                out["request_headers"] = _header_mod(f.request_header_modifier, f.type)
            elif f.type == "ResponseHeaderModifier":
                out["response_headers"] = _header_mod(f.response_header_modifier, f.type)
            elif f.type == "RequestRedirect":
                r = f.request_redirect
                if r is None:
                    raise RuleError("filter RequestRedirect has no requestRedirect field")
                if r.hostname is not None and not valid_hostname(r.hostname, wildcard=False):
                    raise RuleError(f"redirect hostname {r.hostname!r} is not a DNS name")
                out["redirect"] = cfg.Redirect(scheme=r.scheme, hostname=r.hostname,
                                               port=r.port, path=_path_mod(r.path, matches),
                                               status_code=r.status_code)
            elif f.type == "URLRewrite":
                w = f.url_rewrite
                if w is None:
                    raise RuleError("filter URLRewrite has no urlRewrite field")
                if w.hostname is not None and not valid_hostname(w.hostname, wildcard=False):
                    raise RuleError(f"rewrite hostname {w.hostname!r} is not a DNS name")
                out["rewrite"] = cfg.Rewrite(hostname=w.hostname, path=_path_mod(w.path, matches))
            elif f.type == "RequestMirror":
                mir = f.request_mirror
                if mir is None:
                    raise RuleError("filter RequestMirror has no requestMirror field")
                rb = self.graph.resolve_backend(mir.backend_ref, self.ns, 1)
                backend = self._backend(rb)
                if backend.invalid is None:
                    num, den = (mir.percent, 100) if mir.percent is not None else (
                        (mir.fraction.numerator, mir.fraction.denominator) if mir.fraction
                        else (100, 100))
                    if num > den:
                        raise RuleError("mirror fraction is greater than 1")
                    mirrors.append(cfg.Mirror(backend=backend, numerator=num, denominator=den))
            else:
                raise RuleError(f"filter type {f.type!r} is not supported")
        if "redirect" in out and "rewrite" in out:
            raise RuleError("RequestRedirect and URLRewrite cannot be used together")
        return cfg.Filters(mirrors=tuple(mirrors), **out)

    def _rule(self, rule: HTTPRouteRule) -> tuple[cfg.Filters, tuple[cfg.Backend, ...],
                                                  cfg.Timeouts]:
        filters = self._filters(rule.filters, rule.matches, backend_level=False)
        timeouts = cfg.Timeouts()
        if rule.timeouts is not None:
            req = parse_duration_ms(rule.timeouts.request) if rule.timeouts.request else 0
            back = (parse_duration_ms(rule.timeouts.backend_request)
                    if rule.timeouts.backend_request else 0)
            if req and back and back > req:
                raise RuleError("timeouts.backendRequest must not exceed timeouts.request")
            timeouts = cfg.Timeouts(request_ms=req or None, backend_request_ms=back or None)
        backends: list[cfg.Backend] = []
        for ref in rule.backend_refs:
            bf = self._filters(ref.filters, rule.matches, backend_level=True)
            rb = self.graph.resolve_backend(ref, self.ns, ref.weight)
            backends.append(self._backend(rb, bf.request_headers, bf.response_headers))
        return filters, tuple(backends), timeouts

    def compiled(self, hostname: str) -> list[cfg.Rule]:
        name = nsname(self.ns, self.route.metadata.name)
        return [
            cfg.Rule(route=name, rule_index=idx, rule_name=rule.name, match_index=mi,
                     hostname=hostname, match=match, filters=filters, backends=backends,
                     timeouts=timeouts, invalid=invalid)
            for idx, rule, matches, filters, backends, timeouts, invalid in self.rules
            for mi, match in enumerate(matches)
        ]


def precedence_key(rule: cfg.Rule, created: str) -> tuple[Any, ...]:
    """Sort key of a rule within a listener: smaller sorts first and wins."""
    host_exact, host_len = hostnames.specificity(rule.hostname)
    m = rule.match
    # Ties go to the route first in alphabetical order by "{namespace}/{name}" as one string.
    return (-host_exact, -host_len, _PATH_RANK[m.path.type], -len(m.path.value),
            0 if m.method else 1, -len(m.headers), -len(m.query), created, rule.route,
            rule.rule_index, rule.match_index)


def _parent_ref(att: Attachment, route_ns: str) -> tuple[tuple[str, str | int], ...]:
    ref = att.ref
    items: list[tuple[str, str | int]] = [("group", ref.group), ("kind", ref.kind),
                                          ("namespace", ref.namespace or route_ns),
                                          ("name", ref.name)]
    if ref.section_name is not None:
        items.append(("sectionName", ref.section_name))
    if ref.port is not None:
        items.append(("port", ref.port))
    return tuple(items)


def _programmed(valid: bool, port: int, applied: Applied | None,
                address: str = "") -> Condition:
    if not valid:
        return cond(CondType.PROGRAMMED, False, Reason.INVALID, "the listener is not valid")
    if applied is None or applied.bound(port, address):
        return cond(CondType.PROGRAMMED, True, Reason.PROGRAMMED, "")
    why = applied.failure(port, address)
    if why is not None:
        return cond(CondType.PROGRAMMED, False, Reason.INVALID, why)
    return Condition(type=CondType.PROGRAMMED, status="Unknown", reason=Reason.PENDING,
                     message="waiting for the proxy to apply the configuration")


def _listener_status(lis: ListenerState, applied: Applied | None,
                     unassigned: tuple[Reason, str] | None, attached: int) -> ListenerStatus:
    ok, reason, msg = lis.accepted
    if lis.valid and unassigned is not None:
        programmed = cond(CondType.PROGRAMMED, False, Reason.PENDING,
                          f"the Gateway has no address: {unassigned[1]}")
    else:
        programmed = _programmed(lis.valid, lis.listen_port, applied, lis.address)
    conds = [cond(CondType.ACCEPTED, ok, reason, msg), programmed]
    rok, rreason, rmsg = lis.resolved
    conds.append(cond(CondType.RESOLVED_REFS, rok, rreason, rmsg))
    if lis.conflicted is not None:
        conds.append(cond(CondType.CONFLICTED, True, lis.conflicted, lis.conflict_note))
    else:
        conds.append(cond(CondType.CONFLICTED, False, Reason.NO_CONFLICTS))
    return ListenerStatus(name=lis.spec.name, supported_kinds=lis.supported_kinds,
                          attached_routes=attached, conditions=tuple(conds))


def _gateway_status(gw: GatewayState, applied: Applied | None,
                    attached: dict[ListenerId, int]) -> GatewayStatus:
    listeners = tuple(_listener_status(lis, applied, gw.unassigned, attached.get(lis.lid, 0))
                      for lis in gw.listeners)
    valid = [lis.valid for lis in gw.listeners]
    if gw.rejected:
        accepted = cond(CondType.ACCEPTED, False, *gw.rejected)
    elif not any(valid):
        accepted = cond(CondType.ACCEPTED, False, Reason.LISTENERS_NOT_VALID,
                        "no listener is valid")
    elif not all(valid):
        accepted = cond(CondType.ACCEPTED, True, Reason.LISTENERS_NOT_VALID,
                        "some listeners are not valid")
    else:
        accepted = cond(CondType.ACCEPTED, True, Reason.ACCEPTED, "")
    lis_prog = [c for ls in listeners for c in ls.conditions if c.type == CondType.PROGRAMMED]
    if accepted.status != "True":
        programmed = cond(CondType.PROGRAMMED, False, Reason.INVALID, "the Gateway is not accepted")
    elif gw.unassigned is not None:
        programmed = cond(CondType.PROGRAMMED, False, *gw.unassigned)
    elif gw.address_problem is not None:
        programmed = cond(CondType.PROGRAMMED, False, *gw.address_problem)
    elif any(c.status == "True" for c in lis_prog):
        programmed = cond(CondType.PROGRAMMED, True, Reason.PROGRAMMED, gw.address_note)
    elif any(c.reason == Reason.PENDING for c in lis_prog):
        programmed = Condition(type=CondType.PROGRAMMED, status="Unknown", reason=Reason.PENDING,
                               message="waiting for the proxy to apply the configuration")
    else:
        programmed = cond(CondType.PROGRAMMED, False, Reason.INVALID, "no listener is programmed")
    return GatewayStatus(namespace=gw.obj.metadata.namespace, name=gw.obj.metadata.name,
                         generation=gw.obj.metadata.generation, uid=gw.obj.metadata.uid,
                         addresses=gw.status_addresses or (
                             (("IPAddress", gw.address),) if gw.address else ()),
                         conditions=(accepted, programmed), listeners=listeners)


def _route_conditions(att: Attachment, rc: _RouteCompiler) -> tuple[Condition, ...]:
    ok, reason, msg = att.accepted
    if ok and not rc.valid_rules:
        ok, reason, msg = (False, Reason.UNSUPPORTED_VALUE,
                           "All rules are invalid: " + "; ".join(rc.rule_errors))
    conds = [cond(CondType.ACCEPTED, ok, reason, msg)]
    if rc.ref_problems:
        first = rc.ref_problems[0][0]
        text = "; ".join(dict.fromkeys(m for _, m in rc.ref_problems))
        conds.append(cond(CondType.RESOLVED_REFS, False, first, text))
    else:
        conds.append(cond(CondType.RESOLVED_REFS, True, Reason.RESOLVED_REFS, ""))
    if ok and rc.rule_errors:
        # Spec (RouteConditionPartiallyInvalid): the message starts with "Dropped Rule".
        conds.append(cond(CondType.PARTIALLY_INVALID, True, Reason.UNSUPPORTED_VALUE,
                          "Dropped Rule(s): " + "; ".join(rc.rule_errors)))
    return tuple(conds)


ListenerId = tuple[str, int]  # ("ns/gateway", listener index): ListenerState.lid
# A rule's place in its listener: precedence_key, then its position among the route's
# rules for that listener (ties keep the order the route produced them in).
SortKey = tuple[Any, ...]


@dataclass(frozen=True)
class RouteOutput:
    """What one HTTPRoute contributes: its status (None when no parentRef is one of our
    Gateways), its rules per listener (de-duplicated, each with its SortKey) and the
    listeners it counts in ``attachedRoutes``."""

    status: RouteStatus | None
    rules: tuple[tuple[ListenerId, tuple[tuple[SortKey, cfg.Rule], ...]], ...] = ()
    attached: tuple[ListenerId, ...] = ()


NOTHING = RouteOutput(None)


def route_output(graph: Graph, route: HTTPRoute) -> RouteOutput:
    """Attach and compile one route (reads only the graph and the route)."""
    atts = graph.attach(route)
    if not atts:
        return NOTHING
    rc = _RouteCompiler(graph, route)
    created = route.metadata.creation_timestamp
    per_listener: dict[ListenerId, dict[cfg.Rule, SortKey]] = {}
    parents: list[RouteParentStatus] = []
    for att in atts:
        if att.accepted[0]:
            # Rules with invalid filters are programmed too (they answer 500), also
            # when no rule of the route is valid: never a fall-through (module doc).
            for lis, names in att.listeners:
                bucket = per_listener.setdefault(lis.lid, {})
                for host in names:
                    for rule in rc.compiled(host):
                        if rule not in bucket:
                            bucket[rule] = (*precedence_key(rule, created), len(bucket))
        parents.append(RouteParentStatus(parent_ref=_parent_ref(att, route.metadata.namespace),
                                         controller_name=graph.controller_name,
                                         conditions=_route_conditions(att, rc)))
    status = RouteStatus(namespace=route.metadata.namespace, name=route.metadata.name,
                         generation=route.metadata.generation, uid=route.metadata.uid,
                         parents=tuple(parents))
    return RouteOutput(status,
                       tuple(sorted((lid, tuple((k, r) for r, k in b.items()))
                                    for lid, b in per_listener.items())),
                       tuple(sorted(per_listener)))


def sorted_rules(entries: list[tuple[SortKey, cfg.Rule]]) -> tuple[cfg.Rule, ...]:
    """A listener's rules in precedence order (SortKeys are unique: rules never compare)."""
    entries.sort(key=lambda e: e[0])
    return tuple(r for _, r in entries)


def assemble(graph: Graph, rules: dict[ListenerId, tuple[cfg.Rule, ...]],
             attached: dict[ListenerId, int], routes: tuple[RouteStatus, ...],
             applied: Applied | None, previous: cfg.RouterConfig | None = None
             ) -> Translation:
    """The Translation from the graph's listeners, each listener's rules in precedence
    order, its attachedRoutes count and the route statuses (sorted by namespace/name).

    Parts of ``previous`` that come out equal are reused by identity (a listener whose
    rules tuple is the same object, a port whose listeners all are), so that comparing
    the result with ``previous`` costs only what changed."""
    reuse_lr: dict[tuple[str, str, str, int], cfg.ListenerRoutes] = {}
    reuse_pc: dict[tuple[str, int], cfg.PortConfig] = {}
    for pc in previous.ports if previous is not None else ():
        reuse_pc[(pc.address, pc.port)] = pc
        for lr in pc.listeners:
            reuse_lr[(lr.gateway, lr.listener, lr.hostname, id(lr.rules))] = lr
    ports: dict[tuple[str, int], list[ListenerState]] = {}
    public: dict[tuple[str, int], int] = {}  # (address, internal port) -> listener port
    for gw in graph.gateways:
        for lis in gw.listeners:
            if lis.served:
                ports.setdefault((lis.address, lis.listen_port), []).append(lis)
                if lis.bind_port is not None:
                    public[(lis.address, lis.listen_port)] = lis.spec.port
                if lis.service_port is not None:  # pool + services: the Service's port too
                    ports.setdefault(("", lis.service_port), []).append(lis)
                    public[("", lis.service_port)] = lis.spec.port
    port_configs: list[cfg.PortConfig] = []
    for address, port in sorted(ports):
        group = sorted(ports[(address, port)], key=lambda lis: (
            tuple(-x for x in hostnames.specificity(lis.hostname)), lis.hostname))
        listeners = []
        for lis in group:
            meta = lis.gateway.metadata
            lis_rules = rules.get(lis.lid, ())
            gateway = nsname(meta.namespace, meta.name)
            same = reuse_lr.get((gateway, lis.spec.name, lis.hostname, id(lis_rules)))
            # model_construct: every part is already a validated model, and the rules
            # tuple must stay the very object passed in (validation would copy it).
            listeners.append(same if same is not None and same.rules is lis_rules else
                             cfg.ListenerRoutes.model_construct(
                                 gateway=gateway, listener=lis.spec.name,
                                 hostname=lis.hostname, rules=lis_rules))
        protocol = "HTTPS" if group[0].protocol == "HTTPS" else "HTTP"
        certs = tuple(cfg.TLSCertificate(hostname=lis.hostname, secrets=lis.certificates)
                      for lis in group if protocol == "HTTPS")
        old = reuse_pc.get((address, port))
        pub = public.get((address, port))
        if (old is None or old.protocol != protocol or old.certificates != certs
                or old.public_port != pub
                or len(old.listeners) != len(listeners)
                or any(a is not b for a, b in zip(old.listeners, listeners, strict=True))):
            old = cfg.PortConfig(address=address, port=port, protocol=protocol,
                                 listeners=tuple(listeners), certificates=certs,
                                 public_port=pub)
        port_configs.append(old)
    if previous is not None and len(previous.ports) == len(port_configs) and all(
            a is b for a, b in zip(previous.ports, port_configs, strict=True)):
        config = previous
    else:
        config = cfg.RouterConfig(ports=tuple(port_configs))

    mode = (graph.address_pool is not None, graph.service_mode is not None)
    classes = tuple(
        GatewayClassStatus(name=name, generation=gc.metadata.generation, uid=gc.metadata.uid,
                           supported_features=SUPPORTED_FEATURES[mode],
                           conditions=(
            cond(CondType.ACCEPTED, True, Reason.ACCEPTED, ""),
            cond(CondType.SUPPORTED_VERSION, True, Reason.SUPPORTED_VERSION,
                 "rauta supports Gateway API v1 (standard channel)")))
        for name, (gc, _) in sorted(graph.classes.items()))
    gateways = tuple(sorted((_gateway_status(gw, applied, attached) for gw in graph.gateways),
                            key=lambda s: (s.namespace, s.name)))
    return Translation(config, Statuses.model_construct(gateway_classes=classes,
                                                        gateways=gateways, routes=routes),
                       graph.services)


def translate(snapshot: Snapshot, *, controller_name: str = DEFAULT_CONTROLLER,
              applied: Applied | None = None, address_pool: str | None = None,
              gateway_services: ServiceMode | None = None) -> Translation:
    """Compute the RouterConfig and every status rauta owns for ``snapshot``.

    ``address_pool`` (a CIDR) gives each Gateway its own address; ``None`` serves every
    Gateway on the proxy's listen host. ``ValueError`` when it is not a CIDR.
    ``gateway_services`` turns on the per-Gateway Services (``Translation.services``).
    """
    graph = Graph(snapshot, controller_name,
                  dict(applied.invalid_certificates) if applied is not None else None,
                  address_pool, services=gateway_services)
    entries: dict[ListenerId, list[tuple[SortKey, cfg.Rule]]] = {}
    attached: dict[ListenerId, int] = {}
    statuses: list[RouteStatus] = []
    for route in snapshot.of_kind(HTTPRoute):  # key order: statuses by namespace/name
        out = route_output(graph, route)
        if out.status is None:
            continue
        statuses.append(out.status)
        for lid, items in out.rules:
            entries.setdefault(lid, []).extend(items)
        for lid in out.attached:
            attached[lid] = attached.get(lid, 0) + 1
    rules = {lid: sorted_rules(items) for lid, items in entries.items()}
    return assemble(graph, rules, attached, tuple(statuses), applied)
