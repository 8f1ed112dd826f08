"""Translator verdicts on what rauta cannot honour: rules with invalid filters are
programmed as 500 rules and never fall through (issue 20), regexes RE2 rejects are invalid
matches (issue 21), and Gateway fields rauta does not implement (``spec.tls``,
``spec.infrastructure``, listener ``tls.frontendValidation``) get an honest status
(issue 22). Builders come from ``test_translate``."""

from __future__ import annotations

from pathlib import Path

import yaml

from rauta.model.conditions import Reason
from rauta.model.routing import RequestView
from rauta.model.routing import route as route_request
from rauta.model.snapshot import Snapshot
from rauta.model.translate import translate
from tests.unit.model.test_translate import (
    BAD_MATCHES,
    GOOD_RULE,
    conds,
    eslice,
    gateway,
    gw_status,
    listener,
    parent,
    route,
    rules,
    service,
    snap,
)


def test_route_whose_rules_all_have_invalid_matches_programs_nothing() -> None:
    t = translate(snap(route(rules=[BAD_MATCHES[0], BAD_MATCHES[2]])))
    c = conds(parent(t).conditions)
    assert (c["Accepted"].status, c["Accepted"].reason) == ("False", Reason.UNSUPPORTED_VALUE)
    assert "(dropped)" in c["Accepted"].message
    assert rules(t) == ()


def _request(path: str, host: str = "shop.example.com") -> RequestView:
    return RequestView(method="GET", host=host, path=path, query="", headers=(), port=80)


def test_single_invalid_rule_answers_500_never_the_other_tenants_catch_all() -> None:
    """Issue 20: before the fix the ExtensionRef route was not programmed at all and
    /admin fell through to the other tenant's catch-all."""
    ext = {"type": "ExtensionRef",
           "extensionRef": {"group": "auth.example.com", "kind": "AuthFilter", "name": "x"}}
    t = translate(snap(
        route("admin", ns="app", rules=[{"matches": [{"path": {"value": "/admin"}}],
                                         "filters": [ext],
                                         "backendRefs": [{"name": "web", "port": 80}]}]),
        route("all", ns="other", created="2000-01-01T00:00:00Z",
              rules=[{"backendRefs": [{"name": "web", "port": 80}]}]),
        service("web", "app"), eslice("web", "app", "10.0.0.1"),
        service("web", "other"), eslice("web", "other", "10.0.0.2")))
    for path in ("/admin", "/admin/", "/admin/users"):
        d = route_request(t.config, _request(path))
        assert (d.kind, d.status, d.reason) == ("error", 500, "invalid rule"), path
        assert d.rule is not None and d.rule.route == "app/admin"
    d = route_request(t.config, _request("/other"))
    assert d.kind == "forward" and d.rule is not None and d.rule.route == "other/all"


def test_regex_that_re2_rejects_is_an_invalid_match() -> None:
    """Issue 21: RE2 has no backreferences or lookaround; such a pattern is an invalid match
    (the rule is dropped, UnsupportedValue), not silently run on a backtracking engine."""
    for pattern in (r"/(a)\1", r"/(?=a)a", r"/(?<!b)a", r"/a{1001}"):
        t = translate(snap(route(rules=[
            {"matches": [{"path": {"type": "RegularExpression", "value": pattern}}]},
            GOOD_RULE])))
        assert [r.rule_index for r in rules(t)] == [1], pattern
        pi = conds(parent(t).conditions)["PartiallyInvalid"]
        assert pi.reason == Reason.UNSUPPORTED_VALUE and "RE2" in pi.message, pattern


def _mtls_secret() -> dict:
    return {"kind": "Secret", "metadata": {"name": "cert", "namespace": "infra"},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
                           "tls.key": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"}}


def _https() -> dict:
    return listener("https", 443, "HTTPS", tls={"certificateRefs": [{"name": "cert"}]})


def test_gateway_spec_tls_frontend_validation_is_not_pretended() -> None:
    """Issue 22: a Gateway asking for client-certificate validation is not accepted (reason
    Invalid, naming spec.tls.frontend) and not served, rather than served without mTLS."""
    tls = {"frontend": {"default": {"validation": {
        "caCertificateRefs": [{"kind": "ConfigMap", "name": "ca", "group": ""}]}}}}
    t = translate(snap(_mtls_secret(), gateway(listeners=[_https()], tls=tls), route()))
    c = conds(gw_status(t).conditions)
    assert (c["Accepted"].status, c["Accepted"].reason) == ("False", Reason.INVALID)
    assert "spec.tls.frontend" in c["Accepted"].message
    assert (c["Programmed"].status, c["Programmed"].reason) == ("False", Reason.INVALID)
    assert t.config.port(443) is None
    acc = conds(parent(t).conditions)["Accepted"]
    assert (acc.status, acc.reason) == ("False", Reason.NO_MATCHING_PARENT)
    assert "spec.tls.frontend" in acc.message


def test_gateway_spec_infrastructure_is_not_pretended() -> None:
    t = translate(snap(gateway(infrastructure={"labels": {"team": "a"}})))
    c = conds(gw_status(t).conditions)
    assert (c["Accepted"].status, c["Accepted"].reason) == ("False", Reason.INVALID)
    assert "spec.infrastructure.labels" in c["Accepted"].message
    assert t.config.port(80) is None
    t = translate(snap(gateway(infrastructure={"parametersRef": {
        "group": "example.com", "kind": "Params", "name": "p"}})))
    c = conds(gw_status(t).conditions)
    assert (c["Accepted"].status, c["Accepted"].reason) == ("False", Reason.INVALID_PARAMETERS)
    assert "spec.infrastructure.parametersRef" in c["Accepted"].message


def test_empty_tls_and_infrastructure_request_nothing() -> None:
    t = translate(snap(gateway(tls={}, infrastructure={"labels": {}})))
    c = conds(gw_status(t).conditions)
    assert (c["Accepted"].status, c["Accepted"].reason) == ("True", Reason.ACCEPTED)


def test_listener_tls_frontend_validation_is_not_accepted() -> None:
    lis = listener("https", 443, "HTTPS", tls={
        "certificateRefs": [{"name": "cert"}],
        "frontendValidation": {"caCertificateRefs": [{"kind": "ConfigMap", "name": "ca"}]}})
    t = translate(snap(_mtls_secret(), gateway(listeners=[lis, listener()])))
    https = next(ls for ls in gw_status(t).listeners if ls.name == "https")
    acc = conds(https.conditions)["Accepted"]
    assert (acc.status, acc.reason) == ("False", Reason.UNSUPPORTED_VALUE)
    assert "tls.frontendValidation" in acc.message
    assert t.config.port(443) is None and t.config.port(80) is not None
    gs = conds(gw_status(t).conditions)["Accepted"]
    assert (gs.status, gs.reason) == ("True", Reason.LISTENERS_NOT_VALID)


def test_golden_45_admin_request_gets_500_not_the_catch_all() -> None:
    """The golden case of issue 20, routed: GET /admin must be a 500, never web/all."""
    case = (Path(__file__).resolve().parents[2] / "golden"
            / "45-invalid-filter-only-rule-next-to-catch-all" / "input.yaml")
    docs = [d for d in yaml.safe_load_all(case.read_text()) if d]
    t = translate(Snapshot.from_dicts(docs))
    for path in ("/admin", "/admin/users", "/x/../admin"):
        d = route_request(t.config, _request(path))
        assert (d.status, d.reason) == (500, "invalid rule"), path
        assert d.rule is not None and d.rule.route == "shop/admin"
    assert route_request(t.config, _request("/shop")).rule.route == "web/all"  # type: ignore[union-attr]
