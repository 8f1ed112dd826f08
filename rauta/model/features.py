"""The Gateway API features rauta supports: the one list (pure data).

Role: the single source of truth for "which Gateway API features does rauta implement".
Everything that states it is rendered from ``FEATURES``: the conformance suite's
``--supported-features`` flag (``scripts/run-conformance.sh`` runs
``python -m rauta.features --flag``) and the feature table of the README
(``python -m rauta.features --markdown``) and GatewayClass ``status.supportedFeatures``
(``rauta.model.translate``, sorted by name as the CRD requires).

Rules:
- Names and support levels are exactly those of ``sigs.k8s.io/gateway-api/pkg/features``
  at ``SUITE_VERSION``, the version of the conformance suite pinned in
  ``conformance/go.mod``. ``tests/unit/test_features.py`` checks every entry against
  ``conformance/features-<SUITE_VERSION>.txt``, which ``scripts/build-conformance.sh``
  generates from the Go sources (``go run ./featurelist`` in ``conformance/``), so the
  check needs no Go at test time.
- Every Gateway, ReferenceGrant and HTTPRoute feature of that version is listed, marked
  supported or not, so that a new suite version forces a decision on each new name; of
  the other route kinds and the mesh only the core feature is listed (all unsupported).
- ``supported=True`` only when the model (``rauta/model``) and the proxy (``rauta/proxy``)
  implement the feature end to end today. ``note`` says where, or what is missing.
  Known gap for every feature alike: rauta serves all Gateways on one address, so
  listeners of different Gateways on one port are resolved against each other (see the
  README); that is not a per-feature limitation and is not repeated in the notes.
- Pure data plus renderers; standard library only (the command line that prints them and
  rewrites the README is ``rauta.features``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SUITE_VERSION = "v1.6.3"

Level = Literal["core", "extended"]


@dataclass(frozen=True)
class Feature:
    name: str  # exactly as in sigs.k8s.io/gateway-api/pkg/features
    level: Level  # the conformance support level (core or extended)
    supported: bool
    note: str = ""


def _yes(name: str, level: Level, note: str) -> Feature:
    return Feature(name, level, True, note)


def _no(name: str, level: Level, note: str) -> Feature:
    return Feature(name, level, False, note)


FEATURES: tuple[Feature, ...] = (
    # ---------------------------------------------------------------- core
    _yes("Gateway", "core", "HTTP and HTTPS listeners, allowedRoutes, TLS certificateRefs"),
    _yes("HTTPRoute", "core", "path/header matches, weighted backends, header filters, "
         "redirects"),
    _yes("ReferenceGrant", "core", "cross-namespace backendRefs and certificateRefs"),
    # ---------------------------------------------------------------- Gateway extended
    _yes("GatewayPort8080", "extended", "listeners bind any port"),
    _yes("GatewayHTTPListenerIsolation", "extended",
         "a request is served only by the most specific listener whose hostname fits Host"),
    _no("GatewayHTTPSListenerDetectMisdirectedRequests", "extended",
        "421 on a Host/SNI mismatch is implemented, but the suite's test reuses an HTTP/2 "
        "connection (ALPN h2) and rauta speaks HTTP/1.1 only"),
    _no("GatewayStaticAddresses", "extended",
        "implemented with --address-pool; not yet run against the suite"),
    _no("GatewayAddressEmpty", "extended",
        "implemented with --address-pool; not yet run against the suite"),
    _no("GatewayInfrastructure", "extended", "spec.infrastructure is rejected (Accepted=False)"),
    _no("GatewayBackendClientCertificate", "extended", "spec.tls is rejected (no backend TLS)"),
    _no("GatewayFrontendClientCertificateValidation", "extended",
        "tls.frontendValidation is rejected (no mTLS)"),
    _no("GatewayFrontendClientCertificateValidationInsecureFallback", "extended",
        "tls.frontendValidation is rejected (no mTLS)"),
    _no("ListenerSet", "extended", "ListenerSet is not watched"),
    # ---------------------------------------------------------------- HTTPRoute extended
    _yes("HTTPRouteQueryParamMatching", "extended", "Exact and RegularExpression (RE2)"),
    _yes("HTTPRouteMethodMatching", "extended", "exact, case-sensitive"),
    _yes("HTTPRouteResponseHeaderModification", "extended", "ResponseHeaderModifier"),
    _yes("HTTPRouteBackendRequestHeaderModification", "extended",
         "RequestHeaderModifier on a backendRef, after the rule's"),
    _yes("HTTPRoutePortRedirect", "extended", "RequestRedirect.port"),
    _yes("HTTPRouteSchemeRedirect", "extended",
         "RequestRedirect.scheme, with the scheme's well-known port"),
    _yes("HTTPRoutePathRedirect", "extended", "ReplaceFullPath and ReplacePrefixMatch"),
    _yes("HTTPRoute303RedirectStatusCode", "extended", "RequestRedirect.statusCode"),
    _yes("HTTPRoute307RedirectStatusCode", "extended", "RequestRedirect.statusCode"),
    _yes("HTTPRoute308RedirectStatusCode", "extended", "RequestRedirect.statusCode"),
    _yes("HTTPRouteHostRewrite", "extended", "URLRewrite.hostname"),
    _yes("HTTPRoutePathRewrite", "extended", "ReplaceFullPath and ReplacePrefixMatch"),
    _yes("HTTPRouteRequestMirror", "extended", "RequestMirror (fire and forget)"),
    _yes("HTTPRouteRequestMultipleMirrors", "extended", "RequestMirror may repeat"),
    _yes("HTTPRouteRequestPercentageMirror", "extended", "percent and fraction sampling"),
    _yes("HTTPRouteRequestTimeout", "extended", "timeouts.request: 504"),
    _yes("HTTPRouteBackendTimeout", "extended",
         "timeouts.backendRequest: 504 (no retries, so one attempt)"),
    _yes("HTTPRouteParentRefPort", "extended", "parentRefs[].port selects listeners"),
    _yes("HTTPRouteDestinationPortMatching", "extended",
         "a parentRef port with no listener gives Accepted=False/NoMatchingParent"),
    _yes("HTTPRouteNamedRouteRule", "extended", "rules[].name is accepted and kept (Rule.rule_name)"),
    _no("HTTPRouteBackendProtocolH2C", "extended",
        "appProtocol kubernetes.io/h2c gets ResolvedRefs=False/UnsupportedProtocol"),
    _no("HTTPRouteBackendProtocolWebSocket", "extended", "Upgrade is not tunnelled yet"),
    _no("HTTPRouteCORS", "extended", "the CORS filter answers 500 (UnsupportedValue)"),
    _no("HTTPRouteRetry", "extended", "retry is not implemented"),
    _no("HTTPRouteRetryBackendTimeout", "extended", "retry is not implemented"),
    _no("HTTPRouteRetryConnectionError", "extended", "retry is not implemented"),
    # ---------------------------------------------------------------- other kinds
    _no("GRPCRoute", "core", "GRPCRoute is not watched"),
    _no("TLSRoute", "core", "TLS listeners are UnsupportedProtocol"),
    _no("TCPRoute", "extended", "TCP listeners are UnsupportedProtocol"),
    _no("UDPRoute", "core", "UDP listeners are UnsupportedProtocol"),
    _no("BackendTLSPolicy", "core", "no backend TLS"),
    _no("Mesh", "core", "rauta is not a mesh"),
)


def supported() -> tuple[Feature, ...]:
    return tuple(f for f in FEATURES if f.supported)


def supported_features_flag() -> str:
    """The value of the conformance suite's ``--supported-features`` flag (comma list)."""
    return ",".join(f.name for f in supported())


def markdown_table() -> str:
    """The README's feature table: feature, level (core/extended), supported, note."""
    lines = [f"Gateway API features (names as in `sigs.k8s.io/gateway-api/pkg/features` "
             f"{SUITE_VERSION}):", "",
             "| Feature | Level | Supported | Note |", "|---|---|---|---|"]
    for f in FEATURES:
        lines.append(f"| `{f.name}` | {f.level} | {'yes' if f.supported else 'no'} | {f.note} |")
    return "\n".join(lines) + "\n"
