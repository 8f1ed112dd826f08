"""The kind tier: rauta's image on a real kind cluster (for machines with Docker).

Role: what the lab cannot show, because the lab has no kubelet and no container runtime:
the Dockerfile builds, the image runs as deploy/ runs it (non-root, read-only root
filesystem, no capability, listeners on 80/443 through the pod's
``net.ipv4.ip_unprivileged_port_start`` sysctl), both replicas become Ready on /readyz, one
holds the Lease, the examples reach Accepted/Programmed and traffic follows them.

Versions it was written for (README "Deploying to a cluster"): kind v0.33.0
(tools/kind/go.mod, built by ``BUILD_KIND=1 scripts/build-tools.sh``), its default node
image ``kindest/node:v1.37.0@sha256:a1ed56cf...`` (read from kind's
pkg/apis/config/defaults/image.go), Gateway API v1.6.3 standard-channel CRDs (lab/go.mod),
kubectl v1.36.3 (tools/kubectl/go.mod).

Rules:
- Runs only where ``docker info`` succeeds; anywhere else every test skips with the
  printed reason (this is the case on rauta's CI machine: no container runtime).
- The cluster uses pytest-kind's ``KindCluster`` with the kind and kubectl built by
  scripts/build-tools.sh (no download of either); the node pulls the echo backend image
  (registry.k8s.io/gateway-api/echo-basic) itself.
- The observer DaemonSet part runs only with ``RAUTA_KIND_OBSERVER=1`` (it needs a node
  kernel with BTF/headers and the ``rauta observe`` command, which is still being built);
  it applies deploy/overlays/observer and drives scapy TCP packets at the node's eth0.
- The cluster is deleted afterwards unless ``RAUTA_KIND_KEEP=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800, func_only=True)]

REPO = Path(__file__).resolve().parents[3]
KIND_NODE_IMAGE = ("kindest/node:v1.37.0@sha256:"
                   "a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5")
IMAGE, OBSERVER_IMAGE = "rauta:0.1.0", "rauta-observer:0.1.0"
CLUSTER = "rauta-e2e"
EXAMPLES = ["quickstart.yaml", "canary.yaml", "header-routing.yaml", "https.yaml",
            "cross-namespace.yaml"]


def say(msg: str) -> None:
    print(f"[rauta-kind] {msg}", file=sys.stderr, flush=True)


def docker_unavailable() -> str | None:
    """None when a Docker daemon answers here, else why not."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker command (the kind tier needs Docker)"
    proc = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        return f"docker info failed: {proc.stderr.strip()[:200]}"
    return None


def sh(*argv: str, timeout: float = 900, input: str | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          input=input)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {proc.returncode}\n{proc.stdout[-3000:]}"
                             f"\n{proc.stderr[-3000:]}")
    return proc.stdout


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    why = docker_unavailable()
    if why is not None:
        say(f"skipping the kind tier: {why}")
        pytest.skip(f"kind tier: {why}")
    from pytest_kind import KindCluster  # imported here: only where it can run

    out = subprocess.run(["bash", "scripts/build-tools.sh"], cwd=REPO, capture_output=True,
                         text=True, timeout=3600, env=dict(os.environ, BUILD_KIND="1")).stdout
    tools = Path([ln for ln in out.splitlines() if ln.startswith("TOOLS_DIR=")][0]
                 .removeprefix("TOOLS_DIR="))
    [kind] = sorted((tools / "bin").glob("kind-v*"))
    t0 = time.monotonic()
    sh("docker", "build", "--target", "rauta", "-t", IMAGE, ".", timeout=1800)
    if os.environ.get("RAUTA_KIND_OBSERVER") == "1":
        sh("docker", "build", "--target", "observer", "-t", OBSERVER_IMAGE, ".", timeout=1800)
    say(f"image(s) built in {time.monotonic() - t0:.0f}s")
    c = KindCluster(CLUSTER, image=KIND_NODE_IMAGE, kind_path=kind,
                    kubectl_path=tools / "bin" / "kubectl")
    c.create()
    try:
        c.load_docker_image(IMAGE)
        if os.environ.get("RAUTA_KIND_OBSERVER") == "1":
            c.load_docker_image(OBSERVER_IMAGE)
        crds = gateway_api_crds()
        c.kubectl("apply", "--server-side", "-f", str(crds))
        c.kubectl("wait", "--for=condition=Established", "--timeout=120s", "crd", "--all")
        c.kubectl("apply", "-k", str(REPO / "deploy" / "base"))
        c.kubectl("-n", "rauta-system", "rollout", "status", "deployment/rauta-controller",
                  "--timeout=300s")
        yield c
    finally:
        if os.environ.get("RAUTA_KIND_KEEP") != "1":
            c.delete()


def gateway_api_crds() -> Path:
    """The standard-channel CRDs of lab/go.mod's sigs.k8s.io/gateway-api (v1.6.3)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    proc = subprocess.run([go, "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api"],
                          cwd=REPO / "lab", capture_output=True, text=True, timeout=600)
    crds = Path(proc.stdout.strip()) / "config" / "crd" / "standard"
    assert proc.returncode == 0 and crds.is_dir(), f"no Gateway API CRDs: {proc.stderr}"
    return crds


def kget(c: object, *args: str) -> dict:
    return json.loads(c.kubectl("get", "-o", "json", *args))  # type: ignore[attr-defined]


def test_both_replicas_ready_as_non_root_and_one_leads(cluster: object) -> None:
    c = cluster
    pods = kget(c, "-n", "rauta-system", "pods", "-l",
                "app.kubernetes.io/component=controller")["items"]
    assert len(pods) == 2
    for p in pods:
        ready = {x["type"]: x["status"] for x in p["status"]["conditions"]}
        assert ready["Ready"] == "True", p["metadata"]["name"]
        uid = c.kubectl("-n", "rauta-system", "exec", p["metadata"]["name"], "--",  # type: ignore[attr-defined]
                        "python", "-c", "import os; print(os.getuid())").strip()
        assert uid == "10001"
    lease = kget(c, "-n", "rauta-system", "lease", "rauta-controller")
    assert lease["spec"]["holderIdentity"] in {p["metadata"]["name"] for p in pods}


@pytest.fixture(scope="module")
def examples(cluster: object) -> object:
    c = cluster
    for f in EXAMPLES[:1]:
        c.kubectl("apply", "-f", str(REPO / "examples" / f))  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                        "/CN=secure.example.com", "-addext",
                        "subjectAltName=DNS:secure.example.com", "-keyout", f"{d}/tls.key",
                        "-out", f"{d}/tls.crt"], check=True, capture_output=True)
        c.kubectl("-n", "rauta-examples", "create", "secret", "tls", "demo-tls",  # type: ignore[attr-defined]
                  f"--cert={d}/tls.crt", f"--key={d}/tls.key")
        (REPO / ".pytest-kind" / "tls.crt").write_bytes(Path(d, "tls.crt").read_bytes())
    for f in EXAMPLES[1:]:
        c.kubectl("apply", "-f", str(REPO / "examples" / f))  # type: ignore[attr-defined]
    c.kubectl("-n", "rauta-examples", "wait", "--for=condition=Available",  # type: ignore[attr-defined]
              "--timeout=300s", "deployment", "--all")
    c.kubectl("-n", "rauta-backends", "wait", "--for=condition=Available",  # type: ignore[attr-defined]
              "--timeout=300s", "deployment", "--all")
    for gw in ("demo", "demo-https"):
        c.kubectl("-n", "rauta-examples", "wait", "--for=condition=Programmed",  # type: ignore[attr-defined]
                  "--timeout=120s", f"gateway/{gw}")
    return c


def test_examples_accepted_and_programmed(examples: object) -> None:
    routes = kget(examples, "-n", "rauta-examples", "httproutes")["items"]
    assert {r["metadata"]["name"] for r in routes} == {
        "web", "canary", "header-routing", "secure", "cross-namespace"}
    for r in routes:
        [parent] = r["status"]["parents"]
        st = {x["type"]: x["status"] for x in parent["conditions"]}
        assert st["Accepted"] == st["ResolvedRefs"] == "True", r["metadata"]["name"]


def pod_of(body: bytes) -> str:
    return str(json.loads(body).get("pod", ""))


def test_traffic_follows_the_examples(examples: object) -> None:
    import http.client
    import socket
    import ssl

    c = examples
    with c.port_forward("deployment/rauta-controller", 80, "-n", "rauta-system") as port:  # type: ignore[attr-defined]
        def get(host: str, **headers: str) -> str:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/", headers={"Host": host, "Connection": "close", **headers})
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200, (host, r.status)
            return pod_of(body)

        assert get("anything.example.com").startswith("web-")
        seen = [get("canary.example.com") for _ in range(200)]
        v2 = sum(p.startswith("api-v2-") for p in seen)
        say(f"canary: api-v2 answered {v2} of 200")
        assert 4 <= v2 <= 50
        assert get("headers.example.com", **{"x-version": "v2"}).startswith("api-v2-")
        assert get("headers.example.com").startswith("api-v1-")
        assert get("shared.example.com").startswith("shared-")
    with c.port_forward("deployment/rauta-controller", 443, "-n", "rauta-system") as port:  # type: ignore[attr-defined]
        ctx = ssl.create_default_context(cafile=str(REPO / ".pytest-kind" / "tls.crt"))
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        tls = ctx.wrap_socket(raw, server_hostname="secure.example.com")
        tls.sendall(b"GET / HTTP/1.1\r\nHost: secure.example.com\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        tls.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"web-" in body


def test_observer_daemonset_sees_scapy_packets(cluster: object) -> None:
    if os.environ.get("RAUTA_KIND_OBSERVER") != "1":
        say("skipping the observer DaemonSet: set RAUTA_KIND_OBSERVER=1 (needs `rauta "
            "observe` and a node kernel bcc can compile against)")
        pytest.skip("observer part off (RAUTA_KIND_OBSERVER=1 turns it on)")
    from scapy.all import IP, TCP, Raw, send  # type: ignore[import-untyped]

    c = cluster
    c.kubectl("apply", "-k", str(REPO / "deploy" / "overlays" / "observer"))  # type: ignore[attr-defined]
    c.kubectl("-n", "rauta-system", "rollout", "status", "daemonset/rauta-observer",  # type: ignore[attr-defined]
              "--timeout=300s")
    node = kget(c, "nodes")["items"][0]
    ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    for sport in range(40000, 40020):
        send(IP(dst=ip) / TCP(sport=sport, dport=80, flags="PA", seq=1, ack=1) /
             Raw(b"GET / HTTP/1.1\r\nHost: scapy.example.com\r\n\r\n"), verbose=False)
    time.sleep(3)
    pods = kget(c, "-n", "rauta-system", "pods", "-l",
                "app.kubernetes.io/component=observer")["items"]
    name = pods[0]["metadata"]["name"]
    with c.port_forward(f"pod/{name}", 9902, "-n", "rauta-system") as port:  # type: ignore[attr-defined]
        import urllib.request
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    assert b"rauta_observer_kernel_total" in text
