"""Parsing of Kubernetes / Gateway API objects (rauta.model.resources)."""

from __future__ import annotations

import pydantic
import pytest

from rauta.model.resources import (
    GATEWAY_GROUP,
    NAMESPACED,
    EndpointSlice,
    Gateway,
    HTTPRoute,
    LabelSelector,
    ResourceError,
    Secret,
    parse_object,
)


def _gateway(**listener: object) -> dict:
    lis = {"name": "http", "port": 80, "protocol": "HTTP", **listener}
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "infra"},
        "spec": {"gatewayClassName": "rauta", "listeners": [lis]},
    }


def _route(spec: dict) -> dict:
    return {"kind": "HTTPRoute", "metadata": {"name": "web", "namespace": "app"}, "spec": spec}


# --------------------------------------------------------------------------- wire format


def test_camel_case_wire_names_map_to_snake_case_fields() -> None:
    gw = parse_object(_gateway(allowedRoutes={"namespaces": {"from": "All"}}))
    assert isinstance(gw, Gateway)
    assert gw.spec.gateway_class_name == "rauta"
    assert gw.spec.listeners[0].allowed_routes.namespaces.from_ == "All"


def test_route_camel_case_nested_fields_parse() -> None:
    r = parse_object(_route({
        "parentRefs": [{"name": "gw", "sectionName": "http", "port": 80}],
        "rules": [{"matches": [{"queryParams": [{"name": "q", "value": "1"}]}],
                   "backendRefs": [{"name": "svc", "port": 80}],
                   "timeouts": {"backendRequest": "1s"}}],
    }))
    assert isinstance(r, HTTPRoute)
    assert r.spec.parent_refs[0].section_name == "http"
    assert r.spec.rules[0].matches[0].query_params[0].name == "q"
    assert r.spec.rules[0].timeouts is not None
    assert r.spec.rules[0].timeouts.backend_request == "1s"


def test_unknown_fields_are_ignored_everywhere() -> None:
    obj = _gateway(futureField={"x": 1})
    obj["status"] = {"conditions": []}
    obj["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    obj["spec"]["infrastructure"] = {"labels": {"a": "b"}}
    gw = parse_object(obj)
    assert gw.spec.listeners[0].name == "http"


def test_resources_are_frozen_assignment_raises() -> None:
    gw = parse_object(_gateway())
    with pytest.raises(pydantic.ValidationError):
        gw.spec.listeners[0].port = 81  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        gw.metadata.name = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- CRD defaults


def test_allowed_routes_defaults_to_from_same_with_no_kinds() -> None:
    lis = parse_object(_gateway()).spec.listeners[0]
    assert lis.allowed_routes.namespaces.from_ == "Same"
    assert lis.allowed_routes.namespaces.selector is None
    assert lis.allowed_routes.kinds == ()


def test_route_group_kind_group_defaults_to_gateway_group() -> None:
    lis = parse_object(_gateway(allowedRoutes={"kinds": [{"kind": "HTTPRoute"}]})).spec.listeners[0]
    assert lis.allowed_routes.kinds[0].group == GATEWAY_GROUP


def test_backend_ref_defaults_weight_1_core_group_kind_service() -> None:
    ref = parse_object(_route({"rules": [{"backendRefs": [{"name": "svc", "port": 80}]}]}))
    b = ref.spec.rules[0].backend_refs[0]
    assert (b.weight, b.group, b.kind, b.namespace) == (1, "", "Service", None)


def test_rule_without_matches_defaults_to_path_prefix_slash() -> None:
    r = parse_object(_route({"rules": [{"backendRefs": [{"name": "svc", "port": 80}]}]}))
    (m,) = r.spec.rules[0].matches
    assert (m.path.type, m.path.value) == ("PathPrefix", "/")
    assert (m.headers, m.query_params, m.method) == ((), (), None)


def test_match_without_path_defaults_to_path_prefix_slash() -> None:
    r = parse_object(_route({"rules": [{"matches": [{"method": "GET"}]}]}))
    m = r.spec.rules[0].matches[0]
    assert (m.path.type, m.path.value, m.method) == ("PathPrefix", "/", "GET")


def test_route_without_spec_has_one_default_rule_and_no_parents() -> None:
    r = parse_object({"kind": "HTTPRoute", "metadata": {"name": "web"}})
    assert r.spec.parent_refs == ()
    assert len(r.spec.rules) == 1
    assert r.spec.rules[0].matches[0].path.value == "/"


def test_parent_ref_defaults_gateway_kind_and_group() -> None:
    r = parse_object(_route({"parentRefs": [{"name": "gw"}]}))
    p = r.spec.parent_refs[0]
    assert (p.group, p.kind, p.namespace, p.section_name, p.port) == (
        GATEWAY_GROUP, "Gateway", None, None, None)


def test_request_redirect_status_code_defaults_to_302() -> None:
    r = parse_object(_route({"rules": [{"filters": [
        {"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}]}]}))
    redirect = r.spec.rules[0].filters[0].request_redirect
    assert redirect is not None and redirect.status_code == 302


def test_header_match_type_defaults_to_exact_and_tls_mode_to_terminate() -> None:
    r = parse_object(_route({"rules": [{"matches": [{"headers": [{"name": "x", "value": "1"}]}]}]}))
    assert r.spec.rules[0].matches[0].headers[0].type == "Exact"
    gw = parse_object(_gateway(protocol="HTTPS", tls={"certificateRefs": [{"name": "c"}]}))
    tls = gw.spec.listeners[0].tls
    assert tls is not None and tls.mode == "Terminate"
    assert (tls.certificate_refs[0].group, tls.certificate_refs[0].kind) == ("", "Secret")


def test_unsupported_listener_protocol_is_not_a_parse_error() -> None:
    gw = parse_object(_gateway(protocol="TCP"))
    assert gw.spec.listeners[0].protocol == "TCP"


# --------------------------------------------------------------------------- errors


def test_resource_error_is_one_line_naming_kind_ns_name_and_field_path() -> None:
    with pytest.raises(ResourceError) as info:
        parse_object(_route({"rules": [{"backendRefs": [{"port": 80}]}]}))
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("HTTPRoute app/web: spec.rules[0].backendRefs[0].name: ")
    assert info.value.field == "spec.rules[0].backendRefs[0].name"
    assert info.value.kind == "HTTPRoute"
    assert info.value.ident == "app/web"


def test_resource_error_for_bad_enum_names_the_camel_case_path() -> None:
    with pytest.raises(ResourceError) as info:
        parse_object(_gateway(allowedRoutes={"namespaces": {"from": "Everywhere"}}))
    assert info.value.field == "spec.listeners[0].allowedRoutes.namespaces.from"
    assert "\n" not in str(info.value)


def test_resource_error_for_port_out_of_range() -> None:
    with pytest.raises(ResourceError) as info:
        parse_object(_gateway(port=0))
    assert info.value.field == "spec.listeners[0].port"


def test_unsupported_kind_and_missing_kind_and_non_mapping_are_resource_errors() -> None:
    with pytest.raises(ResourceError, match="unsupported kind 'TCPRoute'"):
        parse_object({"kind": "TCPRoute", "metadata": {"name": "x"}})
    with pytest.raises(ResourceError, match="kind: missing"):
        parse_object({"metadata": {"name": "x"}})
    with pytest.raises(ResourceError, match="expected a mapping, got list"):
        parse_object([1, 2])


# --------------------------------------------------------------------------- Secret, namespaces


def test_secret_keeps_only_data_key_names_never_key_material() -> None:
    s = parse_object({
        "kind": "Secret",
        "metadata": {"name": "cert", "namespace": "infra"},
        "type": "kubernetes.io/tls",
        "data": {"tls.key": "UFJJVkFURS1LRVk=", "tls.crt": "Q0VSVA=="},
        "stringData": {"ca.crt": "PLAINTEXT-CA"},
    })
    assert isinstance(s, Secret)
    assert s.data_keys == ("ca.crt", "tls.crt", "tls.key")
    assert s.type == "kubernetes.io/tls"
    dumped = repr(s.model_dump())
    for material in ("UFJJVkFURS1LRVk=", "Q0VSVA==", "PLAINTEXT-CA"):
        assert material not in dumped
    assert not hasattr(s, "data")


def test_namespaced_kinds_default_to_namespace_default() -> None:
    assert NAMESPACED == {"Gateway", "HTTPRoute", "ReferenceGrant", "Service", "EndpointSlice",
                          "Secret"}
    svc = parse_object({"kind": "Service", "metadata": {"name": "s"}})
    assert svc.metadata.namespace == "default"
    sec = parse_object({"kind": "Secret", "metadata": {"name": "s"}})
    assert sec.metadata.namespace == "default"


def test_cluster_scoped_kinds_keep_empty_namespace() -> None:
    gc = parse_object({"kind": "GatewayClass", "metadata": {"name": "c"},
                       "spec": {"controllerName": "x/y"}})
    ns = parse_object({"kind": "Namespace", "metadata": {"name": "team"}})
    assert gc.metadata.namespace == "" and ns.metadata.namespace == ""


def test_endpoint_slice_service_name_comes_from_label() -> None:
    eps = parse_object({"kind": "EndpointSlice",
                        "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
                        "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}]})
    assert isinstance(eps, EndpointSlice)
    assert eps.service_name == "web"
    assert eps.endpoints[0].conditions.ready is None
    assert eps.ports is None


# --------------------------------------------------------------------------- LabelSelector


def _sel(**kw: object) -> LabelSelector:
    return LabelSelector.model_validate(kw)


def test_empty_label_selector_matches_everything() -> None:
    assert _sel().matches({}) and _sel().matches({"a": "b"})


def test_match_labels_all_must_be_equal() -> None:
    s = _sel(matchLabels={"team": "a", "env": "prod"})
    assert s.matches({"team": "a", "env": "prod", "extra": "x"})
    assert not s.matches({"team": "a"})
    assert not s.matches({"team": "a", "env": "dev"})


@pytest.mark.parametrize(("operator", "values", "labels", "expected"), [
    ("In", ["a", "b"], {"k": "a"}, True),
    ("In", ["a", "b"], {"k": "c"}, False),
    ("In", ["a"], {}, False),
    ("NotIn", ["a"], {"k": "b"}, True),
    ("NotIn", ["a"], {"k": "a"}, False),
    ("NotIn", ["a"], {}, True),  # Kubernetes: an absent key satisfies NotIn
    ("Exists", [], {"k": ""}, True),
    ("Exists", [], {}, False),
    ("DoesNotExist", [], {}, True),
    ("DoesNotExist", [], {"k": "x"}, False),
])
def test_match_expressions_follow_kubernetes_semantics(
        operator: str, values: list[str], labels: dict[str, str], expected: bool) -> None:
    s = _sel(matchExpressions=[{"key": "k", "operator": operator, "values": values}])
    assert s.matches(labels) is expected


def test_match_labels_and_expressions_are_anded() -> None:
    s = _sel(matchLabels={"team": "a"},
             matchExpressions=[{"key": "env", "operator": "In", "values": ["prod"]}])
    assert s.matches({"team": "a", "env": "prod"})
    assert not s.matches({"team": "b", "env": "prod"})
    assert not s.matches({"team": "a", "env": "dev"})
