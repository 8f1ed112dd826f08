"""The pod runner (tests/e2e/podrunner.py) against the real lab: Deployments become Ready
Pods whose echo-basic processes answer in their own network namespaces.

Needs root (network namespaces) and an echo-basic binary: ``RAUTA_ECHO_BASIC``, else one
built here with Go from ``sigs.k8s.io/gateway-api/conformance@v1.6.3`` into the lab cache.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from tests.e2e.lab import REPO, Lab, find_go
from tests.e2e.netns import netns_unavailable
from tests.e2e.test_lab import new_namespace, wait_for

pytestmark = pytest.mark.timeout(180, func_only=True)

NODE = "rauta-lab-node"
ECHO_VERSION = "v1.6.3"


def _build_echo_basic() -> tuple[str | None, str]:
    root = Path(os.environ.get("RAUTA_LAB_CACHE") or Path.home() / ".cache" / "rauta-lab")
    d = root / f"echo-basic-{ECHO_VERSION}"
    binary = d / "bin" / "echo-basic"
    if os.access(binary, os.X_OK):
        return str(binary), ""
    go = find_go()
    if go is None:
        return None, "no Go toolchain to build echo-basic and RAUTA_ECHO_BASIC unset"
    mod = d / "mod"
    mod.mkdir(parents=True, exist_ok=True)
    (mod / "go.mod").write_text(
        "module rauta.dev/echobasic\n\ngo 1.26.0\n\nrequire (\n"
        f"\tsigs.k8s.io/gateway-api {ECHO_VERSION}\n"
        f"\tsigs.k8s.io/gateway-api/conformance {ECHO_VERSION}\n)\n")
    (mod / "tools.go").write_text('//go:build tools\n\npackage tools\n\n'
                                  'import _ "sigs.k8s.io/gateway-api/conformance/echo-basic"\n')
    env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0", GOMAXPROCS="1",
               PATH=f"{Path(go).parent}:{os.environ.get('PATH', '')}")
    for argv in (["go", "mod", "tidy"],
                 ["go", "build", "-p", "1", "-trimpath", "-ldflags=-s -w", "-buildvcs=false",
                  "-o", str(binary), "sigs.k8s.io/gateway-api/conformance/echo-basic"]):
        p = subprocess.run(argv, cwd=mod, env=env, capture_output=True, text=True, timeout=900,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            return None, f"{' '.join(argv)} failed: {p.stderr[-2000:]}"
    return str(binary), ""


@pytest.fixture(scope="module")
def echo_basic() -> str:
    if env := os.environ.get("RAUTA_ECHO_BASIC"):
        assert os.access(env, os.X_OK), f"RAUTA_ECHO_BASIC={env} is not executable"
        return env
    binary, why = _build_echo_basic()
    if binary is None:
        print(f"\n[podrunner] skipping: {why}", file=sys.stderr)
        pytest.skip(f"echo-basic unavailable: {why}")
    return binary


@pytest.fixture(scope="module")
def runner(lab: Lab, echo_basic: str) -> Iterator[dict[str, Any]]:
    if why := netns_unavailable():
        print(f"\n[podrunner] skipping: {why}", file=sys.stderr)
        pytest.skip(why)
    work = Path(tempfile.mkdtemp(prefix="rauta-podrunner-"))
    ready, log = work / "ready.json", work / "runner.log"
    fh = open(log, "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.podrunner", "--kubeconfig", str(lab.kubeconfig),
         "--echo-basic", echo_basic, "--state-dir", str(work / "state"),
         "--ready-file", str(ready)],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdin=subprocess.DEVNULL,
        stdout=fh, stderr=subprocess.STDOUT)
    fh.close()
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None, f"runner exited {proc.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"runner not ready:\n{log.read_text()}"
        time.sleep(0.1)
    info = json.loads(ready.read_text()) | {"log": log, "proc": proc, "state": work / "state"}
    try:
        yield info
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print(f"\n[podrunner] runner log tail:\n{log.read_text()[-3000:]}", file=sys.stderr)
        # Cleaned up at exit: no bridge, no pod namespaces of this runner left.
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        assert info["bridge"] not in links
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert f"rp{info['bridge'][3:]}-" not in netns, netns


def netns_of(runner: dict, uid: str) -> str:
    return f"rp{runner['bridge'][3:]}-{uid[:8]}"


def netns_pids(runner: dict, uid: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", netns_of(runner, uid)],
                         capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def get_json(ip: str, port: int, path: str = "/") -> dict:
    with urllib.request.urlopen(f"http://{ip}:{port}{path}", timeout=5) as r:
        return json.loads(r.read())


def cond(pod: Any, t: str) -> str | None:
    for c in pod.status.conditions or []:
        if c.type == t:
            return c.status
    return None


def deployment(name: str, image: str, replicas: int = 1, **spec: Any) -> dict:
    container = {"name": "c", "image": image, **spec.pop("container", {})}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [container], **spec}}}}


async def ready_pods(core: client.CoreV1Api, ns: str, app: str, n: int) -> list[Any] | None:
    pods = (await core.list_namespaced_pod(ns, label_selector=f"app={app}")).items
    pods = [p for p in pods if not p.metadata.deletion_timestamp]
    if len(pods) == n and all(cond(p, "Ready") == "True" for p in pods):
        return pods
    return None


async def test_node_registered(runner: dict, kube: client.ApiClient) -> None:
    node = await client.CoreV1Api(kube).read_node(NODE)
    assert [(a.type, a.address) for a in node.status.addresses] == [("InternalIP", "127.0.0.1")]
    assert node.status.daemon_endpoints.kubelet_endpoint.port == runner["logPort"]
    assert [(c.type, c.status) for c in node.status.conditions] == [("Ready", "True")]


async def test_deployment_with_env_and_secret_volume(runner: dict, kube: client.ApiClient) -> None:
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    disc = client.DiscoveryV1Api(kube)
    ns = await new_namespace(kube)
    await core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "data": {
        "token": base64.b64encode(b"s3cret").decode(),
        "tls.crt": base64.b64encode(b"CERT").decode()}})
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "cm"},
                                                 "data": {"color": "blue", "SIZE": "L"}})
    await core.create_namespaced_service(ns, {"metadata": {"name": "echo"}, "spec": {
        "selector": {"app": "echo"}, "ports": [{"port": 8080, "targetPort": 3000}]}})
    t0 = time.monotonic()
    await apps.create_namespaced_deployment(ns, deployment(
        "echo", "registry.k8s.io/gateway-api/echo-basic:v1.5.1", replicas=2,
        container={
            "ports": [{"containerPort": 3000}],
            "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NAMESPACE",
                 "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
                {"name": "COLOR",
                 "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "color"}}},
                {"name": "GREETING", "value": "$(COLOR)-$(TOKEN)-$$(COLOR)"},
                {"name": "CERT_FILE", "value": "/etc/secret-volume/crt"},
            ],
            "volumeMounts": [{"name": "secret-volume", "mountPath": "/etc/secret-volume"}]},
        volumes=[{"name": "secret-volume", "secret": {
            "secretName": "s", "items": [{"key": "tls.crt", "path": "crt"}]}}]))
    pods = await wait_for(lambda: ready_pods(core, ns, "echo", 2), 60, "2 Ready echo pods")
    took = time.monotonic() - t0
    print(f"\n[podrunner] 2 echo-basic pods Ready {took:.1f}s after the Deployment", file=sys.stderr)
    ips = set()
    for p in pods:
        assert p.spec.node_name == NODE
        assert p.status.phase == "Running"
        assert p.status.pod_ip == p.status.pod_ips[0].ip and p.status.host_ip == runner["hostIP"]
        assert {c.type for c in p.status.conditions} >= {
            "PodScheduled", "Initialized", "ContainersReady", "Ready"}
        cs = p.status.container_statuses[0]
        assert cs.ready and cs.state.running and cs.restart_count == 0
        body = get_json(p.status.pod_ip, 3000, "/hello")
        assert body["pod"] == p.metadata.name and body["namespace"] == ns, body
        assert body["path"] == "/hello"
        ips.add(p.status.pod_ip)
        env = dict(line.split("=", 1) for line in Path(
            f"/proc/{netns_pids(runner, p.metadata.uid)[0]}/environ"
        ).read_bytes().decode().split("\0") if "=" in line)
        assert env["TOKEN"] == "s3cret" and env["COLOR"] == "blue"
        assert env["CM_color"] == "blue" and env["CM_SIZE"] == "L"
        assert env["GREETING"] == "blue-s3cret-$(COLOR)"
        assert env["HOSTNAME"] == p.metadata.name
        assert env["CERT_FILE"] != "/etc/secret-volume/crt"
        assert Path(env["CERT_FILE"]).read_bytes() == b"CERT"

    async def slice_ready() -> Any:
        slices = await disc.list_namespaced_endpoint_slice(
            ns, label_selector="kubernetes.io/service-name=echo")
        got = {a for s in slices.items for e in s.endpoints or [] if e.conditions.ready
               for a in e.addresses}
        return got if got == ips else None

    await wait_for(slice_ready, 30, "EndpointSlice with both pod IPs ready")
    # From inside another pod's namespace: the pod network is namespace to namespace.
    other = netns_of(runner, pods[1].metadata.uid)
    out = subprocess.run(["ip", "netns", "exec", other, sys.executable, "-c",
                          "import urllib.request,sys;print(urllib.request.urlopen("
                          f"'http://{pods[0].status.pod_ip}:3000/x',timeout=5).read().decode())"],
                         capture_output=True, text=True, timeout=30)
    assert json.loads(out.stdout)["pod"] == pods[0].metadata.name, out.stderr
    # No default route inside a pod namespace.
    routes = subprocess.run(["ip", "-n", other, "route"], capture_output=True, text=True).stdout
    assert "default" not in routes, routes

    # pods/log through the API server to the runner's HTTPS endpoint.
    name = pods[0].metadata.name
    text = await core.read_namespaced_pod_log(name, ns, container="c")
    assert "Echoing back request made to /hello to client" in text, text
    text = await core.read_namespaced_pod_log(name, ns, container="c", tail_lines=1)
    assert text.count("\n") == 1, text


async def test_coredns_placeholder_ready_without_process(runner: dict,
                                                         kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    ns = await new_namespace(kube)
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "coredns"},
                                                 "data": {"Corefile": ". { forward . 8.8.8.8 }"}})
    await core.create_namespaced_pod(ns, {"metadata": {"name": "dns", "labels": {"app": "dns"}},
        "spec": {"containers": [{"name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.12.2",
                                 "args": ["-conf", "/root/Corefile"],
                                 "volumeMounts": [{"name": "cfg", "mountPath": "/root"}]}],
                 "volumes": [{"name": "cfg", "configMap": {"name": "coredns"}}]}})
    pods = await wait_for(lambda: ready_pods(core, ns, "dns", 1), 30, "coredns Ready")
    assert pods[0].status.phase == "Running" and pods[0].status.pod_ip
    assert netns_pids(runner, pods[0].metadata.uid) == []


async def test_unknown_image_stays_pending(runner: dict, kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    ns = await new_namespace(kube)
    await core.create_namespaced_pod(ns, {"metadata": {"name": "x"}, "spec": {
        "containers": [{"name": "c", "image": "docker.io/library/nginx:1.27"}]}})

    async def not_mapped() -> Any:
        p = await core.read_namespaced_pod("x", ns)
        cs = p.status.container_statuses or []
        return p if cs and cs[0].state.waiting and \
            cs[0].state.waiting.reason == "ImageNotMapped" else None

    p = await wait_for(not_mapped, 30, "ImageNotMapped")
    assert p.status.phase == "Pending" and cond(p, "Ready") == "False"
    assert p.spec.node_name == NODE


async def test_killed_container_restarts(runner: dict, kube: client.ApiClient) -> None:
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    ns = await new_namespace(kube)
    await apps.create_namespaced_deployment(ns, deployment(
        "r", "registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3"))
    (pod,) = await wait_for(lambda: ready_pods(core, ns, "r", 1), 60, "pod Ready")
    (pid,) = netns_pids(runner, pod.metadata.uid)
    os.kill(pid, signal.SIGKILL)

    async def restarted() -> Any:
        p = await core.read_namespaced_pod(pod.metadata.name, ns)
        cs = p.status.container_statuses[0]
        return p if cs.restart_count == 1 and cs.ready and cond(p, "Ready") == "True" else None

    p = await wait_for(restarted, 60, "restartCount 1 and Ready again")
    cs = p.status.container_statuses[0]
    assert cs.last_state.terminated.exit_code == 137
    (new_pid,) = netns_pids(runner, pod.metadata.uid)
    assert new_pid != pid
    assert get_json(p.status.pod_ip, 3000, "/again")["path"] == "/again"


async def test_deleted_pod_is_torn_down(runner: dict, kube: client.ApiClient) -> None:
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    ns = await new_namespace(kube)
    await apps.create_namespaced_deployment(ns, deployment(
        "d", "registry.k8s.io/gateway-api/echo-basic:v1.5.1"))
    (pod,) = await wait_for(lambda: ready_pods(core, ns, "d", 1), 60, "pod Ready")
    (pid,) = netns_pids(runner, pod.metadata.uid)
    await core.delete_namespaced_pod(pod.metadata.name, ns, grace_period_seconds=5)

    async def gone() -> bool:
        try:
            await core.read_namespaced_pod(pod.metadata.name, ns)
            return False
        except ApiException as e:
            return e.status == 404

    await wait_for(gone, 30, "pod object removed")
    assert not Path(f"/proc/{pid}").exists()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert netns_of(runner, pod.metadata.uid) not in netns
    # The ReplicaSet's replacement comes up on a fresh address.
    (new,) = await wait_for(lambda: ready_pods(core, ns, "d", 1), 60, "replacement Ready")
    assert new.metadata.uid != pod.metadata.uid and new.status.pod_ip != pod.status.pod_ip


async def test_pod_waits_for_secret_created_later(runner: dict, kube: client.ApiClient) -> None:
    """The conformance Setup creates TLS Secrets after the Deployments that mount them."""
    core = client.CoreV1Api(kube)
    ns = await new_namespace(kube)
    await core.create_namespaced_pod(ns, {"metadata": {"name": "tls", "labels": {"app": "tls"}},
        "spec": {"containers": [{
            "name": "c", "image": "registry.k8s.io/gateway-api/echo-basic:v1.5.1",
            "ports": [{"containerPort": 8443}],
            "env": [{"name": "TLS_SERVER_CERT", "value": "/etc/secret-volume/crt"},
                    {"name": "TLS_SERVER_PRIVKEY", "value": "/etc/secret-volume/key"}],
            "volumeMounts": [{"name": "secret-volume", "mountPath": "/etc/secret-volume"}]}],
            "volumes": [{"name": "secret-volume", "secret": {
                "secretName": "later", "items": [{"key": "tls.crt", "path": "crt"},
                                                 {"key": "tls.key", "path": "key"}]}}]}})

    async def waiting_for_mount() -> Any:
        p = await core.read_namespaced_pod("tls", ns)
        cs = p.status.container_statuses or []
        w = cs[0].state.waiting if cs else None
        return p if w and w.reason == "ContainerCreating" and "later" in (w.message or "") \
            else None

    p = await wait_for(waiting_for_mount, 30, "Pending on the missing Secret")
    assert p.status.phase == "Pending" and netns_pids(runner, p.metadata.uid) == []
    work = Path(tempfile.mkdtemp(prefix="rauta-podrunner-cert-"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(work / "k"),
                    "-out", str(work / "c"), "-days", "1", "-subj", "/CN=tls.example"],
                   check=True, capture_output=True, timeout=60)
    await core.create_namespaced_secret(ns, {"metadata": {"name": "later"}, "type": "kubernetes.io/tls",
        "data": {"tls.crt": base64.b64encode((work / "c").read_bytes()).decode(),
                 "tls.key": base64.b64encode((work / "k").read_bytes()).decode()}})
    (p,) = await wait_for(lambda: ready_pods(core, ns, "tls", 1), 60, "TLS pod Ready")
    import ssl
    ctx = ssl.create_default_context(cafile=str(work / "c"))
    ctx.check_hostname = False
    with urllib.request.urlopen(f"https://{p.status.pod_ip}:8443/tls", context=ctx,
                                timeout=5) as r:
        assert json.loads(r.read())["path"] == "/tls"


async def test_namespace_deletion_completes(runner: dict, kube: client.ApiClient) -> None:
    """The suite's cleanup deletes namespaces: the runner must finalise every kind of Pod."""
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    ns = await new_namespace(kube)
    await apps.create_namespaced_deployment(ns, deployment(
        "e", "registry.k8s.io/gateway-api/echo-basic:v1.5.1", replicas=2))
    await apps.create_namespaced_deployment(ns, deployment(
        "dns", "registry.k8s.io/coredns/coredns:v1.12.2"))
    await core.create_namespaced_pod(ns, {"metadata": {"name": "x"}, "spec": {
        "containers": [{"name": "c", "image": "docker.io/library/nginx:1.27"}]}})
    pods = await wait_for(lambda: ready_pods(core, ns, "e", 2), 60, "echo pods Ready")
    await wait_for(lambda: ready_pods(core, ns, "dns", 1), 60, "placeholder Ready")
    await core.delete_namespace(ns)

    async def gone() -> bool:
        try:
            await core.read_namespace(ns)
            return False
        except ApiException as e:
            return e.status == 404

    await wait_for(gone, 90, f"namespace {ns} deleted")
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for p in pods:
        assert netns_of(runner, p.metadata.uid) not in netns
