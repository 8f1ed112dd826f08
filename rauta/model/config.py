"""RouterConfig: the compiled, proxy-ready routing table the translator produces.

Role: the contract between the pure model and the data plane. The proxy, the reconciler's
diff, the golden files and ``rauta translate`` all see exactly this structure.

Rules:
- Frozen pydantic models made only of tuples, strings, ints and nested frozen models, so a
  config is hashable, comparable with ``==`` and serialises to the same bytes every time.
- Every tuple is already in its final order; the translator sorts, consumers never re-sort.
- ``RouterConfig.ports`` is keyed and sorted by ``(address, port)``; ``address`` "" is the
  proxy's own listen host.
- ``PortConfig.listeners`` is ordered most specific hostname first (exact, then longer
  wildcard, then catch-all); a request is handled by the first listener whose hostname
  fits its Host (listener isolation), then by the first rule of that listener that matches.
- ``ListenerRoutes.rules`` is ordered by HTTPRoute precedence (see ``precedence_key`` in
  ``rauta.model.translate``); the first matching rule wins.
- Regular expressions are kept as their source text; matchers compile them with RE2
  (cached, see ``rauta.model.routing``).
- A ``Rule`` with ``invalid`` set answers 500 whenever it is the first matching rule; it
  is listed like any other rule, so ``/config`` and ``rauta translate`` show it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HeaderMatch(Frozen):
    type: Literal["Exact", "RegularExpression"]
    name: str  # lower-cased: header names are case-insensitive
    value: str


class QueryMatch(Frozen):
    type: Literal["Exact", "RegularExpression"]
    name: str  # exact case: query parameter names are case-sensitive
    value: str


class PathMatch(Frozen):
    type: Literal["Exact", "PathPrefix", "RegularExpression"]
    value: str  # for PathPrefix: normalised, without a trailing "/" unless it is "/"


class Match(Frozen):
    path: PathMatch
    method: str | None = None
    headers: tuple[HeaderMatch, ...] = ()  # deduplicated by name, first entry kept
    query: tuple[QueryMatch, ...] = ()  # deduplicated by name, first entry kept


class Header(Frozen):
    name: str
    value: str


class HeaderModifier(Frozen):
    set: tuple[Header, ...] = ()
    add: tuple[Header, ...] = ()
    remove: tuple[str, ...] = ()


class PathModifier(Frozen):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    value: str


class Redirect(Frozen):
    scheme: str | None = None
    hostname: str | None = None
    port: int | None = None
    path: PathModifier | None = None
    status_code: int = 302


class Rewrite(Frozen):
    hostname: str | None = None
    path: PathModifier | None = None


class Endpoint(Frozen):
    address: str
    port: int
    pod: str = ""  # "namespace/name" from the EndpointSlice's targetRef (kind Pod), for the observer

    @property
    def key(self) -> str:
        """The stable Maglev key of an endpoint: ``address:port`` (IPv6 in brackets)."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


class Backend(Frozen):
    """One backendRef of a rule, resolved.

    ``invalid`` backends (not found, not permitted, wrong kind, bad port) keep their weight
    and answer 500 for their share. A valid backend with no ready endpoints answers 503.
    """

    name: str  # "namespace/service:port" (or the ref as written, when invalid)
    weight: int
    invalid: str | None = None  # reason text when the ref could not be resolved
    app_protocol: str | None = None
    endpoints: tuple[Endpoint, ...] = ()  # ready endpoints, sorted by key
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None


class Mirror(Frozen):
    backend: Backend
    numerator: int = 100  # mirror this fraction of requests
    denominator: int = 100


class Filters(Frozen):
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    redirect: Redirect | None = None
    rewrite: Rewrite | None = None
    mirrors: tuple[Mirror, ...] = ()


class Timeouts(Frozen):
    request_ms: int | None = None  # None: no timeout
    backend_request_ms: int | None = None


class Rule(Frozen):
    """One (route, rule, match, hostname) combination, in precedence order."""

    route: str  # "namespace/name" of the HTTPRoute
    rule_index: int
    rule_name: str | None = None
    match_index: int
    hostname: str  # the matching hostname; "" matches any host the listener accepts
    match: Match
    filters: Filters = Filters()
    backends: tuple[Backend, ...] = ()  # empty and no redirect: the rule answers 500
    timeouts: Timeouts = Timeouts()
    # Why the translator could not program this rule's filters or timeouts. Such a rule
    # keeps its matches and precedence place, has no filters or backends, and answers 500.
    invalid: str | None = None


class ListenerRoutes(Frozen):
    gateway: str  # "namespace/name"
    listener: str  # listener name
    hostname: str  # listener hostname; "" when the listener has none
    rules: tuple[Rule, ...] = ()


class TLSCertificate(Frozen):
    hostname: str  # listener hostname the certificate serves; "" for the default
    secrets: tuple[str, ...]  # "namespace/name" of kubernetes.io/tls Secrets


class PortConfig(Frozen):
    # The local address this port is bound on: "" for the proxy's own listen host (every
    # Gateway without an address of its own), else the Gateway's address (one per Gateway
    # when an address pool is configured). A connection accepted on (address, port) is
    # routed only among that PortConfig's listeners.
    address: str = ""
    port: int
    protocol: Literal["HTTP", "HTTPS"]
    # ``--gateway-services``: ``port`` is the Gateway's internal port and this is its
    # listener port (what clients use: the Service maps it to ``port``), for redirects
    # that keep the port. None: ``port`` is the listener port itself.
    public_port: int | None = None
    listeners: tuple[ListenerRoutes, ...] = ()
    certificates: tuple[TLSCertificate, ...] = ()  # HTTPS only, most specific first


class RouterConfig(Frozen):
    ports: tuple[PortConfig, ...] = ()  # sorted by (address, port)

    def port(self, port: int, address: str = "") -> PortConfig | None:
        """The PortConfig bound on ``(address, port)`` ("" is the proxy's listen host)."""
        for p in self.ports:
            if p.port == port and p.address == address:
                return p
        return None


EMPTY = RouterConfig()
