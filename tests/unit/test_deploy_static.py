"""Static checks of the shipped artifacts: Dockerfile, deploy/, charts/rauta, examples/,
the Grafana dashboard and the alert rules, without any tool or cluster.

Role: what can be decided by reading the files. The Dockerfile is NOT built here (no
container runtime; the kind tier builds it): its rules are checked on the parsed
instructions. Rendering (kubectl kustomize, helm template), the API server's verdict and
the RBAC's sufficiency and minimality are tests/e2e/test_deploy.py.

Rules:
- Facts are taken from rauta itself where it has them: the controller's flags are parsed
  by its own click command, the watched kinds come from ``rauta.reconcile.kube.KINDS``, the
  admin paths from ``rauta.admin.admin_app``'s router, the examples are translated by
  ``rauta.model`` and every Gateway and HTTPRoute must come out Accepted (and Programmed).
- Every check can fail: each names the file and the rule it enforces.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from rauta.cli import main
from rauta.reconcile.kube import GW, KINDS

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
BASE = REPO / "deploy" / "base"
OBSERVER = REPO / "deploy" / "components" / "observer"
CHART = REPO / "charts" / "rauta"
EXAMPLES = REPO / "examples"
DASHBOARD = REPO / "deploy" / "grafana" / "rauta.json"
ALERTS = REPO / "deploy" / "prometheus" / "rauta-alerts.yaml"

# The kinds whose /status the controller writes (rauta/reconcile/kubesink.py: it GETs the
# object, then PUTs its status subresource).
STATUS_KINDS = ("GatewayClass", "Gateway", "HTTPRoute")


# ---------------------------------------------------------------- the Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def dockerfile_stages() -> tuple[dict[str, str], list[dict[str, Any]]]:
    """(global ARG defaults, stages); a stage is {name, base, ins: [(INSTR, args)]}."""
    args: dict[str, str] = {}
    stages: list[dict[str, Any]] = []
    for ins, rest in dockerfile_instructions(DOCKERFILE.read_text()):
        if ins == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif ins == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)),
                          parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else ""
            stages.append({"name": name, "base": base, "ins": []})
        else:
            assert stages, f"Dockerfile: {ins} before the first FROM"
            stages[-1]["ins"].append((ins, rest))
    return args, stages


def stage(name: str) -> dict[str, Any]:
    _, stages = dockerfile_stages()
    found = [s for s in stages if s["name"] == name]
    assert found, f"Dockerfile has no stage (target) {name!r}"
    return found[0]


def user_of(name: str) -> str | None:
    """The effective USER of a stage (following FROM <stage>), None for the base image's."""
    _, stages = dockerfile_stages()
    by_name = {s["name"]: s for s in stages if s["name"]}
    s = by_name[name] if name else stages[-1]
    users = [rest for ins, rest in s["ins"] if ins == "USER"]
    if users:
        return users[-1]
    return user_of(s["base"]) if s["base"] in by_name else None


def is_root(user: str | None) -> bool:
    return user is None or user.split(":")[0] in ("0", "root")


def test_dockerfile_has_build_rauta_and_observer_targets():
    _, stages = dockerfile_stages()
    names = [s["name"] for s in stages]
    for want in ("build", "rauta", "observer"):
        assert want in names, f"Dockerfile: no stage {want!r} in {names}"
    # The default target (the last stage) is the controller, not the observer.
    assert stages[-1]["base"] == "rauta", f"last stage builds on {stages[-1]['base']!r}"


def test_dockerfile_bases_are_pinned_slim_python_and_never_latest():
    args, stages = dockerfile_stages()
    names = {s["name"] for s in stages}
    external = [s["base"] for s in stages if s["base"] not in names]
    assert external, "no external base image"
    for image in external:
        assert "${" not in image, f"unresolved ARG in FROM {image}"
        repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
        assert tag, f"FROM {image}: no tag (means latest)"
        assert tag != "latest" and "latest" not in tag, f"FROM {image}: a latest tag"
        assert repo.split("/")[-1] == "python" and "slim" in tag, \
            f"FROM {image}: not a slim Python base"
    text = DOCKERFILE.read_text()
    assert not re.search(r":latest\b", text), "Dockerfile mentions a :latest tag"
    # The base's Python minor is the one the observer links Debian's bcc into.
    minor = re.match(r"(\d+\.\d+)", external[0].rpartition(":")[2])
    assert minor and f"/opt/rauta/lib/python{minor.group(1)}/site-packages" in text


def test_dockerfile_controller_runs_as_non_root_with_nothing_to_write():
    user = user_of("rauta")
    assert not is_root(user), f"stage rauta runs as {user!r}"
    uid = user.split(":")[0] if user else ""
    assert uid.isdigit(), f"USER {user!r}: numeric, so runAsNonRoot can be verified"
    rauta = stage("rauta")
    runs = " ".join(rest for ins, rest in rauta["ins"] if ins == "RUN")
    assert f"--uid {uid}" in runs, f"no user created with uid {uid}"
    env = " ".join(rest for ins, rest in rauta["ins"] if ins == "ENV")
    for want in ("PYTHONDONTWRITEBYTECODE=1", "TMPDIR=/tmp", "HOME=/tmp"):
        assert want in env, f"stage rauta: ENV lacks {want}"
    assert ("WORKDIR", "/tmp") in rauta["ins"], "stage rauta: WORKDIR is not /tmp"
    assert not any(ins == "VOLUME" for s in dockerfile_stages()[1] for ins, _ in s["ins"])
    # Bytecode is compiled at build time (the root filesystem is read-only at run time).
    build_runs = " ".join(rest for ins, rest in stage("build")["ins"] if ins == "RUN")
    assert "compileall" in build_runs
    # The default target keeps the non-root user.
    assert not is_root(user_of("")), "the default target runs as root"


def test_dockerfile_entrypoint_runs_the_controller_with_real_flags():
    rauta = stage("rauta")
    [entry] = [json.loads(r) for i, r in rauta["ins"] if i == "ENTRYPOINT"]
    [cmd] = [json.loads(r) for i, r in rauta["ins"] if i == "CMD"]
    assert entry == ["rauta"]
    assert cmd[0] == "controller"
    main.commands["controller"].make_context("controller", list(cmd[1:]))  # parses


def test_dockerfile_copies_what_exists_and_dockerignore_keeps_it():
    _, stages = dockerfile_stages()
    names = {s["name"] for s in stages}
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    for s in stages:
        for ins, rest in s["ins"]:
            if ins != "COPY":
                continue
            parts = shlex.split(rest)
            frm = [p.split("=", 1)[1] for p in parts if p.startswith("--from=")]
            srcs = [p for p in parts if not p.startswith("--")][:-1]
            if frm:
                assert frm[0] in names, f"COPY --from={frm[0]}: no such stage"
                continue
            for src in srcs:
                assert (REPO / src).exists(), f"COPY {src}: not in the repo"
                assert src.rstrip("/") not in ignored, f"COPY {src} but .dockerignore drops it"
    assert {".git", ".venv"} <= ignored


def test_dockerfile_observer_adds_debian_bcc_and_only_it_is_root():
    obs = stage("observer")
    runs = " ".join(rest for ins, rest in obs["ins"] if ins == "RUN")
    assert "apt-get install" in runs and "python3-bpfcc" in runs
    assert "import bcc" in runs, "the observer target does not check bcc imports"
    assert is_root(user_of("observer")), \
        "observer: capabilities added by Kubernetes are effective only for UID 0"


# ---------------------------------------------------------------- deploy/ and the chart


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def base_objects() -> list[dict[str, Any]]:
    kust = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    objs: list[dict[str, Any]] = []
    for res in kust["resources"]:
        assert (BASE / res).is_file(), f"deploy/base/kustomization.yaml: {res} missing"
        objs.extend(load_all(BASE / res))
    return objs


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects, want 1"
    return found[0]


def test_base_holds_every_required_object():
    kinds = sorted(o["kind"] for o in base_objects())
    assert kinds == sorted(["Namespace", "ServiceAccount", "ClusterRole",
                            "ClusterRoleBinding", "Role", "RoleBinding", "Deployment",
                            "PodDisruptionBudget", "Service", "GatewayClass"]), kinds


def test_gatewayclass_uses_the_controllers_default_name():
    default = {p.name: p.default for p in main.commands["controller"].params}
    gc = one(base_objects(), "GatewayClass")
    assert gc["metadata"]["name"] == "rauta"
    assert gc["spec"]["controllerName"] == default["controller_name"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["controllerName"] == default["controller_name"]
    assert values["gatewayClass"]["name"] == "rauta"


def rules_as_pairs(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"]
            for r in rule["resources"] for v in rule["verbs"]}


def needed_cluster_pairs() -> set[tuple[str, str, str]]:
    """What the code calls: list+watch of every watched kind, update of /status (the
    controller's status writer goes over the watch cache's copy: no get)."""
    pairs: set[tuple[str, str, str]] = set()
    for kind in KINDS.values():
        group = kind.api_version.rpartition("/")[0] if "/" in kind.api_version else ""
        pairs |= {(group, kind.plural, "list"), (group, kind.plural, "watch")}
    for name in STATUS_KINDS:
        kind = KINDS[name]
        group = kind.api_version.rpartition("/")[0]
        pairs |= {(group, f"{kind.plural}/status", "update")}
    # --gateway-services (on in deploy/): the generated Services' writes
    from rauta.reconcile.servicesink import METHODS
    pairs |= {("", KINDS["Service"].plural, verb) for verb in METHODS}
    return pairs


def test_cluster_role_is_exactly_what_the_code_calls():
    cr = one(base_objects(), "ClusterRole")
    got = rules_as_pairs(cr["rules"])
    want = needed_cluster_pairs()
    assert got - want == set(), f"granted but never used: {sorted(got - want)}"
    assert want - got == set(), f"used but not granted: {sorted(want - got)}"
    assert all(g == GW or g in ("", "discovery.k8s.io") for g, _, _ in got)


def test_lease_role_and_bindings_point_at_the_service_account():
    objs = base_objects()
    role = one(objs, "Role")
    assert rules_as_pairs(role["rules"]) == {
        ("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")}
    sa = one(objs, "ServiceAccount")
    dep = one(objs, "Deployment")
    ns = one(objs, "Namespace")["metadata"]["name"]
    assert role["metadata"]["namespace"] == ns == dep["metadata"]["namespace"]
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        b = one(objs, kind)
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                                "name": one(objs, role_kind)["metadata"]["name"]}
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                  "namespace": ns}]


def controller_container(dep: dict[str, Any]) -> dict[str, Any]:
    [c] = dep["spec"]["template"]["spec"]["containers"]
    return c


def test_deployment_flags_are_the_controllers_and_leader_election_is_namespaced():
    objs = base_objects()
    dep = one(objs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    c = controller_container(dep)
    assert c["args"][0] == "controller"
    ctx = main.commands["controller"].make_context("controller", list(c["args"][1:]))
    p = ctx.params
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
           for e in c["env"]}
    assert p["lease_namespace"] == "$(POD_NAMESPACE)" and env["POD_NAMESPACE"] == \
        "metadata.namespace"
    assert p["identity"] == "$(POD_NAME)" and env["POD_NAME"] == "metadata.name"
    assert p["lease_name"] == "rauta-controller"
    host, _, port = p["admin"].rpartition(":")
    assert host == "0.0.0.0", "the kubelet's probes and Prometheus reach the pod IP"
    [admin] = [q for q in c["ports"] if q["name"] == "admin"]
    assert admin["containerPort"] == int(port)


def admin_paths() -> set[str]:
    from prometheus_client import CollectorRegistry

    from rauta.admin import admin_app

    app = admin_app(None, CollectorRegistry())  # type: ignore[arg-type]
    return {r.resource.canonical for r in app.router.routes() if r.resource is not None}


def test_probes_hit_the_admin_servers_healthz_and_readyz():
    c = controller_container(one(base_objects(), "Deployment"))
    paths = admin_paths()
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert {"/healthz", "/readyz", "/metrics"} <= paths, paths
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["path"] in paths
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]


def test_deployment_security_context_matches_the_image():
    dep = one(base_objects(), "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = controller_container(dep)
    assert pod["securityContext"]["runAsNonRoot"] is True
    uid = user_of("rauta")
    assert uid is not None and pod["securityContext"]["runAsUser"] == int(uid.split(":")[0])
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}, \
        "no capability at all: ports < 1024 come from net.ipv4.ip_unprivileged_port_start"
    assert {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"} in \
        pod["securityContext"]["sysctls"]
    [tmp] = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert c["volumeMounts"] == [tmp], "the only writable path is /tmp"
    [vol] = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
    assert "emptyDir" in vol


def test_selectors_match_the_pods():
    objs = base_objects()
    dep = one(objs, "Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    sel = dep["spec"]["selector"]["matchLabels"]
    assert sel.items() <= labels.items()
    pdb = one(objs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] == 1 < dep["spec"]["replicas"]
    svc = one(objs, "Service")
    assert svc["spec"]["selector"].items() <= labels.items()
    assert svc["spec"]["ports"][0]["targetPort"] == "admin"
    spread = dep["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {t["topologyKey"] for t in spread} == {"kubernetes.io/hostname",
                                                  "topology.kubernetes.io/zone"}
    for t in spread:
        assert t["labelSelector"]["matchLabels"].items() <= labels.items()


def test_observer_daemonset_adds_exactly_three_capabilities():
    comp = yaml.safe_load((OBSERVER / "kustomization.yaml").read_text())
    assert comp["kind"] == "Component"
    objs = [o for r in comp["resources"] for o in load_all(OBSERVER / r)]
    ds = one(objs, "DaemonSet")
    [c] = ds["spec"]["template"]["spec"]["containers"]
    sc = c["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["BPF", "NET_ADMIN", "PERFMON"]}
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert ds["spec"]["template"]["spec"]["hostNetwork"] is True
    overlay = yaml.safe_load((REPO / "deploy/overlays/observer/kustomization.yaml").read_text())
    assert overlay["components"] == ["../../components/observer"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["observer"]["enabled"] is False, "the observer is opt-in"


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "rauta"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    __version__ = project["version"]
    assert chart["appVersion"] == __version__ == chart["version"]
    kust = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert {"name": "rauta", "newName": "rauta", "newTag": __version__} in kust["images"]


# ---------------------------------------------------------------- README


def readme_section() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"^## Deploying to a cluster\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, "README has no '## Deploying to a cluster' section"
    assert text.index("## Deploying to a cluster") < text.index("## Known limitations")
    return m.group(1)


def test_readme_names_the_crd_release_and_why_each_capability():
    sec = readme_section()
    lab = (REPO / "lab" / "go.mod").read_text()
    gwapi = re.search(r"sigs.k8s.io/gateway-api (v\S+)", lab)
    assert gwapi and gwapi.group(1) in sec, "README: not the lab's Gateway API release"
    assert "standard-install.yaml" in sec
    for cap in ("CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"):
        assert re.search(rf"`?{cap}`?[^\n]*:? ", sec), f"README does not explain {cap}"


# ---------------------------------------------------------------- examples


def self_signed(tmp: Path, host: str) -> tuple[str, str]:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "k.pem", "-out",
                    "c.pem", "-days", "1", "-subj", f"/CN={host}",
                    "-addext", f"subjectAltName=DNS:{host}"],
                   cwd=tmp, check=True, capture_output=True, timeout=30)
    return (base64.b64encode((tmp / "c.pem").read_bytes()).decode(),
            base64.b64encode((tmp / "k.pem").read_bytes()).decode())


EXAMPLE_FILES = ["quickstart.yaml", "canary.yaml", "header-routing.yaml", "https.yaml",
                 "cross-namespace.yaml"]


def test_examples_exist_and_hold_no_private_key():
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(EXAMPLE_FILES)
    for f in EXAMPLE_FILES:
        assert "PRIVATE KEY" not in (EXAMPLES / f).read_text(), f


def test_examples_translate_to_accepted_and_programmed(tmp_path: Path):
    """rauta's own model on the examples (+ the GatewayClass of deploy/ and a generated
    certificate for the HTTPS one): everything Accepted, Programmed, refs resolved."""
    from rauta.cli import translate_files

    crt, key = self_signed(tmp_path, "secure.example.com")
    docs = [o for f in EXAMPLE_FILES for o in load_all(EXAMPLES / f) if o["kind"] != "Deployment"]
    docs.append(one(base_objects(), "GatewayClass"))
    docs.append({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                 "metadata": {"name": "demo-tls", "namespace": "rauta-examples"},
                 "data": {"tls.crt": crt, "tls.key": key}})
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all(docs))
    doc = translate_files([str(tmp_path / "all.yaml")])
    st: Any = doc["status"]

    def ok(conds: list[dict[str, str]], where: str, *types: str) -> None:
        by = {c["type"]: c["status"] for c in conds}
        for t in types:
            assert by.get(t) == "True", f"{where}: {t} is {by.get(t)}: {conds}"

    [gc] = st["gatewayClasses"]
    ok(gc["conditions"], "GatewayClass rauta", "Accepted")
    gws = {g["name"]: g for g in st["gateways"]}
    assert set(gws) == {"demo", "demo-https"}
    for name, g in gws.items():
        ok(g["conditions"], f"Gateway {name}", "Accepted", "Programmed")
        for lis in g["listeners"]:
            ok(lis["conditions"], f"Gateway {name}/{lis['name']}", "Accepted", "Programmed",
               "ResolvedRefs")
    routes = {r["name"]: r for r in st["httpRoutes"]}
    assert set(routes) == {"web", "canary", "header-routing", "secure", "cross-namespace"}
    for name, r in routes.items():
        [parent] = r["parents"]
        ok(parent["conditions"], f"HTTPRoute {name}", "Accepted", "ResolvedRefs")


def test_cross_namespace_example_needs_its_reference_grant(tmp_path: Path):
    """Without the ReferenceGrant the cross-namespace route is refused: the grant in the
    example is what makes it work."""
    from rauta.cli import translate_files

    docs = [o for f in ("quickstart.yaml", "cross-namespace.yaml")
            for o in load_all(EXAMPLES / f) if o["kind"] not in ("Deployment", "ReferenceGrant")]
    docs.append(one(base_objects(), "GatewayClass"))
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all(docs))
    st: Any = translate_files([str(tmp_path / "all.yaml")])["status"]
    [r] = [r for r in st["httpRoutes"] if r["name"] == "cross-namespace"]
    by = {c["type"]: c for c in r["parents"][0]["conditions"]}
    assert (by["ResolvedRefs"]["status"], by["ResolvedRefs"]["reason"]) == \
        ("False", "RefNotPermitted")


# ---------------------------------------------------------------- dashboard and alerts

METRIC = re.compile(r"\b(rauta_[a-z0-9_]+)\b")


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", ())]
    for v in dash["templating"]["list"]:
        q = v.get("query")
        if isinstance(q, dict):
            exprs.append(q["query"])
    return exprs


def test_dashboard_parses_and_queries_only_rauta_metrics():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    for e in exprs:
        assert METRIC.search(e), f"query without a rauta_ metric: {e}"


@pytest.mark.parametrize("path", [ALERTS])
def test_alert_rules_parse_and_cover_proxy_and_observer(path: Path):
    doc = yaml.safe_load(path.read_text())
    names = {r["alert"] for g in doc["groups"] for r in g["rules"]}
    exprs = " ".join(r["expr"] for g in doc["groups"] for r in g["rules"])
    assert "rauta_requests_total" in exprs and "rauta_upstream_connect_errors_total" in exprs
    assert "rauta_observer_anomalies_total" in exprs
    assert len(names) == sum(len(g["rules"]) for g in doc["groups"]), "duplicate alert names"
    tests = yaml.safe_load((path.parent / "rauta-alerts.test.yaml").read_text())
    tested = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"]
              if t.get("exp_alerts")}
    assert tested == names, f"alerts without a firing promtool test: {sorted(names - tested)}"


def images_in(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [v for k, v in obj.items() if k == "image" and isinstance(v, str)] + \
            [i for v in obj.values() for i in images_in(v)]
    if isinstance(obj, list):
        return [i for v in obj for i in images_in(v)]
    return []


def test_no_manifest_image_is_untagged_or_latest():
    files = [*BASE.glob("*.yaml"), *OBSERVER.glob("*.yaml"), *EXAMPLES.glob("*.yaml")]
    images = [(f.name, i) for f in files for d in load_all(f) for i in images_in(d)]
    assert len(images) >= 6, images
    kust = [yaml.safe_load(p.read_text()) for p in (BASE / "kustomization.yaml",
                                                   OBSERVER / "kustomization.yaml")]
    retag = {i["name"]: i["newTag"] for k in kust for i in k.get("images", ())}
    for f, image in images:
        tag = retag.get(image) or (image.rpartition(":")[2] if ":" in image else "")
        assert tag and tag != "latest", f"{f}: image {image} untagged or latest"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for img in (values["image"], values["observer"]["image"]):
        assert img["tag"] in ("", None) or img["tag"] != "latest"  # "" = appVersion


def test_observer_daemonset_args_are_rauta_observe_flags():
    """The DaemonSet's and the chart's command lines parse with ``rauta observe`` itself, and
    the metrics port it binds is the container port the DaemonSet declares."""
    comp = yaml.safe_load((OBSERVER / "kustomization.yaml").read_text())
    [ds] = [o for r in comp["resources"] for o in load_all(OBSERVER / r)
            if o.get("kind") == "DaemonSet"]
    [c] = ds["spec"]["template"]["spec"]["containers"]
    chart = yaml.safe_load((REPO / "charts" / "rauta" / "values.yaml").read_text())
    for args in (c["args"], chart["observer"]["args"]):
        assert args[0] == "observe"
        p = main.commands["observe"].make_context("observe", list(args[1:])).params
        assert p["ifaces"], "the observer needs an interface"
        host, port = p["metrics"]
        assert host == "0.0.0.0", "Prometheus scrapes the pod (node) IP"
        [m] = [q for q in c["ports"] if q["name"] == "metrics"]
        assert m["containerPort"] == int(port)
