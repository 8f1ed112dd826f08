"""The lab itself, against the real API server: Gateway API CRDs served and validating,
and the real EndpointSlice controller turning Service + ready Pod into an EndpointSlice.

These pin down the API-server behaviour that rauta's fake-store tests assume.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from tests.e2e.lab import Lab

# func_only: the session fixture (which may build the lab cold) is not counted.
pytestmark = pytest.mark.timeout(120, func_only=True)

GROUP = "gateway.networking.k8s.io"


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def wait_for(fn: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll the async ``fn`` until it returns something truthy, at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await fn()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")


async def new_namespace(kube: client.ApiClient) -> str:
    name = uid("lab")
    await client.CoreV1Api(kube).create_namespace({"metadata": {"name": name}})
    return name


# ---------------------------------------------------------------- CRDs


@pytest.mark.parametrize(("version", "resources"), [
    ("v1", {"gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants"}),
    ("v1beta1", {"referencegrants"}),
])
def test_gateway_api_crds_are_served(lab: Lab, version: str, resources: set[str]) -> None:
    status, body = lab.request("GET", f"/apis/{GROUP}/{version}")
    assert status == 200, body
    served = {r["name"] for r in json.loads(body)["resources"]}
    assert resources <= served, served


def test_crds_are_standard_channel(lab: Lab) -> None:
    status, body = lab.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    assert status == 200
    channels = {c["metadata"]["name"]: c["metadata"]["annotations"].get(
        "gateway.networking.k8s.io/channel") for c in json.loads(body)["items"]
        if c["spec"]["group"] == GROUP}
    assert "httproutes.gateway.networking.k8s.io" in channels
    assert set(channels.values()) == {"standard"}, channels


@pytest.mark.asyncio
async def test_create_gateway_and_httproute(kube: client.ApiClient) -> None:
    co = client.CustomObjectsApi(kube)
    ns = await new_namespace(kube)
    gc = uid("gc")
    await co.create_cluster_custom_object(GROUP, "v1", "gatewayclasses", {
        "apiVersion": f"{GROUP}/v1", "kind": "GatewayClass", "metadata": {"name": gc},
        "spec": {"controllerName": "rauta.io/gateway-controller"}})
    await co.create_namespaced_custom_object(GROUP, "v1", ns, "gateways", {
        "apiVersion": f"{GROUP}/v1", "kind": "Gateway", "metadata": {"name": "gw"},
        "spec": {"gatewayClassName": gc,
                 "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}})
    await co.create_namespaced_custom_object(GROUP, "v1", ns, "httproutes", {
        "apiVersion": f"{GROUP}/v1", "kind": "HTTPRoute", "metadata": {"name": "r"},
        "spec": {"parentRefs": [{"name": "gw"}],
                 "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}]}})

    route = await co.get_namespaced_custom_object(GROUP, "v1", ns, "httproutes", "r")
    rule = route["spec"]["rules"][0]
    # Defaults come from the CRD schema, applied by the real API server.
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["backendRefs"][0]["weight"] == 1
    assert route["spec"]["parentRefs"][0]["group"] == GROUP
    assert route["spec"]["parentRefs"][0]["kind"] == "Gateway"
    gw = await co.get_namespaced_custom_object(GROUP, "v1", ns, "gateways", "gw")
    assert gw["spec"]["listeners"][0]["port"] == 8080
    await co.delete_cluster_custom_object(GROUP, "v1", "gatewayclasses", gc)


@pytest.mark.asyncio
@pytest.mark.parametrize(("why", "rule"), [
    ("path without leading slash",
     {"matches": [{"path": {"type": "PathPrefix", "value": "foo"}}],
      "backendRefs": [{"name": "svc", "port": 80}]}),
    ("weight above 1000000",
     {"backendRefs": [{"name": "svc", "port": 80, "weight": 1000001}]}),
    ("port out of range",
     {"backendRefs": [{"name": "svc", "port": 70000}]}),
    ("unknown path match type",
     {"matches": [{"path": {"type": "Glob", "value": "/x"}}]}),
])
async def test_crd_invalid_httproute_is_rejected(kube: client.ApiClient, why: str,
                                                 rule: dict[str, Any]) -> None:
    ns = await new_namespace(kube)
    with pytest.raises(ApiException) as err:
        await client.CustomObjectsApi(kube).create_namespaced_custom_object(
            GROUP, "v1", ns, "httproutes", {
                "apiVersion": f"{GROUP}/v1", "kind": "HTTPRoute", "metadata": {"name": "bad"},
                "spec": {"parentRefs": [{"name": "gw"}], "rules": [rule]}})
    assert err.value.status == 422, (why, err.value.body)


# ---------------------------------------------------------------- EndpointSlices


@pytest.mark.asyncio
async def test_endpointslice_controller_publishes_ready_pod(kube: client.ApiClient) -> None:
    core, disc = client.CoreV1Api(kube), client.DiscoveryV1Api(kube)
    ns = await new_namespace(kube)
    node = uid("node")
    await core.create_node({"metadata": {"name": node}})
    await core.create_namespaced_service(ns, {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    await core.create_namespaced_pod(ns, {
        "metadata": {"name": "web-0", "labels": {"app": "web"}},
        "spec": {"nodeName": node,
                 "containers": [{"name": "c", "image": "registry.invalid/none:1",
                                 "ports": [{"containerPort": 8080}]}]}})
    # No kubelet: write the status a kubelet would.
    pod = await core.read_namespaced_pod("web-0", ns)
    now = pod.metadata.creation_timestamp
    pod.status = client.V1PodStatus(
        phase="Running", pod_ip="10.244.1.7", pod_ips=[client.V1PodIP(ip="10.244.1.7")],
        host_ip="10.0.0.5", start_time=now,
        conditions=[client.V1PodCondition(type=t, status="True", last_transition_time=now)
                    for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")])
    await core.replace_namespaced_pod_status("web-0", ns, pod)

    async def slice_with_endpoint() -> Any:
        slices = await disc.list_namespaced_endpoint_slice(
            ns, label_selector="kubernetes.io/service-name=web")
        for s in slices.items:
            for ep in s.endpoints or []:
                if "10.244.1.7" in ep.addresses and ep.conditions.ready:
                    return s
        return None

    s = await wait_for(slice_with_endpoint, 30, "EndpointSlice for web")
    assert s.address_type == "IPv4"
    assert s.metadata.labels["endpointslice.kubernetes.io/managed-by"] == \
        "endpointslice-controller.k8s.io"
    assert [(p.name, p.port, p.protocol) for p in s.ports] == [("http", 8080, "TCP")]
    ep = s.endpoints[0]
    assert ep.node_name == node
    assert ep.target_ref.kind == "Pod" and ep.target_ref.name == "web-0"

    # Not ready any more -> the controller flips the endpoint's condition.
    pod = await core.read_namespaced_pod_status("web-0", ns)
    for c in pod.status.conditions:
        if c.type in ("Ready", "ContainersReady"):
            c.status = "False"
    await core.replace_namespaced_pod_status("web-0", ns, pod)

    async def endpoint_not_ready() -> bool:
        slices = await disc.list_namespaced_endpoint_slice(
            ns, label_selector="kubernetes.io/service-name=web")
        eps = [ep for s in slices.items for ep in s.endpoints or []]
        return bool(eps) and all(ep.conditions.ready is False for ep in eps)

    await wait_for(endpoint_not_ready, 30, "endpoint to turn not-ready")
    await core.delete_node(node)


@pytest.mark.asyncio
async def test_endpointslice_created_directly_is_accepted(kube: client.ApiClient) -> None:
    disc = client.DiscoveryV1Api(kube)
    ns = await new_namespace(kube)
    body = {
        "metadata": {"name": "manual-1", "labels": {
            "kubernetes.io/service-name": "manual",
            "endpointslice.kubernetes.io/managed-by": "rauta-tests"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.2.9"], "conditions": {"ready": True}},
                      {"addresses": ["10.244.2.10"], "conditions": {"ready": False}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }
    await disc.create_namespaced_endpoint_slice(ns, body)
    got = await disc.read_namespaced_endpoint_slice("manual-1", ns)
    assert [e.addresses for e in got.endpoints] == [["10.244.2.9"], ["10.244.2.10"]]
    assert [e.conditions.ready for e in got.endpoints] == [True, False]

    bad = dict(body, metadata={"name": "manual-bad"},
               endpoints=[{"addresses": ["not-an-ip"]}])
    with pytest.raises(ApiException) as err:
        await disc.create_namespaced_endpoint_slice(ns, bad)
    assert err.value.status == 422


@pytest.mark.asyncio
async def test_namespace_deletion_completes(kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    ns = await new_namespace(kube)
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "cm"}})
    await core.delete_namespace(ns)

    async def gone() -> bool:
        try:
            await core.read_namespace(ns)
        except ApiException as e:
            return e.status == 404
        return False

    await wait_for(gone, 60, f"namespace {ns} to be deleted")
