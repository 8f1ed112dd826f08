"""The per-Gateway Service writer (rauta.reconcile.servicesink) against an in-memory API
server that keeps Services like the real one (resourceVersion checks, 409 on a second
create, 404 on a missing object), and the reconciler's hand-over of the desired Services,
plus the store's field validation (``--strict`` of ``rauta controller``)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from rauta.model.services import CONTROLLER_ANNOTATION, GATEWAY_NAME_LABEL, ServiceMode
from rauta.model.status import Applied
from rauta.reconcile.kube import ApiError
from rauta.reconcile.reconciler import Reconciler, StatusChanges
from rauta.reconcile.servicesink import KubeServiceSink, is_managed
from rauta.reconcile.store import Event, ObjectStore

CTL = "rauta.io/gateway-controller"
BASE = "/api/v1/namespaces/default/services"


def svc(name: str = "gw", target: int = 10000, **labels: str) -> dict[str, Any]:
    """A Service as the model renders it for Gateway ``default/<name>``."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"{name}-rauta", "namespace": "default",
                         "labels": {GATEWAY_NAME_LABEL: name, **labels},
                         "annotations": {CONTROLLER_ANNOTATION: CTL},
                         "ownerReferences": [{"apiVersion": "gateway.networking.k8s.io/v1",
                                              "kind": "Gateway", "name": name, "uid": "u",
                                              "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": {"type": "LoadBalancer", "selector": {"app": "rauta"},
                     "ports": [{"name": "p80", "protocol": "TCP", "port": 80,
                                "targetPort": target}]}}


class FakeApi:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.rv = 1

    def list(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for o in self.objects.values()]

    async def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> Any:
        self.calls.append((method, path))
        self.rv += 1
        if method == "POST":
            full = f"{path}/{body['metadata']['name']}"
            if full in self.objects:
                raise ApiError(409, {"message": "already exists"})
            obj = copy.deepcopy(body)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            obj["spec"]["clusterIP"] = "10.96.0.9"  # the API server's own field
            self.objects[full] = obj
            return obj
        current = self.objects.get(path)
        if current is None:
            raise ApiError(404, {"message": "not found"})
        if method == "PUT":
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise ApiError(409, {"message": "conflict"})
            obj = copy.deepcopy(body)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[path] = obj
            return obj
        if method == "DELETE":
            del self.objects[path]
            return {}
        raise AssertionError(method)


def sink_for(api: FakeApi, leader: bool = True) -> KubeServiceSink:
    return KubeServiceSink(api, controller_name=CTL, existing=api.list,
                           is_leader=lambda: leader)


async def test_create_then_equal_is_not_written_again() -> None:
    api = FakeApi()
    sink = sink_for(api)
    sink.update([svc()])
    await sink.flush(5)
    assert api.calls == [("POST", BASE)]
    assert api.objects[f"{BASE}/gw-rauta"]["spec"]["ports"][0]["targetPort"] == 10000
    sink.update([svc()])  # the same desired Service again: nothing to write
    await sink.flush(5)
    assert api.calls == [("POST", BASE)]
    await sink.close()


async def test_update_keeps_fields_others_own_and_delete_removes() -> None:
    api = FakeApi()
    sink = sink_for(api)
    sink.update([svc()])
    await sink.flush(5)
    sink.update([svc(target=10001, tier="edge")])
    await sink.flush(5)
    live = api.objects[f"{BASE}/gw-rauta"]
    assert live["spec"]["ports"][0]["targetPort"] == 10001
    assert live["metadata"]["labels"]["tier"] == "edge"
    assert live["spec"]["clusterIP"] == "10.96.0.9"
    assert api.calls[-1] == ("PUT", f"{BASE}/gw-rauta")
    sink.update([])
    await sink.flush(5)
    assert api.calls[-1] == ("DELETE", f"{BASE}/gw-rauta") and not api.objects
    await sink.close()


async def test_services_that_are_not_ours_are_never_touched() -> None:
    api = FakeApi()
    other = svc("x")
    other["metadata"]["annotations"] = {CONTROLLER_ANNOTATION: "example.net/else"}
    api.objects[f"{BASE}/x-rauta"] = {**other, "metadata": {**other["metadata"],
                                                            "resourceVersion": "1"}}
    plain = svc("y")
    del plain["metadata"]["ownerReferences"]
    api.objects[f"{BASE}/y-rauta"] = plain
    assert not is_managed(other, CTL) and not is_managed(plain, CTL)
    assert is_managed(svc(), CTL)
    sink = sink_for(api)
    sink.update([])
    await sink.flush(5)
    assert api.calls == [] and len(api.objects) == 2
    await sink.close()


async def test_only_the_leader_writes_and_a_new_leader_resyncs() -> None:
    api = FakeApi()
    leading = False
    sink = KubeServiceSink(api, controller_name=CTL, existing=api.list,
                           is_leader=lambda: leading)
    sink.update([svc()])
    await sink.flush(5)
    assert api.calls == []
    leading = True
    await sink.resync()
    await sink.flush(5)
    assert api.calls == [("POST", BASE)]
    await sink.close()


async def test_races_with_the_watch_are_not_errors() -> None:
    api = FakeApi()
    stale: list[dict[str, Any]] = []  # the watch has not delivered anything yet
    sink = KubeServiceSink(api, controller_name=CTL, existing=lambda: stale)
    api.objects[f"{BASE}/gw-rauta"] = {**svc(), "metadata": {**svc()["metadata"],
                                                            "resourceVersion": "1"}}
    sink.update([svc()])  # creates what exists already: 409, benign
    await sink.flush(5)
    assert sink.retry_delay == 1.0  # no retry scheduled
    assert sink.metric.labels("create", "raced")._value.get() == 1
    await sink.close()


class FakeProxy:
    async def apply(self, config: Any, tls: Any) -> Applied:
        return Applied(ports=tuple(p.port for p in config.ports))


class NullSink:
    async def write(self, changes: StatusChanges) -> None:
        return None


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def update(self, desired: Any) -> None:
        self.seen.append(tuple(desired))


GATEWAY = {"kind": "Gateway", "metadata": {"name": "gw", "namespace": "default", "uid": "u"},
           "spec": {"gatewayClassName": "rauta",
                    "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}
CLASS = {"kind": "GatewayClass", "metadata": {"name": "rauta"},
         "spec": {"controllerName": CTL}}


async def test_reconciler_hands_the_desired_services_over() -> None:
    rec = Recorder()
    r = Reconciler(FakeProxy(), NullSink(), gateway_services=ServiceMode(
        port_range=(10000, 10009), selector=(("app", "rauta"),)), service_sink=rec)
    r.submit([Event("ADDED", CLASS), Event("ADDED", GATEWAY)])
    await r.reconcile()
    (desired,) = rec.seen[-1]
    assert desired == svc()
    assert [(p.port, p.public_port) for p in r.config.ports] == [(10000, 80)]


def test_store_keeps_a_generated_services_load_balancer_status() -> None:
    store = ObjectStore()
    store.apply(Event("ADDED", svc()))
    with_lb = {**svc(), "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}
    assert store.apply(Event("MODIFIED", with_lb))  # a change the model must see
    plain = {"kind": "Service", "metadata": {"name": "web", "namespace": "default"},
             "spec": {"ports": [{"port": 80}]}}
    store.apply(Event("ADDED", plain))
    assert not store.apply(Event("MODIFIED", {**plain, "status": {"loadBalancer": {
        "ingress": [{"ip": "192.0.2.2"}]}}}))  # not generated: status is not an input


def test_store_field_check_warns_and_strict_refuses() -> None:
    typo = copy.deepcopy(GATEWAY)
    typo["spec"]["listeners"][0]["hostnam"] = "a.example"
    warn = ObjectStore(check_fields=True)
    assert warn.apply(Event("ADDED", typo))
    assert warn.warnings[("Gateway", "default", "gw")] == (
        'Gateway default/gw: unknown field "spec.listeners[0].hostnam"',)
    strict = ObjectStore(check_fields=True, strict=True)
    assert strict.apply(Event("ADDED", GATEWAY))
    assert not strict.apply(Event("MODIFIED", typo))  # the last good version is kept
    assert "--strict" in strict.errors[("Gateway", "default", "gw")]
    assert ObjectStore().apply(Event("ADDED", typo))  # no check: as before


def test_store_keeps_the_latest_resource_version_of_an_equal_object() -> None:
    """A write of a generated Service carries the stored resourceVersion: a newer version
    that changes nothing the model reads must still replace it (else every PUT is 409)."""
    store = ObjectStore()
    first = {**svc(), "metadata": {**svc()["metadata"], "resourceVersion": "5"}}
    store.apply(Event("ADDED", first))
    newer = {**svc(), "metadata": {**svc()["metadata"], "resourceVersion": "9"}}
    assert not store.apply(Event("MODIFIED", newer))  # no change for the model
    assert store.raw[("Service", "default", "gw-rauta")]["metadata"]["resourceVersion"] == "9"


async def test_a_new_leader_deletes_nothing_before_the_first_pass() -> None:
    """Taking the Lease right after start-up (resync) before any reconcile pass must not
    read "nothing desired yet" as "delete every generated Service"."""
    api = FakeApi()
    api.objects[f"{BASE}/gw-rauta"] = {**svc(), "metadata": {**svc()["metadata"],
                                                            "resourceVersion": "1"}}
    sink = sink_for(api)
    await sink.resync()
    await sink.flush(5)
    assert api.calls == [] and f"{BASE}/gw-rauta" in api.objects
    sink.update([svc()])  # the first pass wants it as it is: still nothing to write
    await sink.flush(5)
    assert api.calls == []
    await sink.close()


async def test_a_lost_update_is_tried_again_with_the_newer_version() -> None:
    """An update that meets a newer resourceVersion (409) runs again a second later,
    with what the watch brought meanwhile, even if no reconcile pass asks for it."""
    api = FakeApi()
    sink = KubeServiceSink(api, controller_name=CTL, existing=api.list, retry_delay=1.0)
    sink.update([svc()])
    await sink.flush(5)
    live = api.objects[f"{BASE}/gw-rauta"]
    seen = copy.deepcopy(live)  # what the watch delivered
    live["metadata"]["resourceVersion"] = "999"  # someone else wrote since
    sink.existing = lambda: [seen]
    sink.update([svc(target=10001)])
    await sink.flush(5)
    assert live["spec"]["ports"][0]["targetPort"] == 10000  # lost the race
    sink.existing = api.list  # the watch catches up, without a change the model sees
    for _ in range(40):
        await asyncio.sleep(0.1)
        if api.objects[f"{BASE}/gw-rauta"]["spec"]["ports"][0]["targetPort"] == 10001:
            break
    assert api.objects[f"{BASE}/gw-rauta"]["spec"]["ports"][0]["targetPort"] == 10001
    await sink.close()
