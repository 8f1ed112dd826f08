"""A real Kubernetes control plane on loopback, for tests that need the API server itself.

The lab runs three processes built from source by ``scripts/build-lab.sh`` (versions
pinned in ``lab/go.mod``): etcd, kube-apiserver and kube-controller-manager (only the
deployment, replicaset, endpoints/EndpointSlice, garbage-collector and namespace
controllers). There is no kubelet, scheduler or network: tests create Node objects, put
Pods on them with ``spec.nodeName`` and write Pod status themselves, or run the pod runner
(``tests/e2e/podrunner.py``), which plays kubelet and scheduler for one Node. The Gateway API standard-channel CRDs
are applied and waited for (Established) before the lab is handed out.

Every process binds 127.0.0.1 only. Certificates come from the ``openssl`` CLI. The
admin identity is a static bearer token in group ``system:masters``.

Locating the binaries (:func:`locate_lab_dir`):

- ``RAUTA_LAB_DIR`` names an already built lab directory: used as is;
- else, with Go on PATH, ``scripts/build-lab.sh`` runs (a no-op when its cache is warm,
  10-20 minutes cold on a 2-core machine);
- else, a warm cache for the pinned versions is used if there is one;
- else :class:`LabUnavailable` (the fixture turns it into a skip).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-lab.sh"
LAB_GO_MOD = REPO / "lab" / "go.mod"

SERVICE_CIDR = "10.96.0.0/16"
ADMIN_TOKEN_USER = "rauta-lab-admin"
# Deployments and ReplicaSets make Pods for the pod runner (tests/e2e/podrunner.py).
# node-lifecycle and podgc stay off: with no node heartbeats they would taint and evict.
KCM_CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "endpointslice-controller",
    "endpoints-controller",
    "garbage-collector-controller",
    "namespace-controller",
)

# kind -> (collection path, namespaced) for what the CRD files contain.
_APPLY_PATHS = {
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"):
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"):
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"):
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
}


class LabUnavailable(Exception):
    """The lab cannot run here (no Go toolchain and no prebuilt binaries)."""


class LabError(RuntimeError):
    """The lab was expected to run but did not come up."""


# ---------------------------------------------------------------- locating binaries


def _pinned_versions() -> dict[str, str]:
    wanted = {
        "k8s.io/kubernetes": "K8S_VERSION",
        "sigs.k8s.io/gateway-api": "GWAPI_VERSION",
        "go.etcd.io/etcd/server/v3": "ETCD_VERSION",
    }
    found: dict[str, str] = {}
    for line in LAB_GO_MOD.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in wanted and parts[1].startswith("v"):
            found.setdefault(wanted[parts[0]], parts[1])
    return found


def default_cache_dir() -> Path:
    """Where build-lab.sh puts the lab for the versions pinned in lab/go.mod."""
    v = _pinned_versions()
    root = Path(os.environ.get("RAUTA_LAB_CACHE") or Path.home() / ".cache" / "rauta-lab")
    return root / f"k8s-{v['K8S_VERSION']}-gwapi-{v['GWAPI_VERSION']}-etcd-{v['ETCD_VERSION']}"


def _lab_dir_complete(d: Path) -> bool:
    return all((d / "bin" / b).is_file() and os.access(d / "bin" / b, os.X_OK)
               for b in ("etcd", "kube-apiserver", "kube-controller-manager")) \
        and (d / "crds" / ".done").is_file()


def find_go() -> str | None:
    """The go command: on PATH, or where the official tarball installs it."""
    go = shutil.which("go")
    if go is None and os.access("/usr/local/go/bin/go", os.X_OK):
        go = "/usr/local/go/bin/go"
    return go


def _build_env() -> dict[str, str]:
    env = dict(os.environ)
    go = find_go()
    if go is not None:
        env["PATH"] = f"{Path(go).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def locate_lab_dir(build_timeout: float = 3000.0) -> Path:
    """Return a complete lab directory, building it when Go is available."""
    if env := os.environ.get("RAUTA_LAB_DIR"):
        d = Path(env)
        if not _lab_dir_complete(d):
            raise LabError(f"RAUTA_LAB_DIR={d} is not a complete lab (bin/*, crds/.done)")
        return d
    if find_go() is None:
        d = default_cache_dir()
        if _lab_dir_complete(d):
            return d
        raise LabUnavailable(
            "no Go toolchain on PATH and no prebuilt lab in "
            f"{d}: install Go and run scripts/build-lab.sh")
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], cwd=REPO, env=_build_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=build_timeout,
    )
    out = proc.stdout
    if proc.returncode != 0:
        raise LabError(f"scripts/build-lab.sh failed ({proc.returncode}):\n{out[-4000:]}")
    lab_dir = None
    for line in out.splitlines():
        if line.startswith("LAB_DIR="):
            lab_dir = Path(line.removeprefix("LAB_DIR="))
    if lab_dir is None or not _lab_dir_complete(lab_dir):
        raise LabError(f"scripts/build-lab.sh gave no complete LAB_DIR:\n{out[-4000:]}")
    took = time.monotonic() - t0
    if took > 5:
        print(f"\n[rauta-lab] build-lab.sh took {took:.0f}s", file=sys.stderr)
    return lab_dir


# ---------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


try:  # loaded here, not in the forked child, where taking the loader's lock could hang
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # pragma: no cover - not glibc
    _LIBC = None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGTERM the child if the test process dies without tearing down."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    if proc.returncode != 0:
        raise LabError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def make_certs(d: Path) -> None:
    """CA, serving cert for 127.0.0.1/localhost, and the service-account key pair."""
    if shutil.which("openssl") is None:
        raise LabError("the openssl CLI is needed to make the lab's certificates")
    d.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "7",
             "-subj", "/CN=rauta-lab-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash", cwd=d)
    _openssl("req", "-new", *ec, "-keyout", "serving.key", "-out", "serving.csr",
             "-subj", "/CN=kube-apiserver", cwd=d)
    (d / "serving.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n")
    _openssl("x509", "-req", "-in", "serving.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "serving.crt", "-days", "7",
             "-extfile", "serving.ext", cwd=d)
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
             "-out", "sa.key", cwd=d)
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)
    for key in ("ca.key", "serving.key", "sa.key"):
        (d / key).chmod(0o600)


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, n: int = 40) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def check_alive(self) -> None:
        rc = self.popen.poll()
        if rc is not None:
            raise LabError(f"{self.name} exited with {rc}; log tail:\n{self.tail()}")


# ---------------------------------------------------------------- the lab


@dataclass
class Lab:
    """One control plane. ``start()`` brings it up (CRDs Established), ``stop()`` ends it."""

    lab_dir: Path
    workdir: Path | None = None
    token: str = field(default_factory=lambda: os.urandom(16).hex())
    startup_seconds: float = 0.0
    _procs: list[_Proc] = field(default_factory=list)
    _own_workdir: bool = False
    etcd_url: str = ""
    server: str = ""
    apiserver_port: int = 0

    # -- paths

    @property
    def certs(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "pki"

    @property
    def ca_file(self) -> Path:
        return self.certs / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "kubeconfig"

    def bin(self, name: str) -> str:
        return str(self.lab_dir / "bin" / name)

    def versions(self) -> dict[str, str]:
        f = self.lab_dir / "versions.env"
        if not f.is_file():
            return {}
        return dict(line.split("=", 1) for line in f.read_text().split() if "=" in line)

    # -- lifecycle

    def start(self, timeout: float = 180.0) -> Lab:
        t0 = time.monotonic()
        deadline = t0 + timeout
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="rauta-lab-"))
            self._own_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            make_certs(self.certs)
            self._start_etcd(deadline)
            self._start_apiserver(deadline)
            self._write_kubeconfig()
            self._start_controller_manager(deadline)
            self.apply_crds(deadline)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        # One at a time, clients first, so none waits on a dependency already gone.
        for p in reversed(self._procs):
            if p.popen.poll() is None:
                p.popen.terminate()
            try:
                p.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait(timeout=10)
        self._procs.clear()
        if self._own_workdir and self.workdir is not None and not os.environ.get("RAUTA_LAB_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self, n: int = 40) -> str:
        return "\n\n".join(f"--- {p.name} ---\n{p.tail(n)}" for p in self._procs)

    # -- processes

    def _spawn(self, name: str, argv: list[str]) -> _Proc:
        assert self.workdir is not None
        log = self.workdir / f"{name}.log"
        fh = open(log, "ab")  # noqa: SIM115 - handed to the child
        try:
            popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                cwd=self.workdir, preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        finally:
            fh.close()
        proc = _Proc(name, popen, log)
        self._procs.append(proc)
        return proc

    def _start_etcd(self, deadline: float) -> None:
        assert self.workdir is not None
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        proc = self._spawn("etcd", [
            self.bin("etcd"),
            "--name=lab",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=lab=http://127.0.0.1:{peer}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync=true",
            "--quota-backend-bytes=2147483648",
            "--log-level=warn",
        ])

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as r:
                    return json.loads(r.read()).get("health") == "true"
            except (OSError, ValueError):
                return False

        _wait(healthy, deadline, proc, "etcd /health")

    def _start_apiserver(self, deadline: float) -> None:
        assert self.workdir is not None
        c = self.certs
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.token},{ADMIN_TOKEN_USER},{ADMIN_TOKEN_USER},"system:masters"\n')
        tokens.chmod(0o600)
        self.apiserver_port = free_port()
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        proc = self._spawn("kube-apiserver", [
            self.bin("kube-apiserver"),
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={c / 'serving.crt'}",
            f"--tls-private-key-file={c / 'serving.key'}",
            f"--client-ca-file={c / 'ca.crt'}",
            f"--etcd-servers={self.etcd_url}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            "--anonymous-auth=false",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={c / 'sa.pub'}",
            f"--service-account-signing-key-file={c / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # No service-account controller runs, so Pods must not need a "default" SA.
            "--disable-admission-plugins=ServiceAccount",
            # 127.0.0.1 is not a valid Endpoints address: don't publish the kubernetes
            # service's endpoints.
            "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=1",
        ])

        def ready() -> bool:
            try:
                status, body = self.request("GET", "/readyz", timeout=3)
            except OSError:
                return False
            return status == 200 and body.strip() == b"ok"

        _wait(ready, deadline, proc, "kube-apiserver /readyz")

    def _write_kubeconfig(self) -> None:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "lab", "cluster": {
                "server": self.server, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "admin",
                                                     "namespace": "default"}}],
            "current-context": "lab",
        }
        self.kubeconfig.write_text(yaml.safe_dump(cfg))
        self.kubeconfig.chmod(0o600)

    def _start_controller_manager(self, deadline: float) -> None:
        assert self.workdir is not None
        port = free_port()
        kc = str(self.kubeconfig)
        proc = self._spawn("kube-controller-manager", [
            self.bin("kube-controller-manager"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'kcm-certs'}",
            "--leader-elect=false",
            "--use-service-account-credentials=false",
            f"--controllers={','.join(KCM_CONTROLLERS)}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
            "--v=1",
        ])
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # its own self-signed serving cert, on loopback

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz",
                                            context=ctx, timeout=3) as r:
                    return r.status == 200
            except (OSError, ValueError):
                return False

        _wait(healthy, deadline, proc, "kube-controller-manager /healthz")

    # -- API access (synchronous, for setup; tests use kubernetes_asyncio)

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def request(self, method: str, path: str, body: bytes | dict[str, Any] | None = None,
                content_type: str = "application/json",
                timeout: float = 10) -> tuple[int, bytes]:
        """One authenticated request; returns (status, body) for any HTTP status."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self._ssl_context(), timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def apply_crds(self, deadline: float | None = None) -> list[str]:
        """Server-side apply every document in crds/*.yaml; wait for CRDs Established."""
        deadline = deadline or time.monotonic() + 60
        crds: list[str] = []
        for f in sorted((self.lab_dir / "crds").glob("*.yaml")):
            for doc in yaml.safe_load_all(f.read_text()):
                if not doc:
                    continue
                key = (doc.get("apiVersion"), doc.get("kind"))
                if key not in _APPLY_PATHS:
                    raise LabError(f"{f.name}: don't know where to apply {key}")
                name = doc["metadata"]["name"]
                path = f"{_APPLY_PATHS[key]}/{name}?fieldManager=rauta-lab&force=true"
                status, out = self.request("PATCH", path, json.dumps(doc).encode(),
                                           content_type="application/apply-patch+yaml")
                if status not in (200, 201):
                    raise LabError(f"apply {key[1]} {name}: {status} {out[:500]!r}")
                if key[1] == "CustomResourceDefinition":
                    crds.append(name)

        def established() -> bool:
            for name in crds:
                status, out = self.request(
                    "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                if status != 200:
                    return False
                conds = json.loads(out).get("status", {}).get("conditions", [])
                if not any(c["type"] == "Established" and c["status"] == "True"
                           for c in conds):
                    return False
            # ... and served: the group's discovery lists them.
            status, out = self.request("GET", "/apis/gateway.networking.k8s.io/v1")
            return status == 200 and b"httproutes" in out

        _wait(established, deadline, self._procs[1] if len(self._procs) > 1 else None,
              "Gateway API CRDs Established")
        return crds

    def api_configuration(self) -> Any:
        """A ``kubernetes_asyncio.client.Configuration`` for the admin identity."""
        from kubernetes_asyncio import client

        cfg = client.Configuration(host=self.server)
        cfg.api_key = {"BearerToken": self.token}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
        cfg.ssl_ca_cert = str(self.ca_file)
        cfg.verify_ssl = True
        return cfg


def _wait(cond: Any, deadline: float, proc: _Proc | None, what: str,
          interval: float = 0.2) -> None:
    while True:
        if proc is not None:
            proc.check_alive()
        if cond():
            return
        if time.monotonic() > deadline:
            tail = proc.tail() if proc is not None else ""
            raise LabError(f"timed out waiting for {what}\n{tail}")
        time.sleep(interval)
