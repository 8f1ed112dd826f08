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
- ``needs_pool``: supported only when rauta runs with ``--address-pool`` (each Gateway
  on its own address); GatewayClass status leaves these out when there is no pool.
  ``needs_services`` likewise for ``--gateway-services`` (per-Gateway Services).
  Without a pool every Gateway shares the listen host, so listeners of different
  Gateways on one port are resolved against each other (see the README); that is not a
  per-feature limitation and is not repeated in the notes.
- The README table's conformance column comes from a report (``results``): a supported
  feature is "pass" when every test of the report's run that needs it passed. The
  command line (``rauta.features``) reads the report and the suite's test list.
- Pure data plus renderers; standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

SUITE_VERSION = "v1.6.3"

Level = Literal["core", "extended"]


@dataclass(frozen=True)
class Feature:
    name: str  # exactly as in sigs.k8s.io/gateway-api/pkg/features
    level: Level  # the conformance support level (core or extended)
    supported: bool
    note: str = ""
    needs_pool: bool = False  # supported only with an address pool (--address-pool)
    needs_services: bool = False  # supported only with --gateway-services


def _yes(name: str, level: Level, note: str, needs_pool: bool = False,
         needs_services: bool = False) -> Feature:
    return Feature(name, level, True, note, needs_pool, needs_services)


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
    _yes("GatewayHTTPSListenerDetectMisdirectedRequests", "extended",
         "421 when the TLS SNI name and the Host/:authority select different listeners, "
         "over HTTP/1.1 and HTTP/2 (ALPN h2)"),
    _yes("GatewayStaticAddresses", "extended",
         "one spec.addresses IPAddress from the pool (AddressNotUsable otherwise)",
         needs_pool=True),
    _yes("GatewayAddressEmpty", "extended",
         "{type: IPAddress} with no value gets a pool address", needs_pool=True),
    _yes("GatewayInfrastructure", "extended",
         "labels and annotations go on the generated per-Gateway Service; parametersRef "
         "gets InvalidParameters (no parameters kind)", needs_services=True),
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


def supported(address_pool: bool = True, *, services: bool = False) -> tuple[Feature, ...]:
    """The supported features; without an address pool (or the per-Gateway Services),
    those needing one are left out."""
    return tuple(f for f in FEATURES if f.supported and (address_pool or not f.needs_pool)
                 and (services or not f.needs_services))


def supported_features_flag() -> str:
    """The value of the conformance suite's ``--supported-features`` flag (comma list);
    the suite runs rauta with an address pool and ``--gateway-services``
    (``conformance/run_lab.py``)."""
    return ",".join(f.name for f in supported(services=True))


def feature_results(report_profile: Mapping[str, Any], tests: Mapping[str, frozenset[str]],
                    claimed: Iterable[str]) -> dict[str, str]:
    """Per feature, what a report's run says of it: ``pass (N tests)`` / ``FAIL: tests``
    / ``not run``. ``report_profile`` is one entry of the report's ``profiles`` (core and
    extended, each with ``failedTests``/``skippedTests``); ``tests`` maps every suite test
    to the features it needs; ``claimed`` is the run's supported features. A test ran when
    all its features were claimed (the suite's rule). A core feature is judged by the
    core tests (those needing core features only), an extended one by every test that
    needs it."""
    on = set(claimed)
    core = {f.name for f in FEATURES if f.level == "core"}
    bad: set[str] = set()
    for part in ("core", "extended"):
        got = report_profile.get(part) or {}
        bad |= set(got.get("failedTests") or ()) | set(got.get("skippedTests") or ())
    out: dict[str, str] = {}
    for name in sorted(on):
        scope = core if name in core else on
        ran = sorted(t for t, need in tests.items() if name in need and need <= on & scope)
        failed = [t for t in ran if t in bad]
        if not ran:
            out[name] = "not run"
        elif failed:
            out[name] = "FAIL: " + ", ".join(failed)
        else:
            out[name] = f"pass ({len(ran)} tests)" if len(ran) > 1 else "pass (1 test)"
    return out


def markdown_table(results: Mapping[str, str] | None = None, source: str = "") -> str:
    """The README's feature table: feature, level, supported, conformance result (from
    ``results``, see ``feature_results``; ``source`` names the report), note."""
    res = results or {}
    lines = [f"Gateway API features (names as in `sigs.k8s.io/gateway-api/pkg/features` "
             f"{SUITE_VERSION}); the conformance column is from {source or 'no report'}:", "",
             "| Feature | Level | Supported | Conformance | Note |", "|---|---|---|---|---|"]
    for f in FEATURES:
        sup = ("yes, with `--address-pool`" if f.needs_pool else
               "yes, with `--gateway-services`" if f.needs_services else "yes"
               ) if f.supported else "no"
        conf = res.get(f.name, "not claimed" if not f.supported else "not run")
        lines.append(f"| `{f.name}` | {f.level} | {sup} | {conf} | {f.note} |")
    return "\n".join(lines) + "\n"
