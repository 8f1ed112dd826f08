"""``rauta record`` against the real API server, and replay of what it recorded.

Objects are created and changed in the lab while ``rauta record`` runs; the recording must
be a valid scenario whose replay through the real reconciler and proxy ends with exactly the
config and statuses the pure model computes for the API server's final state, and Secret
data must be redacted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from rauta.model.render import config_document, status_document
from rauta.model.snapshot import Snapshot
from rauta.model.translate import translate
from rauta.replay import Runner
from rauta.scenario import Placeholders, free_port, load_scenario

pytestmark = pytest.mark.timeout(180, func_only=True)


def objects(ns: str, cls: str, controller: str, port: int) -> list[dict]:
    crt = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nnot-a-real-cert\n").decode()
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
         "metadata": {"name": cls}, "spec": {"controllerName": controller}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "gw", "namespace": ns},
         "spec": {"gatewayClassName": cls,
                  "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
         "spec": {"ports": [{"name": "http", "port": 80}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "web-1", "namespace": ns,
                      "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
         "endpoints": [{"addresses": ["10.244.77.2"], "conditions": {"ready": True}}]},
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
         "metadata": {"name": "tls", "namespace": ns},
         "data": {"tls.crt": crt, "tls.key": crt}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "web", "namespace": ns},
         "spec": {"parentRefs": [{"name": "gw"}],
                  "rules": [{"backendRefs": [{"name": "web", "port": 80}]},
                            {"matches": [{"path": {"value": "/missing"}}],
                             "backendRefs": [{"name": "nope", "port": 80}]}]}},
    ]


def path_of(obj: dict) -> str:
    from rauta.reconcile.kube import KINDS

    kind = KINDS[obj["kind"]]
    return kind.path(obj["metadata"].get("namespace"))


def test_record_then_replay_reproduces_config_and_statuses(lab, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    ns, cls = f"rec-{tag}", f"rec-{tag}"
    controller = f"rauta.io/rec-{tag}"
    port = free_port()
    out = tmp_path / "recorded.yaml"
    rec = subprocess.Popen([sys.executable, "-m", "rauta.cli", "record", "--kubeconfig",
                            str(lab.kubeconfig), "--out", str(out), "--duration", "12"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert out.exists(), "rauta record wrote nothing"
        objs = objects(ns, cls, controller, port)
        for obj in objs:
            status, body = lab.request("POST", path_of(obj), obj)
            assert status in (200, 201), body[:300]
        time.sleep(1.0)
        # A change and a delete after creation, recorded as later steps.
        route = objs[-1]
        status, body = lab.request("GET", path_of(route) + "/web")
        live = json.loads(body)
        live["spec"]["rules"] = live["spec"]["rules"][:1]
        status, body = lab.request("PUT", path_of(route) + "/web", live)
        assert status == 200, body[:300]
        status, _ = lab.request("DELETE", path_of(objs[4]) + "/web-1")
        assert status == 200
        assert rec.wait(40) == 0, rec.stderr.read().decode()[-2000:] if rec.stderr else ""
    finally:
        if rec.poll() is None:
            rec.kill()

    text = out.read_text()
    assert "not-a-real-cert" not in text
    assert base64.b64encode(b"-----BEGIN CERTIFICATE-----\nnot-a-real-cert\n").decode() not in text
    doc = yaml.safe_load(text)
    assert len(doc["steps"]) >= 2

    # The model's answer for the API server's final state (our objects only).
    final: list[dict] = []
    for kind_path, kind in (("/apis/gateway.networking.k8s.io/v1/gatewayclasses", "GatewayClass"),
                            (f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/gateways",
                             "Gateway"),
                            (f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes",
                             "HTTPRoute"),
                            (f"/api/v1/namespaces/{ns}/services", "Service"),
                            (f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
                             "EndpointSlice")):
        status, body = lab.request("GET", kind_path)
        for item in json.loads(body)["items"]:
            item["kind"] = kind
            final.append(item)
    want = translate(Snapshot.from_dicts(final), controller_name=controller)

    async def replay() -> Runner:
        scenario = load_scenario(text, Placeholders(), str(out))
        runner = Runner(scenario, Placeholders(), out=lambda _: None)
        runner.reconciler.controller_name = controller
        runner.sink.controller_name = controller
        await runner.run()
        return runner

    runner = asyncio.run(replay())
    assert config_document(runner.reconciler.config) == config_document(want.config)
    got_statuses = translate(runner.reconciler.store.snapshot(), controller_name=controller)
    assert status_document(got_statuses.statuses) == status_document(want.statuses)
    route_status = runner.sink.status[("HTTPRoute", ns, "web")]
    assert [c["type"] for c in route_status["parents"][0]["conditions"]] == [
        "Accepted", "ResolvedRefs"]
    lab.request("DELETE", f"/api/v1/namespaces/{ns}")
    lab.request("DELETE", f"/apis/gateway.networking.k8s.io/v1/gatewayclasses/{cls}")
