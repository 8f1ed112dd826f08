"""deploy/, charts/rauta, examples/ and the monitoring files, rendered and checked for real.

Role: the "checked against the real API server" part of the artifacts.

- The render tools (kubectl, helm) are built by ``scripts/build-tools.sh`` (cached outside
  the repo by version, like the lab); ``kubectl kustomize`` renders deploy/ and
  ``helm template`` renders the chart, with and without the observer.
- Every rendered manifest and every example passes ``kubectl apply --dry-run=server``
  against the lab's kube-apiserver (Gateway API CRDs installed), with no PodSecurity
  warning for the namespace label the manifests themselves set.
- RBAC sufficient: ``rauta controller`` runs with a ServiceAccount token (TokenRequest API)
  bound to exactly deploy/'s ClusterRole and Lease Role and brings the examples to full
  status convergence; traffic follows every example (backends in network namespaces).
- RBAC minimal: each single (apiGroup, resource, verb) of those roles is removed in turn;
  every variant breaks something, and the test prints what broke for each. The variants
  run with ``--gateway-services`` (as deploy/ does), each over a world that needs a
  generated Service created (Gateway gw2), one updated (gw's, stale) and one deleted (a
  Service of ours for a Gateway of another class), so the Service verbs are judged too.
- The dashboard's metrics all exist in ``/metrics`` of a running ``rauta serve`` (the
  quickstart) and of the lab controller; the alert rules pass ``promtool check rules``
  and ``promtool test rules``.

Rules: skips only where a capability is really absent (no Go toolchain and no cached
tools, no lab, no network namespaces, no promtool), printing why. Every wait is bounded;
everything created is removed.
"""

from __future__ import annotations

import contextlib
import copy
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.ctlproc import Api, ApiFailure, ControllerProcess
from tests.e2e.lab import Lab, find_go, free_port
from tests.e2e.netns import BackendNet, netns_unavailable

pytestmark = pytest.mark.timeout(900, func_only=True)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
EXAMPLE_FILES = ["quickstart.yaml", "canary.yaml", "header-routing.yaml", "https.yaml",
                 "cross-namespace.yaml"]
DASHBOARD = REPO / "deploy" / "grafana" / "rauta.json"
ALERTS = REPO / "deploy" / "prometheus" / "rauta-alerts.yaml"
GWV = "gateway.networking.k8s.io/v1"
CONTROLLER_NAME = "rauta.io/gateway-controller"
RENDERS = ("base", "overlay-observer", "chart", "chart-observer")


def say(msg: str) -> None:
    print(f"[rauta-deploy] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- tools


@dataclass
class Tools:
    kubectl: str
    helm: str
    build_seconds: float


def _tools_dir_from_cache() -> Path | None:
    root = Path(os.environ.get("RAUTA_LAB_CACHE") or Path.home() / ".cache" / "rauta-lab")
    for d in sorted(root.glob("tools-kubectl-*-helm-*")):
        if all(os.access(d / "bin" / b, os.X_OK) for b in ("kubectl", "helm")):
            return d
    return None


@pytest.fixture(scope="module")
def tools() -> Tools:
    t0 = time.monotonic()
    go = find_go()
    if go is None:
        d = _tools_dir_from_cache()
        if d is None:
            say("skipping: no Go toolchain and no cached kubectl/helm (scripts/build-tools.sh)")
            pytest.skip("no Go toolchain and no cached render tools")
    else:
        env = dict(os.environ, PATH=f"{Path(go).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        proc = subprocess.run(["bash", str(REPO / "scripts" / "build-tools.sh")], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=3000,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"build-tools.sh failed:\n{proc.stdout}\n{proc.stderr}"
        [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("TOOLS_DIR=")]
        d = Path(line.removeprefix("TOOLS_DIR="))
    took = time.monotonic() - t0
    say(f"tools in {d} ({took:.1f}s)")
    return Tools(str(d / "bin" / "kubectl"), str(d / "bin" / "helm"), took)


def run(argv: list[str], *, input: str | None = None, timeout: float = 120,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def render(tools: Tools, which: str) -> str:
    if which == "base":
        return run([tools.kubectl, "kustomize", "deploy/base"]).stdout
    if which == "overlay-observer":
        return run([tools.kubectl, "kustomize", "deploy/overlays/observer"]).stdout
    extra = ["--set", "observer.enabled=true"] if which == "chart-observer" else []
    return run([tools.helm, "template", "rauta", "charts/rauta", "--namespace",
                "rauta-system", "--set", "createNamespace=true", *extra]).stdout


@pytest.fixture(scope="module")
def rendered(tools: Tools) -> dict[str, list[dict[str, Any]]]:
    out = {which: docs(render(tools, which)) for which in RENDERS}
    for which, objs in out.items():
        say(f"{which}: {len(objs)} objects: "
            f"{', '.join(sorted(o['kind'] for o in objs))}")
    return out


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def only(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objs, kind)
    assert len(found) == 1, f"{len(found)} {kind}, want 1"
    return found[0]


# ---------------------------------------------------------------- renders (no lab)


def test_helm_lint_passes(tools: Tools) -> None:
    for extra in ([], ["--set", "observer.enabled=true"]):
        out = run([tools.helm, "lint", "--strict", "charts/rauta", *extra])
        assert "0 chart(s) failed" in out.stdout, out.stdout


def test_helm_install_and_uninstall_in_the_lab(lab: Lab, tools: Tools, tmp_path: Path,
                                               cleanup_namespaces: set[str]) -> None:
    """The README's `helm install` line, for real: the release is deployed, its objects
    exist, and `helm uninstall` removes them."""
    env = dict(os.environ, KUBECONFIG=str(lab.kubeconfig), HELM_CONFIG_HOME=str(tmp_path / "c"),
               HELM_CACHE_HOME=str(tmp_path / "k"), HELM_DATA_HOME=str(tmp_path / "d"))
    ns = f"rauta-helm-{uuid.uuid4().hex[:6]}"
    cleanup_namespaces.add(ns)

    def helm(*args: str) -> str:
        proc = subprocess.run([tools.helm, *args], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    # The chart's cluster-scoped objects are named after the release: a second release
    # name keeps this test off deploy/base's ClusterRole and GatewayClass.
    helm("install", "rauta-helm", "charts/rauta", "-n", ns, "--create-namespace",
         "--set", "gatewayClass.name=rauta-helm", "--wait=false")
    status = json.loads(helm("status", "rauta-helm", "-n", ns, "-o", "json"))
    assert status["info"]["status"] == "deployed", status["info"]
    api = Api(lab)
    assert api.get("GatewayClass", None, "rauta-helm") is not None
    assert lab.request("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/"
                              "rauta-helm-controller")[0] == 200
    helm("uninstall", "rauta-helm", "-n", ns, "--wait")
    assert api.get("GatewayClass", None, "rauta-helm") is None
    assert lab.request("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/"
                              "rauta-helm-controller")[0] == 404


def test_kustomize_and_helm_render_the_same_deployment(rendered: dict[str, Any]) -> None:
    """The chart and the base are two spellings of one thing: same kinds, same RBAC rules,
    same pod security, probes, resources, spread, volumes and controller flags."""
    from rauta.cli import main

    base, chart = rendered["base"], rendered["chart"]
    assert sorted(o["kind"] for o in base) == sorted(o["kind"] for o in chart)
    for kind in ("ClusterRole", "Role"):
        assert only(base, kind)["rules"] == only(chart, kind)["rules"], kind
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        assert only(base, kind)["subjects"] == only(chart, kind)["subjects"], kind
    assert only(base, "GatewayClass")["spec"] == only(chart, "GatewayClass")["spec"]
    ns_b, ns_c = only(base, "Namespace"), only(chart, "Namespace")
    assert ns_b["metadata"]["name"] == ns_c["metadata"]["name"] == "rauta-system"
    enforce = "pod-security.kubernetes.io/enforce"
    assert ns_b["metadata"]["labels"][enforce] == ns_c["metadata"]["labels"][enforce] == \
        "restricted"
    db, dc = only(base, "Deployment"), only(chart, "Deployment")
    assert db["spec"]["replicas"] == dc["spec"]["replicas"] == 2
    pb, pc = db["spec"]["template"]["spec"], dc["spec"]["template"]["spec"]
    assert pb["securityContext"] == pc["securityContext"]
    assert pb["volumes"] == pc["volumes"]
    assert [t["topologyKey"] for t in pb["topologySpreadConstraints"]] == \
        [t["topologyKey"] for t in pc["topologySpreadConstraints"]]
    [cb], [cc] = pb["containers"], pc["containers"]
    for key in ("image", "ports", "livenessProbe", "readinessProbe", "startupProbe",
                "resources", "securityContext", "volumeMounts", "env"):
        assert cb[key] == cc[key], key
    ctl = main.commands["controller"]
    params_b = ctl.make_context("controller", cb["args"][1:]).params
    params_c = ctl.make_context("controller", cc["args"][1:]).params
    assert params_b == params_c
    for objs in (base, chart):
        assert not by_kind(objs, "DaemonSet"), "the observer is off by default"


def test_observer_variants_add_the_daemonset_and_relabel_the_namespace(
        rendered: dict[str, Any]) -> None:
    for which, plain in (("overlay-observer", "base"), ("chart-observer", "chart")):
        objs = rendered[which]
        ds = only(objs, "DaemonSet")
        [c] = ds["spec"]["template"]["spec"]["containers"]
        assert c["securityContext"]["capabilities"]["add"] == ["BPF", "NET_ADMIN", "PERFMON"]
        assert only(objs, "Namespace")["metadata"]["labels"][
            "pod-security.kubernetes.io/enforce"] == "privileged", which
        assert len(objs) == len(rendered[plain]) + 2, which  # + DaemonSet + its Service


# ---------------------------------------------------------------- the lab: dry-run


def kubectl(lab: Lab, tools: Tools, *args: str, input: str | None = None,
            check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run([tools.kubectl, f"--kubeconfig={lab.kubeconfig}", *args], input=input,
               check=check, timeout=timeout)


def apply_namespaces(lab: Lab, tools: Tools, objs: list[dict[str, Any]]) -> None:
    """Create (or relabel) the namespaces of ``objs`` for real: a namespaced object's
    dry-run needs its namespace to exist, and PodSecurity judges against its labels."""
    nss = by_kind(objs, "Namespace")
    if nss:
        kubectl(lab, tools, "apply", "-f", "-", input=yaml.safe_dump_all(nss))


def dry_run(lab: Lab, tools: Tools, objs: list[dict[str, Any]], what: str
            ) -> subprocess.CompletedProcess[str]:
    proc = kubectl(lab, tools, "apply", "--dry-run=server", "-f", "-",
                   input=yaml.safe_dump_all(objs), check=False)
    assert proc.returncode == 0, f"{what}: dry-run refused:\n{proc.stdout}\n{proc.stderr}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.endswith("(server dry run)")]
    assert len(lines) == len(objs), f"{what}: {len(lines)} of {len(objs)} accepted:\n" \
                                    f"{proc.stdout}"
    return proc


@pytest.fixture(scope="module")
def cleanup_namespaces(lab: Lab) -> Iterator[set[str]]:
    names: set[str] = set()
    yield names
    api = Api(lab)
    for ns in names:
        with contextlib.suppress(OSError, ApiFailure):
            api.delete("Namespace", None, ns)
    for cluster in ("GatewayClass/rauta",):
        kind, name = cluster.split("/")
        with contextlib.suppress(OSError, ApiFailure):
            api.delete(kind, None, name)
    for kind, name in (("ClusterRole", "rauta-controller"),
                       ("ClusterRoleBinding", "rauta-controller")):
        lab.request("DELETE", f"/apis/rbac.authorization.k8s.io/v1/{kind.lower()}s/{name}")


@pytest.mark.parametrize("which", RENDERS)
def test_rendered_manifests_pass_server_dry_run(lab: Lab, tools: Tools, rendered: Any,
                                                cleanup_namespaces: set[str],
                                                which: str) -> None:
    objs = rendered[which]
    cleanup_namespaces.update(o["metadata"]["name"] for o in by_kind(objs, "Namespace"))
    apply_namespaces(lab, tools, objs)
    proc = dry_run(lab, tools, objs, which)
    # The namespace's own Pod Security level admits the pods of its workloads: the API
    # server warns "would violate PodSecurity" for a Deployment/DaemonSet that breaks it.
    assert "violate PodSecurity" not in proc.stderr, f"{which}:\n{proc.stderr}"
    say(f"dry-run {which}: {len(objs)} objects accepted, no PodSecurity warning")


def test_pod_security_check_can_fail(lab: Lab, tools: Tools, rendered: Any,
                                     cleanup_namespaces: set[str]) -> None:
    """Control: the observer DaemonSet in the base's restricted namespace is warned about,
    so the missing warning above means something."""
    base = rendered["base"]
    cleanup_namespaces.update(o["metadata"]["name"] for o in by_kind(base, "Namespace"))
    apply_namespaces(lab, tools, base)
    ds = only(rendered["overlay-observer"], "DaemonSet")
    proc = dry_run(lab, tools, [ds], "observer DaemonSet in a restricted namespace")
    assert "violate PodSecurity" in proc.stderr, proc.stderr
    for cap in ("hostNetwork", "capabilities", "runAsNonRoot"):
        assert cap in proc.stderr, proc.stderr


def test_controller_pod_is_admitted_by_restricted_pod_security(
        lab: Lab, tools: Tools, rendered: Any, cleanup_namespaces: set[str]) -> None:
    """A Pod made from the Deployment's template is enforced (not only warned) against."""
    base = rendered["base"]
    cleanup_namespaces.update(o["metadata"]["name"] for o in by_kind(base, "Namespace"))
    apply_namespaces(lab, tools, base)
    dep = only(base, "Deployment")
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "rauta-template-check", "namespace": dep["metadata"]["namespace"],
                        "labels": dep["spec"]["template"]["metadata"]["labels"]},
           "spec": dep["spec"]["template"]["spec"]}
    dry_run(lab, tools, [pod], "controller Pod")
    bad = copy.deepcopy(pod)
    bad["spec"]["containers"][0]["securityContext"]["capabilities"] = {"add": ["NET_RAW"]}
    proc = kubectl(lab, tools, "apply", "--dry-run=server", "-f", "-",
                   input=yaml.safe_dump(bad), check=False)
    assert proc.returncode != 0 and "violates PodSecurity" in proc.stderr, proc.stderr


def test_examples_pass_server_dry_run(lab: Lab, tools: Tools,
                                      cleanup_namespaces: set[str]) -> None:
    objs = [o for f in EXAMPLE_FILES for o in docs((EXAMPLES / f).read_text())]
    cleanup_namespaces.update(o["metadata"]["name"] for o in by_kind(objs, "Namespace"))
    apply_namespaces(lab, tools, objs)
    dry_run(lab, tools, objs, "examples")
    say(f"dry-run examples: {len(objs)} objects accepted")


# ---------------------------------------------------------------- ServiceAccount tokens


def token_for(lab: Lab, ns: str, sa: str, seconds: int = 3600) -> str:
    status, out = lab.request(
        "POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
         "spec": {"expirationSeconds": seconds}})
    assert status == 201, f"TokenRequest {ns}/{sa}: {status} {out[:300]!r}"
    return str(json.loads(out)["status"]["token"])


def kubeconfig_for(lab: Lab, token: str, path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "lab", "cluster": {"server": lab.server,
                                                 "certificate-authority": str(lab.ca_file)}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "lab", "user": "sa"}}],
        "current-context": "sa"}))
    path.chmod(0o600)
    return path


def wait_for(fn: Callable[[], Any], timeout: float, what: str,
             procs: tuple[ControllerProcess, ...] = (), interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        for p in procs:
            if not p.alive:
                raise AssertionError(f"controller died waiting for {what}\n{p.describe()}")
        try:
            last = fn()
        except (AssertionError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            tails = "\n".join(p.describe() for p in procs)
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                 f"last={last!r}\n{tails}")
        time.sleep(interval)


def conds(items: list[dict[str, Any]] | None) -> dict[str, str]:
    return {c["type"]: c["status"] for c in items or ()}


def loopback() -> str:
    return f"127.0.{uuid.uuid4().int % 200 + 30}.{uuid.uuid4().int % 200 + 20}"


# ---------------------------------------------------------------- the deployed world


@dataclass
class Deployed:
    lab: Lab
    api: Api
    ctl: ControllerProcess
    host: str
    cert: bytes
    net: BackendNet | None
    started: float
    converged_seconds: float = 0.0
    backends: dict[str, str] = field(default_factory=dict)


def self_signed(host: str, d: Path) -> tuple[bytes, bytes]:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "k.pem", "-out",
                    "c.pem", "-days", "1", "-subj", f"/CN={host}",
                    "-addext", f"subjectAltName=DNS:{host}"],
                   cwd=d, check=True, capture_output=True, timeout=30,
                   stdin=subprocess.DEVNULL)
    return (d / "c.pem").read_bytes(), (d / "k.pem").read_bytes()


# (namespace, Service) of the examples -> the echo behind it
EXAMPLE_BACKENDS = {("rauta-examples", "web"): "web", ("rauta-examples", "api-v1"): "api-v1",
                    ("rauta-examples", "api-v2"): "api-v2",
                    ("rauta-backends", "shared"): "shared"}


@pytest.fixture(scope="module")
def deployed(lab: Lab, tools: Tools, rendered: Any,
             cleanup_namespaces: set[str]) -> Iterator[Deployed]:
    """deploy/base applied for real (all but its Deployment: the lab has no kubelet) and
    the controller run as its ServiceAccount; the examples applied (all but their echo
    Deployments: the backends are echo servers in a network namespace, published by
    EndpointSlices)."""
    base = rendered["base"]
    cleanup_namespaces.update(o["metadata"]["name"] for o in by_kind(base, "Namespace"))
    objs = [o for o in base if o["kind"] not in ("Deployment",)]
    kubectl(lab, tools, "apply", "-f", "-", input=yaml.safe_dump_all(objs))
    dep = only(base, "Deployment")
    ns = dep["metadata"]["namespace"]
    sa = dep["spec"]["template"]["spec"]["serviceAccountName"]
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    flag = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if "=" in a}
    assert flag["--lease-namespace"] == "$(POD_NAMESPACE)"
    workdir = Path(tempfile.mkdtemp(prefix="rauta-deploy-"))
    kc = kubeconfig_for(lab, token_for(lab, ns, sa), workdir / "kubeconfig")
    why = netns_unavailable()
    net: BackendNet | None = None
    if why is not None:
        say(f"no network namespaces ({why}): statuses only, the traffic tests will skip")
    host = loopback()
    crt, key = self_signed("secure.example.com", workdir)
    api = Api(lab)
    ctl = ControllerProcess(kc, controller_name=CONTROLLER_NAME, listen_host=host,
                            lease_name=flag["--lease-name"], lease_namespace=ns,
                            identity="rauta-deploy-test")
    try:
        if why is None:
            net = BackendNet().create()
        ex = [o for f in EXAMPLE_FILES for o in docs((EXAMPLES / f).read_text())]
        cleanup_namespaces.update(o["metadata"]["name"] for o in by_kind(ex, "Namespace"))
        ex = [o for o in ex if o["kind"] != "Deployment"]
        started = time.monotonic()
        ctl.start()
        kubectl(lab, tools, "apply", "-f", "-", input=yaml.safe_dump_all(ex))
        kubectl(lab, tools, "-n", "rauta-examples", "create", "secret", "tls", "demo-tls",
                f"--cert={workdir / 'c.pem'}", f"--key={workdir / 'k.pem'}")
        d = Deployed(lab, api, ctl, host, crt, net, started)
        for i, ((sns, svc), name) in enumerate(EXAMPLE_BACKENDS.items()):
            addr = net.start_echo(name, 3000).address if net else f"10.255.{i}.2"
            d.backends[name] = addr
            kubectl(lab, tools, "apply", "-f", "-", input=yaml.safe_dump({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{svc}-echo", "namespace": sns,
                             "labels": {"kubernetes.io/service-name": svc,
                                        "endpointslice.kubernetes.io/managed-by":
                                            "rauta-tests"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 3000, "protocol": "TCP"}],
                "endpoints": [{"addresses": [addr], "conditions": {"ready": True}}]}))
        yield d
    finally:
        ctl.cleanup()
        if net is not None:
            net.close()
        with contextlib.suppress(OSError):
            for f in workdir.iterdir():
                f.unlink()
            workdir.rmdir()


def example_statuses(api: Api, ctl_name: str) -> list[str]:
    """What is not yet as it should be for the examples (empty: full convergence)."""
    bad: list[str] = []
    gc = api.get("GatewayClass", None, "rauta") or {}
    if conds((gc.get("status") or {}).get("conditions")).get("Accepted") != "True":
        bad.append("GatewayClass rauta not Accepted")
    for name, attached in (("demo", 4), ("demo-https", 1)):
        gw = api.get("Gateway", "rauta-examples", name) or {}
        st = gw.get("status") or {}
        gen = gw.get("metadata", {}).get("generation")
        c = conds(st.get("conditions"))
        if c.get("Accepted") != "True" or c.get("Programmed") != "True":
            bad.append(f"Gateway {name}: {c}")
        if any(x.get("observedGeneration") != gen for x in st.get("conditions") or ()):
            bad.append(f"Gateway {name}: observedGeneration != {gen}")
        for lis in st.get("listeners") or [{}]:
            lc = conds(lis.get("conditions"))
            if not (lc.get("Accepted") == lc.get("Programmed") == lc.get("ResolvedRefs")
                    == "True") or lis.get("attachedRoutes") != attached:
                bad.append(f"Gateway {name} listener {lis.get('name')}: {lc} "
                           f"attachedRoutes={lis.get('attachedRoutes')}")
    for name in ("web", "canary", "header-routing", "secure", "cross-namespace"):
        rt = api.get("HTTPRoute", "rauta-examples", name) or {}
        ours = [p for p in (rt.get("status") or {}).get("parents") or ()
                if p.get("controllerName") == ctl_name]
        c = conds(ours[0]["conditions"]) if ours else {}
        if c.get("Accepted") != "True" or c.get("ResolvedRefs") != "True":
            bad.append(f"HTTPRoute {name}: {c or 'no status'}")
    return bad


def test_rbac_sufficient_examples_converge_as_the_service_account(deployed: Deployed) -> None:
    d = deployed
    d.ctl.wait_ready(60)
    wait_for(lambda: not example_statuses(d.api, CONTROLLER_NAME), 90,
             "full status convergence of the examples", (d.ctl,))
    d.converged_seconds = time.monotonic() - d.started
    lease = d.api.get("Lease", "rauta-system", "rauta-controller")
    assert lease and lease["spec"]["holderIdentity"] == "rauta-deploy-test"
    denied = [ln for ln in d.ctl.tail(400).splitlines() if "403" in ln or "forbidden" in ln]
    assert not denied, "the ServiceAccount was refused something:\n" + "\n".join(denied)
    say(f"examples converged as system:serviceaccount:rauta-system:rauta in "
        f"{d.converged_seconds:.1f}s (controller start to last status)")


# ---------------------------------------------------------------- traffic


def request(host: str, port: int, hostname: str, path: str = "/",
            headers: dict[str, str] | None = None, timeout: float = 5.0
            ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": hostname, "Connection": "close",
                                           **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def backend_of(d: Deployed, hostname: str, **kw: Any) -> str:
    status, headers, _ = request(d.host, 80, hostname, **kw)
    assert status == 200, (hostname, status)
    return headers.get("x-backend", "")


@pytest.fixture
def traffic(deployed: Deployed) -> Deployed:
    if deployed.net is None:
        why = netns_unavailable()
        say(f"skipping traffic: network namespaces unavailable: {why}")
        pytest.skip(f"network namespaces unavailable: {why}")
    wait_for(lambda: not example_statuses(deployed.api, CONTROLLER_NAME), 90,
             "examples converged", (deployed.ctl,))
    wait_for(lambda: backend_of(deployed, "any.example.com") == "web", 30,
             "the quickstart route serves", (deployed.ctl,))
    return deployed


def test_traffic_quickstart(traffic: Deployed) -> None:
    assert {backend_of(traffic, "whatever.example.com", path=f"/p{i}") for i in range(10)} \
        == {"web"}


def test_traffic_weighted_canary(traffic: Deployed) -> None:
    n = 300
    seen = [backend_of(traffic, "canary.example.com") for _ in range(n)]
    v2 = seen.count("api-v2")
    say(f"canary: api-v1 {seen.count('api-v1')}, api-v2 {v2} of {n} (weights 90/10)")
    assert set(seen) == {"api-v1", "api-v2"}, set(seen)
    # 10% of 300 is 30; P(outside 8..70) is below 1e-9 for independent flows.
    assert 8 <= v2 <= 70, v2


def test_traffic_header_routing(traffic: Deployed) -> None:
    for _ in range(10):
        assert backend_of(traffic, "headers.example.com", headers={"x-version": "v2"}) == \
            "api-v2"
        assert backend_of(traffic, "headers.example.com") == "api-v1"
        assert backend_of(traffic, "headers.example.com", headers={"x-version": "v1"}) == \
            "api-v1"


def test_traffic_https(traffic: Deployed) -> None:
    ctx = ssl.create_default_context(cadata=traffic.cert.decode())
    with socket.create_connection((traffic.host, 443), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="secure.example.com") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: secure.example.com\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode().lower()
    assert head.startswith("http/1.1 200"), head
    assert "x-backend: web" in head, head


def test_traffic_cross_namespace(traffic: Deployed) -> None:
    assert backend_of(traffic, "shared.example.com") == "shared"


# ---------------------------------------------------------------- metrics names


def exposed_names(text: str) -> set[str]:
    """Every series name a scrape of ``text`` can hold, by family type."""
    names: set[str] = set()
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",),
                "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("_sum", "_count", "_created"), "info": ("_info",)}
    for fam in text_string_to_metric_families(text):
        names |= {s.name for s in fam.samples}
        names |= {fam.name + sfx for sfx in suffixes.get(fam.type, ("",))}
    return names


def dashboard_metrics() -> set[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", ())]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"]
              if isinstance(v.get("query"), dict)]
    return {m for e in exprs for m in re.findall(r"\b(rauta_[a-z0-9_]+)\b", e)}


def test_dashboard_metrics_exist_in_the_lab_controller(deployed: Deployed) -> None:
    """The controller runs the proxy too: after traffic (if any), its /metrics holds every
    metric the dashboard queries, the controller's (leader, status writes) included."""
    d = deployed
    wait_for(lambda: not example_statuses(d.api, CONTROLLER_NAME), 90, "converged", (d.ctl,))
    status, body = d.ctl.get("/metrics")
    assert status == 200
    have = exposed_names(body.decode())
    missing = dashboard_metrics() - have
    assert not missing, f"dashboard queries metrics the controller does not expose: {missing}"


def test_dashboard_metrics_exist_in_rauta_serve_on_the_quickstart(tmp_path: Path) -> None:
    """``rauta serve`` on the quickstart (rendered as ``rauta quickstart`` does, with its
    echo backends): every proxy metric of the dashboard is in /metrics, the request ones
    with samples after traffic. The controller-only ones are the lab test's."""
    from rauta.quickstart import render

    controller_only = {"rauta_leader", "rauta_apiserver_connected", "rauta_status_writes_total"}
    listen, admin = free_port(), free_port()
    ph = render(tmp_path, listen, admin)
    echo_code = ("import asyncio,sys\nfrom rauta.echo import EchoBackend\n"
                 "async def m():\n"
                 "    bs=[EchoBackend(n,a,int(sys.argv[1])) for n,a in "
                 "zip(sys.argv[2::2],sys.argv[3::2])]\n"
                 "    [await b.start() for b in bs]\n"
                 "    print('up',flush=True)\n"
                 "    await asyncio.Event().wait()\n"
                 "asyncio.run(m())\n")
    pairs = [x for name, addr in ph.addrs.items() for x in (name, addr)]
    echo = subprocess.Popen([sys.executable, "-c", echo_code, str(ph.port("backends")), *pairs],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    serve = subprocess.Popen([sys.executable, "-m", "rauta.cli", "serve", "--config",
                              str(tmp_path), "--admin", f"127.0.0.1:{admin}"], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL)
    try:
        assert echo.stdout is not None and b"up" in echo.stdout.readline()

        def scrape(path: str) -> tuple[int, str]:
            conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=3)
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                return r.status, r.read().decode()
            finally:
                conn.close()

        wait_for(lambda: scrape("/readyz")[0] == 200, 30, "rauta serve /readyz")
        for path in ("/", "/api/x", "/old/x", "/nowhere"):
            request("127.0.0.1", listen, "shop.example.com", path=path)
        request("127.0.0.1", listen, "other.example.com")
        status, text = scrape("/metrics")
        assert status == 200
        have = exposed_names(text)
        want = dashboard_metrics() - controller_only
        assert not want - have, f"dashboard metrics missing from rauta serve: {want - have}"
        samples = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
        for m in ("rauta_requests_total", "rauta_request_duration_seconds_bucket",
                  "rauta_upstream_connections_opened_total", "rauta_config_generation"):
            assert m in samples, f"{m}: no sample after traffic"
        say(f"rauta serve exposes all {len(want)} proxy metrics of the dashboard")
    finally:
        for p in (serve, echo):
            p.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=15)
            if p.poll() is None:
                p.kill()


# ---------------------------------------------------------------- promtool


@pytest.fixture(scope="module")
def promtool() -> str:
    proc = subprocess.run(["bash", str(REPO / "scripts" / "get-promtool.sh")],
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROMTOOL=")]
    if proc.returncode != 0 or not lines:
        why = (proc.stderr.strip() or proc.stdout.strip())[-300:]
        say(f"skipping: promtool unavailable: {why}")
        pytest.skip(f"promtool unavailable: {why}")
    return lines[0].removeprefix("PROMTOOL=")


def test_promtool_check_rules(promtool: str) -> None:
    out = run([promtool, "check", "rules", str(ALERTS)])
    assert "SUCCESS" in out.stdout, out.stdout


def test_promtool_unit_tests_fire_every_alert(promtool: str) -> None:
    run([promtool, "test", "rules", str(ALERTS.parent / "rauta-alerts.test.yaml")])


def test_promtool_unit_tests_can_fail(promtool: str, tmp_path: Path) -> None:
    """Control: a rule with a threshold nothing reaches makes the unit tests fail."""
    (tmp_path / "rauta-alerts.yaml").write_text(
        ALERTS.read_text().replace("> 0.05", "> 0.99"))
    (tmp_path / "rauta-alerts.test.yaml").write_text(
        (ALERTS.parent / "rauta-alerts.test.yaml").read_text())
    proc = run([promtool, "test", "rules", str(tmp_path / "rauta-alerts.test.yaml")],
               check=False)
    assert proc.returncode != 0 and "RautaHigh5xxRatio" in proc.stdout + proc.stderr


# ---------------------------------------------------------------- RBAC minimal


def pairs_of(rules: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(g, r, v) for rule in rules for g in rule["apiGroups"]
            for r in rule["resources"] for v in rule["verbs"]]


def rules_without(rules: list[dict[str, Any]], drop: tuple[str, str, str] | None
                  ) -> list[dict[str, Any]]:
    return [{"apiGroups": [g], "resources": [r], "verbs": [v]}
            for g, r, v in pairs_of(rules) if (g, r, v) != drop]


@dataclass
class Variant:
    index: int
    drop: tuple[str, str, str] | None  # None: the full roles (the control)
    where: str  # "ClusterRole" or "Role"
    ident: str
    ns: str
    ctl: ControllerProcess | None = None
    broke: list[str] = field(default_factory=list)
    stale_uid: str = ""  # the stale generated Service's uid: it must be updated in place

    @property
    def label(self) -> str:
        if self.drop is None:
            return "(nothing removed)"
        g, r, v = self.drop
        return f"{self.where} -{v} {r}{'.' + g if g else ''}"


SVC_PORTS = (20000, 20099)  # --internal-ports of the variants (each on its own loopback IP)


def generated_service(gw: dict[str, Any], ctl_name: str, target: int) -> dict[str, Any]:
    """A Service as ``rauta controller --gateway-services`` marks its own (label,
    annotation, ownerReference to the live Gateway), with a given targetPort."""
    meta = gw["metadata"]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"{meta['name']}-rauta", "namespace": meta["namespace"],
                         "labels": {"gateway.networking.k8s.io/gateway-name": meta["name"]},
                         "annotations": {"rauta.io/controller-name": ctl_name},
                         "ownerReferences": [{"apiVersion": GWV, "kind": "Gateway",
                                              "name": meta["name"], "uid": meta["uid"],
                                              "controller": True}]},
            "spec": {"type": "LoadBalancer",
                     "ports": [{"name": "p80", "port": 80, "targetPort": target}]}}


def variant_state(api: Api, v: Variant, gc: str, ctl_name: str) -> list[str]:
    """What is not right yet for one variant's controller."""
    assert v.ctl is not None
    bad: list[str] = []
    if v.ctl.get("/readyz")[0] != 200:
        bad.append(f"/readyz {v.ctl.get('/readyz')[1].decode(errors='replace').strip()}")
    lease = api.get("Lease", v.ns, "rauta") or {}
    spec = lease.get("spec") or {}
    if spec.get("holderIdentity") != v.ident:
        bad.append("never leader (no Lease held)")
    elif spec.get("renewTime") == spec.get("acquireTime"):
        bad.append("Lease never renewed")
        if v.ctl.is_leader() is False:
            bad.append("rauta_leader 0 (leadership lost)")
    g = api.get("GatewayClass", None, gc) or {}
    if conds((g.get("status") or {}).get("conditions")).get("Accepted") != "True":
        bad.append("GatewayClass status not written")
    gw = api.get("Gateway", v.ns, "gw") or {}
    if conds((gw.get("status") or {}).get("conditions")).get("Programmed") != "True":
        bad.append("Gateway status not written")
    svc = api.get("Service", v.ns, "gw-rauta") or {}
    if not all(SVC_PORTS[0] <= p.get("targetPort", 0) <= SVC_PORTS[1]
               for p in (svc.get("spec") or {}).get("ports") or [{}]):
        bad.append("stale Service gw-rauta not updated")
    elif svc.get("metadata", {}).get("uid") != v.stale_uid:
        bad.append("Service gw-rauta re-created instead of updated in place")
    if api.get("Service", v.ns, "gw2-rauta") is None:
        bad.append("Service gw2-rauta not created")
    if api.get("Service", v.ns, "other-rauta") is not None:
        bad.append("Service other-rauta (Gateway of another class) not deleted")
    rt = api.get("HTTPRoute", v.ns, "rt") or {}
    ours = [p for p in (rt.get("status") or {}).get("parents") or ()
            if p.get("controllerName") == ctl_name]
    if not ours or conds(ours[0]["conditions"]).get("Accepted") != "True":
        bad.append("HTTPRoute status not written")
    return bad


def test_rbac_minimal_every_rule_is_needed(lab: Lab, rendered: Any,
                                           cleanup_namespaces: set[str]) -> None:
    base = rendered["base"]
    cr, role = only(base, "ClusterRole"), only(base, "Role")
    api = Api(lab)
    run_id = uuid.uuid4().hex[:6]
    variants: list[Variant] = [Variant(0, None, "", f"v0-{run_id}", f"rbac-{run_id}-0")]
    for where, rules in (("ClusterRole", cr["rules"]), ("Role", role["rules"])):
        for pair in pairs_of(rules):
            i = len(variants)
            variants.append(Variant(i, pair, where, f"v{i}-{run_id}", f"rbac-{run_id}-{i}"))
    workdir = Path(tempfile.mkdtemp(prefix="rauta-rbac-"))
    port = 18080
    rbac = "/apis/rbac.authorization.k8s.io/v1"

    def setup(v: Variant) -> None:
        name = f"rbac-{run_id}-{v.index}"
        gc, ctl_name = name, f"rauta.io/{name}"
        cleanup_namespaces.add(v.ns)
        api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": v.ns}})
        api.create({"apiVersion": GWV, "kind": "GatewayClass", "metadata": {"name": gc},
                    "spec": {"controllerName": ctl_name}})
        api.call("POST", f"/api/v1/namespaces/{v.ns}/serviceaccounts",
                 {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "rauta"}})
        subject = [{"kind": "ServiceAccount", "name": "rauta", "namespace": v.ns}]
        for path, body in (
            (f"{rbac}/clusterroles", {"kind": "ClusterRole", "metadata": {"name": name},
                                      "rules": rules_without(cr["rules"], v.drop)}),
            (f"{rbac}/clusterrolebindings", {
                "kind": "ClusterRoleBinding", "metadata": {"name": name}, "subjects": subject,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": name}}),
            (f"{rbac}/namespaces/{v.ns}/roles", {
                "kind": "Role", "metadata": {"name": "rauta"},
                "rules": rules_without(role["rules"], v.drop)}),
            (f"{rbac}/namespaces/{v.ns}/rolebindings", {
                "kind": "RoleBinding", "metadata": {"name": "rauta"}, "subjects": subject,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                            "name": "rauta"}}),
        ):
            status, out = api.call("POST", path, {"apiVersion": "rbac.authorization.k8s.io/v1",
                                                  **body})
            assert status == 201, (path, status, out)
        api.create({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "web", "namespace": v.ns},
                    "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 3000}]}})
        gws = {name: api.create({"apiVersion": GWV, "kind": "Gateway",
                                 "metadata": {"name": name, "namespace": v.ns},
                                 "spec": {"gatewayClassName": cls,
                                          "listeners": [{"name": "http", "port": port,
                                                         "protocol": "HTTP"}]}})
               for name, cls in (("gw", gc), ("gw2", gc), ("other", f"{gc}-not-ours"))}
        stale = api.create(generated_service(gws["gw"], ctl_name, 1))  # to be updated
        v.stale_uid = stale["metadata"]["uid"]
        api.create(generated_service(gws["other"], ctl_name, 20050))  # to be deleted
        api.create({"apiVersion": GWV, "kind": "HTTPRoute",
                    "metadata": {"name": "rt", "namespace": v.ns},
                    "spec": {"parentRefs": [{"name": "gw"}],
                             "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}})
        kc = kubeconfig_for(lab, token_for(lab, v.ns, "rauta"), workdir / f"{v.ns}.kubeconfig")
        v.ctl = ControllerProcess(kc, controller_name=ctl_name, listen_host=loopback(),
                                  lease_name="rauta", lease_namespace=v.ns, identity=v.ident,
                                  lease_duration=3.0, extra=(
                                      "--gateway-services", "--internal-ports",
                                      f"{SVC_PORTS[0]}-{SVC_PORTS[1]}",
                                      "--address-fallback", "192.0.2.1"))

    def teardown(v: Variant) -> None:
        if v.ctl is not None:
            v.ctl.cleanup()
        name = f"rbac-{run_id}-{v.index}"
        for path in (f"{rbac}/clusterrolebindings/{name}", f"{rbac}/clusterroles/{name}",
                     f"/apis/gateway.networking.k8s.io/v1/gatewayclasses/{name}",
                     f"/api/v1/namespaces/{v.ns}"):
            lab.request("DELETE", path)

    settle = 35.0  # the control converges in a few seconds; a broken variant never does
    batch = 9
    t0 = time.monotonic()
    try:
        for start in range(0, len(variants), batch):
            group = variants[start:start + batch]
            for v in group:
                setup(v)
            for v in group:
                assert v.ctl is not None
                v.ctl.start()
            deadline = time.monotonic() + settle
            pending = list(group)
            while pending and time.monotonic() < deadline:
                time.sleep(0.5)
                for v in list(pending):
                    if not variant_state(api, v, f"rbac-{run_id}-{v.index}",
                                         f"rauta.io/rbac-{run_id}-{v.index}"):
                        pending.remove(v)  # converged
            # Hold the converged ones a little longer: a lost lease shows after renewals.
            time.sleep(2.0)
            for v in group:
                assert v.ctl is not None
                v.broke = variant_state(api, v, f"rbac-{run_id}-{v.index}",
                                        f"rauta.io/rbac-{run_id}-{v.index}")
                denied = re.search(r'HTTP 403: .*? cannot (\w+) resource "([^"]+)"',
                                   v.ctl.tail(300))
                if denied:
                    v.broke.append(f"log: 403 cannot {denied.group(1)} {denied.group(2)}")
                teardown(v)
    finally:
        for v in variants:
            if v.ctl is not None and v.ctl.alive:
                teardown(v)
        for f in workdir.iterdir():
            f.unlink()
        workdir.rmdir()
    lines = [f"{v.label:55s} -> {'; '.join(v.broke) or 'NOTHING BROKE'}" for v in variants]
    say(f"RBAC minimality, {len(variants) - 1} single-rule removals in "
        f"{time.monotonic() - t0:.0f}s:\n  " + "\n  ".join(lines))
    control = variants[0]
    assert not control.broke, f"the full roles did not converge: {control.broke}"
    unbroken = [v.label for v in variants[1:] if not [b for b in v.broke
                                                       if not b.startswith("log:")]]
    assert not unbroken, f"removing these broke nothing (not minimal): {unbroken}"
