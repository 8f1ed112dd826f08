"""Plain-data rendering (rauta.model.render): stable, JSON-safe, fixed key order."""

from __future__ import annotations

import json

import yaml

from rauta.model.render import config_document, document, status_document
from rauta.model.snapshot import Snapshot
from rauta.model.translate import Translation, translate

CTRL = "rauta.io/gateway-controller"

OBJECTS = [
    {"kind": "GatewayClass", "metadata": {"name": "rauta"}, "spec": {"controllerName": CTRL}},
    {"kind": "Gateway", "metadata": {"name": "gw", "namespace": "infra"},
     "spec": {"gatewayClassName": "rauta", "listeners": [
         {"name": "http", "port": 80, "protocol": "HTTP",
          "allowedRoutes": {"namespaces": {"from": "All"}}},
         {"name": "tcp", "port": 9000, "protocol": "TCP"}]}},
    {"kind": "HTTPRoute", "metadata": {"name": "web", "namespace": "app"},
     "spec": {"parentRefs": [{"name": "gw", "namespace": "infra", "port": 80}],
              "hostnames": ["a.example.com"],
              "rules": [{"matches": [{"path": {"type": "Exact", "value": "/x"},
                                      "headers": [{"name": "X-A", "value": "1"}]}],
                         "filters": [{"type": "ResponseHeaderModifier",
                                      "responseHeaderModifier": {"set": [
                                          {"name": "x-b", "value": "2"}]}}],
                         "backendRefs": [{"name": "web", "port": 80, "weight": 2},
                                         {"name": "gone", "port": 80}]},
                        {"filters": [{"type": "RequestRedirect",
                                      "requestRedirect": {"scheme": "https",
                                                          "statusCode": 301}}]}]}},
    {"kind": "Service", "metadata": {"name": "web", "namespace": "app"},
     "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
    {"kind": "EndpointSlice",
     "metadata": {"name": "web-1", "namespace": "app",
                  "labels": {"kubernetes.io/service-name": "web"}},
     "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
     "endpoints": [{"addresses": ["10.0.0.2"]}, {"addresses": ["10.0.0.1"]}]},
]


def _translation() -> Translation:
    return translate(Snapshot.from_dicts(OBJECTS))


def test_document_is_json_serialisable_plain_data() -> None:
    doc = document(_translation())
    text = json.dumps(doc)
    assert json.loads(text) == doc


def test_document_is_byte_identical_across_calls_and_translations() -> None:
    a = json.dumps(document(_translation()), indent=2)
    b = json.dumps(document(_translation()), indent=2)
    assert a == b
    ya = yaml.safe_dump(document(_translation()), sort_keys=False)
    yb = yaml.safe_dump(document(_translation()), sort_keys=False)
    assert ya == yb


def test_top_level_and_status_key_order_is_fixed() -> None:
    doc = document(_translation())
    assert list(doc) == ["config", "status"]
    assert list(doc["status"]) == ["gatewayClasses", "gateways", "httpRoutes"]
    gw = doc["status"]["gateways"][0]
    assert list(gw) == ["namespace", "name", "conditions", "listeners"]
    assert list(gw["listeners"][0]) == ["name", "supportedKinds", "attachedRoutes", "conditions"]
    assert list(gw["conditions"][0]) == ["type", "status", "reason", "message"]
    route = doc["status"]["httpRoutes"][0]
    assert list(route) == ["namespace", "name", "parents"]
    assert list(route["parents"][0]) == ["parentRef", "controllerName", "conditions"]
    assert list(route["parents"][0]["parentRef"]) == ["group", "kind", "namespace", "name",
                                                      "port"]


def test_config_key_order_follows_the_model_field_order() -> None:
    cfgdoc = config_document(_translation().config)
    (port,) = cfgdoc["ports"]
    assert list(port) == ["port", "protocol", "listeners"]
    assert list(port["listeners"][0]) == ["gateway", "listener", "hostname", "rules"]
    rule = port["listeners"][0]["rules"][0]
    assert list(rule) == ["route", "rule_index", "match_index", "hostname", "match", "filters",
                          "backends"]
    assert list(rule["backends"][0]) == ["name", "weight", "endpoints"]


def test_config_omits_defaults_and_keeps_model_order() -> None:
    cfgdoc = config_document(_translation().config)
    exact, redirect = cfgdoc["ports"][0]["listeners"][0]["rules"]
    assert exact["match"] == {"path": {"type": "Exact", "value": "/x"},
                              "headers": [{"type": "Exact", "name": "x-a", "value": "1"}]}
    assert "timeouts" not in exact and "rule_name" not in exact
    assert [b["name"] for b in exact["backends"]] == ["app/web:80", "app/gone:80"]
    assert exact["backends"][0]["endpoints"] == [{"address": "10.0.0.1", "port": 8080},
                                                 {"address": "10.0.0.2", "port": 8080}]
    assert "endpoints" not in exact["backends"][1]
    assert "invalid" in exact["backends"][1]
    assert redirect["filters"] == {"redirect": {"scheme": "https", "status_code": 301}}
    assert "backends" not in redirect


def test_status_document_has_no_timestamps_or_observed_generation() -> None:
    text = json.dumps(status_document(_translation().statuses))
    assert "lastTransitionTime" not in text
    assert "observedGeneration" not in text


def test_invalid_listener_is_rendered_with_its_conditions() -> None:
    doc = document(_translation())
    listeners = {ls["name"]: ls for ls in doc["status"]["gateways"][0]["listeners"]}
    assert listeners["tcp"]["supportedKinds"] == []
    assert listeners["tcp"]["attachedRoutes"] == 0
    assert listeners["http"]["attachedRoutes"] == 1
    assert [p["port"] for p in doc["config"]["ports"]] == [80]


def test_empty_translation_renders_empty_lists() -> None:
    doc = document(translate(Snapshot()))
    assert doc == {"config": {}, "status": {"gatewayClasses": [], "gateways": [],
                                            "httpRoutes": []}}
