"""Kubernetes and Gateway API resource types, parsed from real Kubernetes JSON/YAML.

Role: the typed, validated input of the pure model.

Rules:
- Every type is a frozen pydantic v2 model. Field names are snake_case in Python and
  camelCase on the wire (``populate_by_name`` accepts both); unknown fields are ignored so
  that newer API servers and extra metadata never break parsing.
- Defaults follow the Gateway API v1 CRDs (e.g. ``allowedRoutes.namespaces.from = Same``,
  a route without matches matches ``PathPrefix /``, ``backendRef.weight = 1``).
- A field rauta does not support but that changes what a user expects (Gateway
  ``spec.tls``, ``spec.infrastructure``, listener ``tls.frontendValidation``) is parsed as
  plain data rather than ignored, so the graph can report it; it is never silently lost.
- Only structural validation happens here (types, required fields, enums). Semantic
  validity (a listener port clash, a missing Service) is the graph's job, because the spec
  reports it through status conditions rather than by rejecting the object.
- A status is parsed only where the model reads it: HTTPRoute ``status.parents`` (other
  controllers' entries), Gateway ``status.addresses`` (a kept allocation) and Service
  ``status.loadBalancer`` (a generated Service's load-balancer address); an object
  without status loads with an empty one.
- Nothing here performs I/O. ``parse_object`` turns one mapping into a typed resource and
  raises ``ResourceError`` naming the object and the field on failure.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

GATEWAY_GROUP = "gateway.networking.k8s.io"


class Frozen(BaseModel):
    """Base of every resource type: immutable, camelCase on the wire, extras ignored.

    A JSON ``null`` means "unset" (the API server writes ``endpoints: null`` for an empty
    EndpointSlice), so null fields take their defaults; a required field still fails.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        populate_by_name=True,
        alias_generator=to_camel,
    )

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_unset(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if v is not None}
        return data


# --------------------------------------------------------------------------- metadata


class OwnerReference(Frozen):
    """One ``metadata.ownerReferences`` entry (read on Services rauta generates)."""

    api_version: str = ""
    kind: str = ""
    name: str = ""
    uid: str = ""
    controller: bool | None = None


class ObjectMeta(Frozen):
    name: Annotated[str, Field(min_length=1)]
    namespace: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int = 0
    resource_version: str = ""
    uid: str = ""
    # RFC 3339 text as Kubernetes writes it; kept as text so ordering is exact and pure.
    creation_timestamp: str = ""
    owner_references: tuple[OwnerReference, ...] = ()


class LabelSelectorRequirement(Frozen):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()


class LabelSelector(Frozen):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "In" and (not present or labels[req.key] not in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True


# --------------------------------------------------------------------------- GatewayClass


class GatewayClassSpec(Frozen):
    controller_name: Annotated[str, Field(min_length=1)]
    description: str | None = None


class GatewayClass(Frozen):
    kind: Literal["GatewayClass"] = "GatewayClass"
    metadata: ObjectMeta
    spec: GatewayClassSpec


# --------------------------------------------------------------------------- Gateway


class RouteGroupKind(Frozen):
    group: str = GATEWAY_GROUP
    kind: str


class RouteNamespaces(Frozen):
    from_: Literal["All", "Same", "Selector"] = Field(default="Same", alias="from")
    selector: LabelSelector | None = None


class AllowedRoutes(Frozen):
    namespaces: RouteNamespaces = Field(default_factory=RouteNamespaces)
    kinds: tuple[RouteGroupKind, ...] = ()


class SecretObjectReference(Frozen):
    group: str = ""
    kind: str = "Secret"
    name: Annotated[str, Field(min_length=1)]
    namespace: str | None = None


class GatewayTLSConfig(Frozen):
    mode: Literal["Terminate", "Passthrough"] = "Terminate"
    certificate_refs: tuple[SecretObjectReference, ...] = ()
    # Listener-level client-certificate validation (experimental channel, v1.1-v1.2).
    # Parsed only so that the graph can say it is not supported, never ignored.
    frontend_validation: dict[str, Any] | None = None


class Listener(Frozen):
    name: Annotated[str, Field(min_length=1)]
    hostname: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)]
    # Free text on the wire so unsupported protocols (TCP, UDP, TLS, ...) reach the graph
    # and get the spec's UnsupportedProtocol condition instead of a parse error.
    protocol: Annotated[str, Field(min_length=1)]
    tls: GatewayTLSConfig | None = None
    allowed_routes: AllowedRoutes = Field(default_factory=AllowedRoutes)


class GatewayAddress(Frozen):
    type: str = "IPAddress"
    value: str = ""  # empty: "assign me one of this type" (GatewayAddressEmpty)


class GatewaySpec(Frozen):
    gateway_class_name: Annotated[str, Field(min_length=1)]
    listeners: Annotated[tuple[Listener, ...], Field(min_length=1)]
    addresses: tuple[GatewayAddress, ...] = ()
    # Fields rauta does not support yet, kept as written (not ignored) so that the graph
    # can refuse the Gateway with an honest status: ``tls`` (frontend client-certificate
    # validation, backend client certificates) and ``infrastructure`` (labels,
    # annotations, parametersRef for generated infrastructure).
    tls: dict[str, Any] | None = None
    infrastructure: dict[str, Any] | None = None


class GatewayStatusAddress(Frozen):
    type: str = "IPAddress"
    value: str = ""


class GatewayStatusIn(Frozen):
    """The part of a Gateway's current status the model reads: the addresses it holds
    (an allocated address is kept while it stays valid, ``rauta.model.addresses``)."""

    addresses: tuple[GatewayStatusAddress, ...] = ()


class Gateway(Frozen):
    kind: Literal["Gateway"] = "Gateway"
    metadata: ObjectMeta
    spec: GatewaySpec
    status: GatewayStatusIn = Field(default_factory=GatewayStatusIn)


# --------------------------------------------------------------------------- HTTPRoute


class ParentReference(Frozen):
    group: str = GATEWAY_GROUP
    kind: str = "Gateway"
    namespace: str | None = None
    name: Annotated[str, Field(min_length=1)]
    section_name: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None


class HTTPPathMatch(Frozen):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: str = "/"


class HTTPHeaderMatch(Frozen):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: Annotated[str, Field(min_length=1)]
    value: str


class HTTPQueryParamMatch(Frozen):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: Annotated[str, Field(min_length=1)]
    value: str


HTTPMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]


class HTTPRouteMatch(Frozen):
    path: HTTPPathMatch = Field(default_factory=HTTPPathMatch)
    headers: tuple[HTTPHeaderMatch, ...] = ()
    query_params: tuple[HTTPQueryParamMatch, ...] = ()
    method: HTTPMethod | None = None


class HTTPHeader(Frozen):
    name: Annotated[str, Field(min_length=1)]
    value: str


class HTTPHeaderFilter(Frozen):
    set: tuple[HTTPHeader, ...] = ()
    add: tuple[HTTPHeader, ...] = ()
    remove: tuple[str, ...] = ()


class HTTPPathModifier(Frozen):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: str | None = None
    replace_prefix_match: str | None = None


class HTTPRequestRedirectFilter(Frozen):
    scheme: Literal["http", "https"] | None = None
    hostname: str | None = None
    path: HTTPPathModifier | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    status_code: Literal[301, 302, 303, 307, 308] = 302


class HTTPURLRewriteFilter(Frozen):
    hostname: str | None = None
    path: HTTPPathModifier | None = None


class Fraction(Frozen):
    numerator: Annotated[int, Field(ge=0)]
    denominator: Annotated[int, Field(ge=1)] = 100


class BackendObjectReference(Frozen):
    group: str = ""
    kind: str = "Service"
    name: Annotated[str, Field(min_length=1)]
    namespace: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None


class HTTPRequestMirrorFilter(Frozen):
    backend_ref: BackendObjectReference
    percent: Annotated[int, Field(ge=0, le=100)] | None = None
    fraction: Fraction | None = None


class LocalObjectReference(Frozen):
    group: str
    kind: str
    name: str


class HTTPRouteFilter(Frozen):
    # Free text so an unknown filter type reaches the graph (UnsupportedValue).
    type: Annotated[str, Field(min_length=1)]
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_redirect: HTTPRequestRedirectFilter | None = None
    url_rewrite: HTTPURLRewriteFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    extension_ref: LocalObjectReference | None = None


class HTTPBackendRef(Frozen):
    group: str = ""
    kind: str = "Service"
    name: Annotated[str, Field(min_length=1)]
    namespace: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    weight: Annotated[int, Field(ge=0, le=1_000_000)] = 1
    filters: tuple[HTTPRouteFilter, ...] = ()


class HTTPRouteTimeouts(Frozen):
    # Gateway API Duration strings ("10s", "500ms", "1h2m"); parsed by the graph.
    request: str | None = None
    backend_request: str | None = None


class HTTPRouteRule(Frozen):
    name: str | None = None
    matches: tuple[HTTPRouteMatch, ...] = (HTTPRouteMatch(),)
    filters: tuple[HTTPRouteFilter, ...] = ()
    backend_refs: tuple[HTTPBackendRef, ...] = ()
    timeouts: HTTPRouteTimeouts | None = None


class HTTPRouteSpec(Frozen):
    parent_refs: tuple[ParentReference, ...] = ()
    hostnames: tuple[str, ...] = ()
    rules: tuple[HTTPRouteRule, ...] = (HTTPRouteRule(),)


class RouteParentStatusIn(Frozen):
    """A parent entry already written on the object (kept for other controllers)."""

    parent_ref: ParentReference
    controller_name: str
    conditions: tuple[dict[str, Any], ...] = ()


class RouteStatusIn(Frozen):
    parents: tuple[RouteParentStatusIn, ...] = ()


class HTTPRoute(Frozen):
    kind: Literal["HTTPRoute"] = "HTTPRoute"
    metadata: ObjectMeta
    spec: HTTPRouteSpec = Field(default_factory=HTTPRouteSpec)
    status: RouteStatusIn = Field(default_factory=RouteStatusIn)


# --------------------------------------------------------------------------- ReferenceGrant


class ReferenceGrantFrom(Frozen):
    group: str
    kind: str
    namespace: Annotated[str, Field(min_length=1)]


class ReferenceGrantTo(Frozen):
    group: str
    kind: str
    name: str | None = None


class ReferenceGrantSpec(Frozen):
    from_: Annotated[tuple[ReferenceGrantFrom, ...], Field(alias="from", min_length=1)]
    to: Annotated[tuple[ReferenceGrantTo, ...], Field(min_length=1)]


class ReferenceGrant(Frozen):
    kind: Literal["ReferenceGrant"] = "ReferenceGrant"
    metadata: ObjectMeta
    spec: ReferenceGrantSpec


# --------------------------------------------------------------------------- core/v1 and discovery/v1


class ServicePort(Frozen):
    name: str = ""
    protocol: str = "TCP"
    port: Annotated[int, Field(ge=1, le=65535)]
    target_port: int | str | None = None
    app_protocol: str | None = None


class ServiceSpec(Frozen):
    ports: tuple[ServicePort, ...] = ()
    type: str = "ClusterIP"
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    external_name: str | None = None


class ServiceStatusIn(Frozen):
    """The part of a Service's status the model reads: ``loadBalancer`` (ingress entries,
    kept as written), for the Services rauta generates per Gateway
    (``rauta.model.services.gateway_addresses``)."""

    load_balancer: dict[str, Any] = Field(default_factory=dict)


class Service(Frozen):
    kind: Literal["Service"] = "Service"
    metadata: ObjectMeta
    spec: ServiceSpec = Field(default_factory=ServiceSpec)
    status: ServiceStatusIn = Field(default_factory=ServiceStatusIn)


class EndpointConditions(Frozen):
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class EndpointTargetRef(Frozen):
    """An endpoint's ``targetRef`` (an ObjectReference; rauta reads the Pod's name)."""

    kind: str | None = None
    name: str | None = None
    namespace: str | None = None


class Endpoint(Frozen):
    addresses: Annotated[tuple[str, ...], Field(min_length=1)]
    conditions: EndpointConditions = Field(default_factory=EndpointConditions)
    hostname: str | None = None
    node_name: str | None = None
    zone: str | None = None
    target_ref: EndpointTargetRef | None = None


class EndpointPort(Frozen):
    name: str | None = ""
    protocol: str = "TCP"
    port: int | None = None
    app_protocol: str | None = None


class EndpointSlice(Frozen):
    kind: Literal["EndpointSlice"] = "EndpointSlice"
    metadata: ObjectMeta
    address_type: str = "IPv4"
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[EndpointPort, ...] | None = None

    @property
    def service_name(self) -> str | None:
        return self.metadata.labels.get("kubernetes.io/service-name")


class Namespace(Frozen):
    kind: Literal["Namespace"] = "Namespace"
    metadata: ObjectMeta


class Secret(Frozen):
    """A Secret, by presence and type only: the model never reads key material."""

    kind: Literal["Secret"] = "Secret"
    metadata: ObjectMeta
    type: str = "Opaque"
    # Only the key names are kept, to check that tls.crt and tls.key exist, plus the verdict
    # of a structural PEM check of kubernetes.io/tls data (``tls_problem``), never the data.
    data_keys: tuple[str, ...] = ()
    tls_problem: str | None = None


Resource = (
    GatewayClass
    | Gateway
    | HTTPRoute
    | ReferenceGrant
    | Service
    | EndpointSlice
    | Namespace
    | Secret
)

KINDS: dict[str, type[Resource]] = {
    "GatewayClass": GatewayClass,
    "Gateway": Gateway,
    "HTTPRoute": HTTPRoute,
    "ReferenceGrant": ReferenceGrant,
    "Service": Service,
    "EndpointSlice": EndpointSlice,
    "Namespace": Namespace,
    "Secret": Secret,
}

# Kinds that live in a namespace; objects of these kinds without one get "default".
NAMESPACED = frozenset(KINDS) - {"GatewayClass", "Namespace"}


class ResourceError(ValueError):
    """A resource that cannot be parsed. ``str()`` is one line naming object and field."""

    def __init__(self, kind: str, ident: str, field: str, problem: str) -> None:
        self.kind, self.ident, self.field, self.problem = kind, ident, field, problem
        where = f"{kind} {ident}" if ident else kind
        super().__init__(f"{where}: {field}: {problem}" if field else f"{where}: {problem}")


def _loc_text(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location (already camelCase aliases) as ``a.b[0].c``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else ("." if text else "") + str(part)
    return text


def _ident(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return ""
    name = meta.get("name")
    ns = meta.get("namespace")
    if not isinstance(name, str):
        return ""
    if not (isinstance(ns, str) and ns) and obj.get("kind") in NAMESPACED:
        ns = "default"
    return f"{ns}/{name}" if isinstance(ns, str) and ns else name


_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\s.*?-----END \1-----", re.DOTALL)


def _pem_kinds(text: str) -> list[str]:
    """The labels of the PEM blocks in ``text`` (a structural check: the key material itself
    is only parsed by the proxy, which reports a bad one through Programmed)."""
    return [m.group(1) for m in _PEM_BLOCK.finditer(text)]


def _tls_problem(data: Any, string_data: Any) -> str | None:
    """Why kubernetes.io/tls Secret data cannot be a certificate and key, or None."""
    texts: dict[str, str] = {}
    for key in ("tls.crt", "tls.key"):
        if isinstance(string_data, Mapping) and isinstance(string_data.get(key), str):
            texts[key] = string_data[key]
        elif isinstance(data, Mapping) and isinstance(data.get(key), str):
            try:
                texts[key] = base64.b64decode(data[key], validate=True).decode("ascii")
            except (binascii.Error, ValueError, UnicodeDecodeError):
                return f"{key} is not valid base64 PEM"
        else:
            return f"{key} is missing"
    if "CERTIFICATE" not in _pem_kinds(texts["tls.crt"]):
        return "tls.crt holds no PEM certificate"
    if not any(k.endswith("PRIVATE KEY") for k in _pem_kinds(texts["tls.key"])):
        return "tls.key holds no PEM private key"
    return None


def parse_object(obj: Any) -> Resource:
    """Parse one Kubernetes object mapping into its resource type.

    Raises ``ResourceError`` with a one-line message naming the object and field.
    Secrets keep only the names of their data keys.
    """
    if not isinstance(obj, Mapping):
        raise ResourceError("object", "", "", f"expected a mapping, got {type(obj).__name__}")
    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ResourceError("object", _ident(obj), "kind", "missing")
    cls = KINDS.get(kind)
    if cls is None:
        raise ResourceError(kind, _ident(obj), "kind", f"unsupported kind {kind!r}")
    data = dict(obj)
    if kind == "Secret":
        raw = obj.get("data") or {}
        raw2 = obj.get("stringData") or {}
        keys = sorted(set(raw) | set(raw2)) if isinstance(raw, Mapping) and isinstance(
            raw2, Mapping
        ) else []
        data = {"kind": kind, "metadata": obj.get("metadata"), "type": obj.get("type", "Opaque"),
                "dataKeys": keys}
        if obj.get("type") == "kubernetes.io/tls":
            data["tlsProblem"] = _tls_problem(raw, raw2)
    meta = data.get("metadata")
    if isinstance(meta, Mapping) and kind in NAMESPACED and not meta.get("namespace"):
        data["metadata"] = {**meta, "namespace": "default"}
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ResourceError(kind, _ident(obj), _loc_text(tuple(err["loc"])), err["msg"]) from None
