"""``rauta controller`` as a real process against the lab's real API server.

Each test has its own namespaces, its own GatewayClass with a unique controllerName, its
own Lease (in its namespace), free listener ports on its own 127.0.0.x address, and
removes what it made. Backends live in network namespaces (``tests/e2e/netns.py``): the API
server does not take loopback endpoint addresses. Every wait is bounded.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rauta.model.features import supported
from rauta.model.render import status_document
from rauta.model.snapshot import Snapshot
from rauta.model.translate import translate
from tests.e2e.ctlproc import Api, ControllerProcess, logs_on_failure
from tests.e2e.lab import Lab
from tests.e2e.netns import BackendNet, http_get, netns_unavailable

pytestmark = pytest.mark.timeout(150, func_only=True)

GW = "gateway.networking.k8s.io"
GWV = f"{GW}/v1"
HTTPROUTE_KIND = [{"group": GW, "kind": "HTTPRoute"}]

# A kubernetes.io/tls Secret only needs both keys to exist for the API server and for
# rauta's ResolvedRefs; these are only used on listeners that are never programmed.
# Structurally valid PEM (the model checks structure; the proxy parses key material).
DUMMY_CRT = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n").decode()
DUMMY_KEY = base64.b64encode(b"-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n").decode()


# ---------------------------------------------------------------- helpers


def uid() -> str:
    return uuid.uuid4().hex[:8]


_used_loopback: set[str] = set()


def loopback_address() -> str:
    """A 127.0.0.x no other controller of this session listens on (x random, not 1)."""
    while True:
        addr = f"127.0.0.{random.randint(20, 250)}"
        if addr not in _used_loopback:
            _used_loopback.add(addr)
            return addr


def free_ports(host: str, n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(fn: Callable[[], Any], timeout: float, what: str,
               procs: tuple[ControllerProcess, ...] = (), interval: float = 0.15) -> Any:
    """Poll ``fn`` until it returns something truthy (an AssertionError or OSError counts
    as "not yet"); returns that value. Fails after ``timeout`` s, or when a controller of
    ``procs`` has exited."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        for p in procs:
            if p.popen is not None and p.popen.poll() is not None:
                raise AssertionError(f"controller died waiting for {what}\n{p.describe()}")
        try:
            last = fn()
        except (AssertionError, OSError) as exc:  # not true (or not answering) yet
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                 f"last={last!r}")
        time.sleep(interval)


def gateway(ns: str, name: str, gc: str, listeners: list[dict[str, Any]],
            **spec: Any) -> dict[str, Any]:
    return {"apiVersion": GWV, "kind": "Gateway", "metadata": {"name": name, "namespace": ns},
            "spec": {"gatewayClassName": gc, "listeners": listeners, **spec}}


def listener(name: str, port: int, protocol: str = "HTTP", **kw: Any) -> dict[str, Any]:
    return {"name": name, "port": port, "protocol": protocol, **kw}


def route(ns: str, name: str, parents: list[dict[str, Any]], rules: list[dict[str, Any]],
          hostnames: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"parentRefs": parents, "rules": rules}
    if hostnames:
        spec["hostnames"] = hostnames
    return {"apiVersion": GWV, "kind": "HTTPRoute", "metadata": {"name": name, "namespace": ns},
            "spec": spec}


def backend(name: str, port: int = 80, **kw: Any) -> dict[str, Any]:
    return {"name": name, "port": port, **kw}


def rule(*backends: dict[str, Any], path: str | None = None, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"backendRefs": list(backends), **kw}
    if path is not None:
        out["matches"] = [{"path": {"type": "PathPrefix", "value": path}}]
    return out


def service(ns: str, name: str, *, selector: dict[str, str] | None = None,
            app_protocol: str | None = None, target: int = 8080) -> dict[str, Any]:
    port: dict[str, Any] = {"name": "http", "port": 80, "targetPort": target}
    if app_protocol:
        port["appProtocol"] = app_protocol
    spec: dict[str, Any] = {"ports": [port]}
    if selector:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": spec}


def endpoint_slice(ns: str, svc: str, address: str, port: int = 8080) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-manual", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc,
                                    "endpointslice.kubernetes.io/managed-by": "rauta-tests"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}]}


def tls_secret(ns: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": ns},
            "data": {"tls.crt": DUMMY_CRT, "tls.key": DUMMY_KEY}}


def self_signed(hostname: str) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a fresh self-signed EC certificate for ``hostname``."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "k.pem", "-out", "c.pem",
             "-days", "1", "-subj", f"/CN={hostname}",
             "-addext", f"subjectAltName=DNS:{hostname}"],
            cwd=d, check=True, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        return (Path(d, "c.pem").read_bytes(), Path(d, "k.pem").read_bytes())


def real_tls_secret(ns: str, name: str, pair: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": ns},
            "data": {"tls.crt": base64.b64encode(pair[0]).decode(),
                     "tls.key": base64.b64encode(pair[1]).decode()}}


def https_get(host: str, port: int, sni: str, ca_pem: bytes, path: str = "/"
              ) -> tuple[str, bytes]:
    """GET over TLS with ``sni``, verifying against ``ca_pem``: (status line, head)."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    with socket.create_connection((host, port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=sni) as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n"
                    .encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0].decode(), data


def conds(items: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in items or ()}


def brief(c: dict[str, Any]) -> tuple[str, str]:
    return c["status"], c["reason"]


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---------------------------------------------------------------- the per-test world


@dataclass
class Env:
    lab: Lab
    api: Api
    id: str
    ns: str
    other: str
    gc: str
    ctl_name: str
    procs: list[ControllerProcess] = field(default_factory=list)

    def controller(self, *, identity: str | None = None, listen_host: str | None = None,
                   lease: str | None = None, lease_duration: float = 15.0,
                   ready: bool = True, extra: tuple[str, ...] = ()) -> ControllerProcess:
        p = ControllerProcess(self.lab.kubeconfig, controller_name=self.ctl_name,
                              listen_host=listen_host or loopback_address(),
                              lease_name=lease or f"rauta-{self.id}",
                              lease_namespace=self.ns,
                              identity=identity or f"ctl-{self.id}-{len(self.procs)}",
                              lease_duration=lease_duration, extra=extra)
        self.procs.append(p)
        p.start()
        if ready:
            p.wait_ready(30)
        return p

    # -- reads

    def gw(self, name: str, ns: str | None = None) -> dict[str, Any]:
        obj = self.api.get("Gateway", ns or self.ns, name)
        assert obj is not None, f"Gateway {name} is gone"
        return obj

    def route(self, name: str, ns: str | None = None) -> dict[str, Any]:
        obj = self.api.get("HTTPRoute", ns or self.ns, name)
        assert obj is not None, f"HTTPRoute {name} is gone"
        return obj

    def our_parents(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        return [p for p in (obj.get("status") or {}).get("parents") or ()
                if p.get("controllerName") == self.ctl_name]

    def route_conds(self, name: str, ns: str | None = None) -> dict[str, dict[str, Any]]:
        """Our (single) parent entry's conditions, or {} while there is none."""
        ours = self.our_parents(self.route(name, ns))
        return conds(ours[0]["conditions"]) if ours else {}

    def listeners(self, gw: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {lis["name"]: lis for lis in (gw.get("status") or {}).get("listeners") or ()}

    def written(self, p: ControllerProcess, kind: str | None = None) -> float:
        labels = {"outcome": "written"} | ({"kind": kind} if kind else {})
        return p.metric("rauta_status_writes_total", **labels)

    # -- the model's view of the same objects

    def snapshot(self) -> Snapshot:
        """What this test's controller sees, read back from the API server."""
        objs: list[dict[str, Any]] = []
        gc = self.api.get("GatewayClass", None, self.gc)
        assert gc is not None
        objs.append(dict(gc, kind="GatewayClass", apiVersion=GWV))
        for ns in (self.ns, self.other):
            nso = self.api.get("Namespace", None, ns)
            assert nso is not None
            objs.append(dict(nso, kind="Namespace", apiVersion="v1"))
            for kind in ("Gateway", "HTTPRoute", "ReferenceGrant", "Service", "EndpointSlice"):
                objs.extend(self.api.list(kind, ns))
            # The controller watches only kubernetes.io/tls Secrets.
            objs.extend(self.api.list("Secret", ns, "?fieldSelector=type%3Dkubernetes.io%2Ftls"))
        for o in objs:
            o.pop("status", None)
            o["metadata"].pop("managedFields", None)
        return Snapshot.from_dicts(objs)

    def assert_matches_model(self) -> bool:
        """Every status the controller wrote equals what ``translate`` computes for the same
        objects, and every condition carries the object's generation and a time."""
        doc = status_document(translate(self.snapshot(), controller_name=self.ctl_name)
                              .statuses)
        gc = self.api.get("GatewayClass", None, self.gc)
        assert gc is not None
        [want_gc] = doc["gatewayClasses"]
        self._check_conds(gc, gc["status"]["conditions"], want_gc["conditions"], "GatewayClass")
        for want in doc["gateways"]:
            gw = self.gw(want["name"], want["namespace"])
            where = f"Gateway {want['namespace']}/{want['name']}"
            st = gw.get("status") or {}
            self._check_conds(gw, st.get("conditions"), want["conditions"], where)
            got_l = st.get("listeners") or []
            assert [lis["name"] for lis in got_l] == [w["name"] for w in want["listeners"]], where
            for got, w in zip(got_l, want["listeners"], strict=True):
                lw = f"{where} listener {w['name']}"
                assert got["supportedKinds"] == w["supportedKinds"], lw
                assert got["attachedRoutes"] == w["attachedRoutes"], lw
                self._check_conds(gw, got["conditions"], w["conditions"], lw)
        for want in doc["httpRoutes"]:
            rt = self.route(want["name"], want["namespace"])
            where = f"HTTPRoute {want['namespace']}/{want['name']}"
            got_p = self.our_parents(rt)
            assert [p["parentRef"] for p in got_p] == [w["parentRef"] for w in want["parents"]], \
                where
            for got, w in zip(got_p, want["parents"], strict=True):
                self._check_conds(rt, got["conditions"], w["conditions"], where)
        return True

    @staticmethod
    def _check_conds(obj: dict[str, Any], got: list[dict[str, Any]] | None,
                     want: list[dict[str, str]], where: str) -> None:
        got = got or []
        plain = [{k: c.get(k) for k in ("type", "status", "reason", "message")} for c in got]
        assert plain == want, f"{where}: written {plain} != model {want}"
        gen = obj["metadata"]["generation"]
        for c in got:
            assert c.get("observedGeneration") == gen, f"{where} {c['type']}: {c} (gen {gen})"
            assert c.get("lastTransitionTime"), f"{where} {c['type']}: no lastTransitionTime"


@pytest.fixture
def env(lab: Lab) -> Iterator[Env]:
    api = Api(lab)
    ident = uid()
    e = Env(lab=lab, api=api, id=ident, ns=f"t-{ident}", other=f"t-{ident}-b",
            gc=f"gc-{ident}", ctl_name=f"rauta.io/t-{ident}")
    try:
        for ns in (e.ns, e.other):
            api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        api.create({"apiVersion": GWV, "kind": "GatewayClass", "metadata": {"name": e.gc},
                    "spec": {"controllerName": e.ctl_name}})
        yield e
    finally:
        for p in e.procs:
            p.cleanup()
        api.cleanup()


@pytest.fixture
def backends() -> Iterator[BackendNet]:
    why = netns_unavailable()
    if why is not None:
        print(f"\n[rauta-e2e] skipping: network namespaces unavailable: {why}")
        pytest.skip(f"network namespaces unavailable: {why}")
    with BackendNet() as net:
        yield net


# ---------------------------------------------------------------- statuses


def test_statuses_for_every_reason(env: Env) -> None:
    api, ns, other = env.api, env.ns, env.other
    host = loopback_address()
    (p_http, p_host, p_https, p_tcp, p_kinds, p_proto, p_named,
     p_extra) = free_ports(host, 8)
    sec = "http"

    api.create(tls_secret(ns, "tls"))
    pair = self_signed("x.example.com")
    api.create(real_tls_secret(other, "tls", pair))
    api.create(service(ns, "web"))
    api.create(service(other, "web"))
    api.create(service(ns, "h2c", app_protocol="kubernetes.io/h2c"))
    api.create(gateway(ns, "gw", env.gc, [
        listener("http", p_http),
        listener("host", p_host, hostname="a.example.com"),
        listener("missing-cert", p_https, "HTTPS", hostname="m.example.com",
                 tls={"certificateRefs": [{"name": "no-such-secret"}]}),
        listener("xns-cert", p_https, "HTTPS", hostname="x.example.com",
                 tls={"certificateRefs": [{"name": "tls", "namespace": other}]}),
        listener("tcp", p_tcp, "TCP"),
        listener("kinds", p_kinds, allowedRoutes={"kinds": [{"kind": "GRPCRoute"}]}),
        listener("plain", p_proto),
        listener("secure", p_proto, "HTTPS", tls={"certificateRefs": [{"name": "tls"}]}),
    ]))
    # Later Gateways lose shared ports to the older one (same second: by name).
    api.create(gateway(ns, "gw2", env.gc, [listener("dup", p_http)]))
    api.create(gateway(ns, "gw3", env.gc, [
        listener("other", p_http, "HTTPS", tls={"certificateRefs": [{"name": "tls"}]})]))
    api.create(gateway(ns, "gw-named", env.gc, [listener("http", p_named)],
                       addresses=[{"type": "NamedAddress", "value": "reserved-lb"}]))

    to_http = [{"name": "gw", "sectionName": sec}]
    web = backend("web")
    api.create(route(ns, "r-ok", to_http, [rule(web)]))
    api.create(route(other, "r-notallowed",
                     [{"name": "gw", "namespace": ns, "sectionName": sec}], [rule(web)]))
    api.create(route(ns, "r-nohost", [{"name": "gw", "sectionName": "host"}], [rule(web)],
                     hostnames=["b.example.org"]))
    api.create(route(ns, "r-noparent", [{"name": "gw", "sectionName": "nope"}], [rule(web)]))
    api.create(route(ns, "r-unsupported", to_http, [rule(web, filters=[
        {"type": "ExtensionRef",
         "extensionRef": {"group": "example.com", "kind": "Auth", "name": "strict"}}])]))
    api.create(route(ns, "r-partial", to_http, [
        rule(web, path="/ok"),
        {"matches": [{"path": {"type": "RegularExpression", "value": "/items/(\\d+"}}],
         "backendRefs": [web]}]))
    api.create(route(ns, "r-refnp", to_http, [rule(backend("web", namespace=other))]))
    api.create(route(ns, "r-kind", to_http, [rule({"group": "", "kind": "ConfigMap",
                                                   "name": "cm"})]))
    api.create(route(ns, "r-notfound", to_http, [rule(backend("missing"))]))
    api.create(route(ns, "r-proto", to_http, [rule(backend("h2c"))]))
    api.create(route(ns, "r-addr", [{"name": "gw-named"}], [rule(web)]))

    ctl = env.controller(listen_host=host)
    with logs_on_failure(ctl):
        # -- GatewayClass
        def gc_conds() -> dict[str, dict[str, Any]]:
            obj = api.get("GatewayClass", None, env.gc) or {}
            c = conds((obj.get("status") or {}).get("conditions"))
            return c if c.get("Accepted", {}).get("reason") != "Pending" else {}

        c = wait_until(gc_conds, 20, "GatewayClass status", (ctl,))
        assert brief(c["Accepted"]) == ("True", "Accepted")
        assert brief(c["SupportedVersion"]) == ("True", "SupportedVersion")
        # GEP-2162: the API server kept supportedFeatures as written (the CRD has the field).
        # This controller runs without --address-pool, so the pool-only features are left out.
        features = (api.get("GatewayClass", None, env.gc) or {})["status"]["supportedFeatures"]
        assert [f["name"] for f in features] == sorted(
            f.name for f in supported(address_pool=False))
        assert "GatewayStaticAddresses" not in [f["name"] for f in features]

        # -- routes: one parent entry each, with the reason of its case
        expect_route = {
            ("r-ok", ns): {"Accepted": ("True", "Accepted"),
                           "ResolvedRefs": ("True", "ResolvedRefs")},
            ("r-notallowed", other): {"Accepted": ("False", "NotAllowedByListeners"),
                                      "ResolvedRefs": ("True", "ResolvedRefs")},
            ("r-nohost", ns): {"Accepted": ("False", "NoMatchingListenerHostname")},
            ("r-noparent", ns): {"Accepted": ("False", "NoMatchingParent")},
            ("r-unsupported", ns): {"Accepted": ("False", "UnsupportedValue")},
            ("r-partial", ns): {"Accepted": ("True", "Accepted"),
                                "PartiallyInvalid": ("True", "UnsupportedValue")},
            ("r-refnp", ns): {"Accepted": ("True", "Accepted"),
                              "ResolvedRefs": ("False", "RefNotPermitted")},
            ("r-kind", ns): {"ResolvedRefs": ("False", "InvalidKind")},
            ("r-notfound", ns): {"ResolvedRefs": ("False", "BackendNotFound")},
            ("r-proto", ns): {"ResolvedRefs": ("False", "UnsupportedProtocol")},
            ("r-addr", ns): {"Accepted": ("False", "NoMatchingParent")},
        }
        for (name, rns), want in expect_route.items():
            got = wait_until(lambda n=name, s=rns: env.route_conds(n, s), 20,
                             f"status of HTTPRoute {rns}/{name}", (ctl,))
            for ctype, sr in want.items():
                assert ctype in got, (name, got)
                assert brief(got[ctype]) == sr, (name, ctype, got[ctype])
        assert "PartiallyInvalid" not in env.route_conds("r-ok")
        assert env.route_conds("r-partial")["PartiallyInvalid"]["message"].startswith(
            "Dropped Rule")

        # -- Gateways and listeners
        def gw_status(name: str) -> dict[str, Any]:
            return wait_until(lambda: env.gw(name).get("status", {}).get("listeners")
                              and conds(env.gw(name)["status"]["conditions"])["Accepted"]
                              ["reason"] != "Pending" and env.gw(name), 20,
                              f"status of Gateway {name}", (ctl,))

        g = gw_status("gw")
        gc_ = conds(g["status"]["conditions"])
        assert brief(gc_["Accepted"]) == ("True", "ListenersNotValid")
        assert brief(gc_["Programmed"]) == ("True", "Programmed")
        lis = env.listeners(g)
        want_l = {  # name: Accepted, Programmed, ResolvedRefs, Conflicted
            "http": ("Accepted", "Programmed", "ResolvedRefs", "NoConflicts"),
            "host": ("Accepted", "Programmed", "ResolvedRefs", "NoConflicts"),
            "missing-cert": ("Accepted", "Invalid", "InvalidCertificateRef", "NoConflicts"),
            "xns-cert": ("Accepted", "Invalid", "RefNotPermitted", "NoConflicts"),
            "tcp": ("UnsupportedProtocol", "Invalid", "ResolvedRefs", "NoConflicts"),
            "kinds": ("Accepted", "Programmed", "InvalidRouteKinds", "NoConflicts"),
            "plain": ("Accepted", "Invalid", "ResolvedRefs", "ProtocolConflict"),
            "secure": ("Accepted", "Invalid", "ResolvedRefs", "ProtocolConflict"),
        }
        assert list(lis) == list(want_l)
        for name, reasons in want_l.items():
            lc = conds(lis[name]["conditions"])
            got_r = tuple(lc[t]["reason"] for t in
                          ("Accepted", "Programmed", "ResolvedRefs", "Conflicted"))
            assert got_r == reasons, (name, lc)
            conflicted = reasons[3] != "NoConflicts"
            assert lc["Conflicted"]["status"] == ("True" if conflicted else "False"), name
        # ok, partial, refnp, kind, notfound, proto, and unsupported: attachment depends only
        # on parentRefs and allowedRoutes, so a route whose rules are all invalid counts too.
        assert lis["http"]["attachedRoutes"] == 7
        assert lis["host"]["attachedRoutes"] == 0
        assert lis["http"]["supportedKinds"] == HTTPROUTE_KIND
        assert lis["tcp"]["supportedKinds"] == []
        assert lis["kinds"]["supportedKinds"] == []
        assert conds(lis["tcp"]["conditions"])["Accepted"]["status"] == "False"
        assert conds(lis["missing-cert"]["conditions"])["ResolvedRefs"]["status"] == "False"

        g2 = env.listeners(gw_status("gw2"))["dup"]
        assert brief(conds(g2["conditions"])["Conflicted"]) == ("True", "HostnameConflict")
        g3 = gw_status("gw3")
        assert brief(conds(g3["status"]["conditions"])["Accepted"]) == (
            "False", "ListenersNotValid")
        assert brief(conds(env.listeners(g3)["other"]["conditions"])["Accepted"]) == (
            "False", "PortUnavailable")
        gn = gw_status("gw-named")
        assert brief(conds(gn["status"]["conditions"])["Accepted"]) == (
            "False", "UnsupportedAddress")
        assert brief(conds(gn["status"]["conditions"])["Programmed"]) == ("False", "Invalid")

        # The programmed listeners really listen, the others do not.
        for port in (p_http, p_host, p_kinds):
            assert http_get(host, port, "/", timeout=3)[0] in (404, 500, 503)
        for port in (p_https, p_tcp, p_proto, p_named):  # (p_https: until granted below)
            with pytest.raises(OSError):
                http_get(host, port, "/", timeout=1)

        # -- the whole picture equals the model's translation of the same objects
        wait_until(env.assert_matches_model, 15, "statuses = model", (ctl,))

        # -- a spec edit: observedGeneration follows, unchanged conditions keep their time
        before_gw = env.gw("gw")
        before_ok = env.route("r-ok")
        before_nf = env.route("r-notfound")
        stamp = max(parse_time(c["lastTransitionTime"])
                    for c in [*before_gw["status"]["conditions"],
                              *env.our_parents(before_nf)[0]["conditions"],
                              *env.our_parents(before_ok)[0]["conditions"]])
        while dt.datetime.now(dt.UTC) < stamp + dt.timedelta(seconds=1.2):
            time.sleep(0.1)
        spec = before_gw["spec"]
        api.patch("Gateway", ns, "gw", {"spec": {"listeners": [
            *spec["listeners"], listener("extra", p_extra, hostname="e.example.com")]}})
        ok_spec = before_ok["spec"]
        api.patch("HTTPRoute", ns, "r-ok", {"spec": {"rules": [
            *ok_spec["rules"], rule(web, path="/more")]}})
        api.create(service(ns, "missing"))  # r-notfound resolves now (generation stays 1)

        def bumped() -> dict[str, Any] | None:
            g = env.gw("gw")
            st = g.get("status") or {}
            all_c = list(st.get("conditions") or ()) + [
                c for lis in st.get("listeners") or () for c in lis["conditions"]]
            ok = (g["metadata"]["generation"] == 2 and "extra" in env.listeners(g)
                  and all(c["observedGeneration"] == 2 for c in all_c))
            return g if ok else None

        after_gw = wait_until(bumped, 20, "Gateway observedGeneration 2", (ctl,))
        old_c, new_c = conds(before_gw["status"]["conditions"]), conds(
            after_gw["status"]["conditions"])
        for t in ("Accepted", "Programmed"):
            assert new_c[t]["status"] == old_c[t]["status"]
            assert new_c[t]["lastTransitionTime"] == old_c[t]["lastTransitionTime"], t
        old_http = conds(env.listeners(before_gw)["http"]["conditions"])
        new_http = conds(env.listeners(after_gw)["http"]["conditions"])
        for t, c in new_http.items():
            assert c["lastTransitionTime"] == old_http[t]["lastTransitionTime"], (t, c)
            assert c["observedGeneration"] == 2
        assert brief(conds(env.listeners(after_gw)["extra"]["conditions"])["Programmed"]) == (
            "True", "Programmed")

        def route_bumped() -> dict[str, dict[str, Any]] | None:
            r = env.route("r-ok")
            c = env.route_conds("r-ok")
            ok = r["metadata"]["generation"] == 2 and c and all(
                x["observedGeneration"] == 2 for x in c.values())
            return c if ok else None

        ok_after = wait_until(route_bumped, 20, "HTTPRoute r-ok observedGeneration 2", (ctl,))
        ok_before = conds(env.our_parents(before_ok)[0]["conditions"])
        for t, c in ok_after.items():
            assert c["lastTransitionTime"] == ok_before[t]["lastTransitionTime"], (t, c)

        nf_after = wait_until(
            lambda: (c := env.route_conds("r-notfound"))["ResolvedRefs"]["status"] == "True"
            and c, 20, "r-notfound ResolvedRefs True", (ctl,))
        nf_before = conds(env.our_parents(before_nf)[0]["conditions"])
        assert brief(nf_after["ResolvedRefs"]) == ("True", "ResolvedRefs")
        assert parse_time(nf_after["ResolvedRefs"]["lastTransitionTime"]) > parse_time(
            nf_before["ResolvedRefs"]["lastTransitionTime"])
        assert nf_after["Accepted"]["lastTransitionTime"] == \
            nf_before["Accepted"]["lastTransitionTime"]
        assert nf_after["ResolvedRefs"]["observedGeneration"] == 1

        # -- a ReferenceGrant makes the cross-namespace Service and certificate usable
        api.create({"apiVersion": f"{GW}/v1beta1", "kind": "ReferenceGrant",
                    "metadata": {"name": "allow", "namespace": other},
                    "spec": {"from": [{"group": GW, "kind": "HTTPRoute", "namespace": ns},
                                      {"group": GW, "kind": "Gateway", "namespace": ns}],
                             "to": [{"group": "", "kind": "Service"},
                                    {"group": "", "kind": "Secret"}]}})
        wait_until(lambda: env.route_conds("r-refnp")["ResolvedRefs"]["status"] == "True", 20,
                   "r-refnp ResolvedRefs True", (ctl,))
        xns = wait_until(lambda: (x := conds(env.listeners(env.gw("gw"))["xns-cert"]
                                            ["conditions"]))["Programmed"]["status"] == "True"
                         and x, 20, "listener xns-cert programmed", (ctl,))
        assert brief(xns["ResolvedRefs"]) == ("True", "ResolvedRefs")
        status_line, _ = wait_until(lambda: https_get(host, p_https, "x.example.com", pair[0]),
                                    10, "TLS on the xns-cert listener", (ctl,))
        assert status_line.startswith("HTTP/1.1 404"), status_line

        wait_until(env.assert_matches_model, 15, "statuses = model", (ctl,))


def test_other_controllers_parent_entries_survive(env: Env) -> None:
    api, ns = env.api, env.ns
    host = loopback_address()
    [port] = free_ports(host, 1)
    api.create(service(ns, "web"))
    api.create(gateway(ns, "gw", env.gc, [listener("http", port)]))
    api.create(route(ns, "r", [{"name": "gw"}, {"name": "theirs"}], [rule(backend("web"))]))
    created = env.route("r")
    foreign = {
        "parentRef": {"group": GW, "kind": "Gateway", "namespace": ns, "name": "theirs"},
        "controllerName": "example.com/other-controller",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                        "message": "accepted by the other controller",
                        "observedGeneration": 1,
                        "lastTransitionTime": "2024-01-01T00:00:00Z"}],
    }
    created["status"] = {"parents": [foreign]}
    api.put_status(created)

    ctl = env.controller(listen_host=host)
    with logs_on_failure(ctl):
        wait_until(lambda: env.route_conds("r"), 20, "our parent entry", (ctl,))
        parents = env.route("r")["status"]["parents"]
        assert parents[0] == foreign, parents
        assert [p["controllerName"] for p in parents] == [foreign["controllerName"],
                                                          env.ctl_name]
        assert parents[1]["parentRef"]["name"] == "gw"

        # Our entry changes (spec edit, generation 2): theirs is still untouched.
        api.patch("HTTPRoute", ns, "r", {"spec": {"rules": [rule(backend("nowhere"))]}})
        wait_until(lambda: env.route_conds("r")["ResolvedRefs"]["reason"] == "BackendNotFound",
                   20, "ResolvedRefs BackendNotFound", (ctl,))
        parents = env.route("r")["status"]["parents"]
        assert parents[0] == foreign and len(parents) == 2, parents

        # Detach from our Gateway: our entry goes, theirs stays.
        api.patch("HTTPRoute", ns, "r", {"spec": {"parentRefs": [{"name": "theirs"}]}})
        wait_until(lambda: env.route("r")["status"]["parents"] == [foreign], 20,
                   "our entry removed, theirs kept", (ctl,))


# ---------------------------------------------------------------- traffic


def _pod(ns: str, name: str, node: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": node, "containers": [
                {"name": "c", "image": "registry.invalid/none:1",
                 "ports": [{"containerPort": 8080}]}]}}


def set_pod_ready(api: Api, ns: str, name: str, ip: str, ready: bool) -> None:
    """Write the status a kubelet would: Running, with ``ip``, Ready or not."""
    pod = api.get("Pod", ns, name)
    assert pod is not None
    now = pod["metadata"]["creationTimestamp"]
    flag = "True" if ready else "False"
    pod["status"] = {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.0.2.99",
        "startTime": now,
        "conditions": [{"type": t, "status": "True" if t in ("PodScheduled", "Initialized")
                        else flag, "lastTransitionTime": now}
                       for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]}
    api.put_status(pod)


@pytest.mark.parametrize("workers", [1, 2])
def test_apply_change_delete_follows_traffic(env: Env, backends: BackendNet,
                                             workers: int) -> None:
    """Traffic follows every change, with one data plane and with two workers
    (``--workers 2``: every change reaches both, the port is Programmed once both bound
    it)."""
    api, ns = env.api, env.ns
    alpha = backends.start_echo("alpha")
    beta = backends.start_echo("beta")
    host = loopback_address()
    [port] = free_ports(host, 1)

    # alpha: a Service with a selector, a Pod on a Node, Pod status written by the test,
    # and the real EndpointSlice controller making the slice.
    node = f"node-{env.id}"
    api.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    api.create(service(ns, "alpha", selector={"app": "alpha"}))
    api.create(_pod(ns, "alpha-0", node, {"app": "alpha"}))
    set_pod_ready(api, ns, "alpha-0", alpha.address, True)
    # beta: a Service without selector and an EndpointSlice created directly.
    api.create(service(ns, "beta"))
    api.create(endpoint_slice(ns, "beta", beta.address))
    api.create(gateway(ns, "gw", env.gc, [listener("http", port)]))

    ctl = env.controller(listen_host=host, extra=("--workers", str(workers)))

    def answer(path: str) -> tuple[int, str | None]:
        try:
            status, headers, _ = http_get(host, port, path, timeout=3)
        except OSError as exc:
            return 0, str(exc)
        return status, headers.get("x-backend")

    def expect(path: str, want: tuple[int, str | None], what: str) -> None:
        seen: list[tuple[int, str | None]] = []

        def check() -> bool:
            seen.append(answer(path))
            return seen[-1] == want

        try:
            wait_until(check, 20, f"{what}: GET {path} -> {want}", (ctl,))
        except AssertionError as exc:
            exc.add_note(f"last answers: {seen[-5:]}")
            raise

    with logs_on_failure(ctl):
        api.create(route(ns, "web", [{"name": "gw"}], [rule(backend("alpha"))]))
        expect("/", (200, "alpha"), "route created")
        c = env.route_conds("web")
        assert brief(c["Accepted"]) == ("True", "Accepted")
        assert brief(c["ResolvedRefs"]) == ("True", "ResolvedRefs")
        assert [answer(f"/x/{i}") for i in range(5)] == [(200, "alpha")] * 5

        # The Pod turns not ready: the endpointslice controller says so, rauta answers 503.
        set_pod_ready(api, ns, "alpha-0", alpha.address, False)
        expect("/", (503, None), "pod not ready")
        set_pod_ready(api, ns, "alpha-0", alpha.address, True)
        expect("/", (200, "alpha"), "pod ready again")

        # The Pod goes away: the endpointslice controller replaces the slice, rauta 503s.
        api.delete("Pod", ns, "alpha-0", grace=0)
        expect("/", (503, None), "pod deleted")

        # Change the backend.
        api.patch("HTTPRoute", ns, "web", {"spec": {"rules": [rule(backend("beta"))]}})
        expect("/", (200, "beta"), "backend changed")

        # Change the path.
        api.patch("HTTPRoute", ns, "web", {"spec": {"rules": [rule(backend("beta"),
                                                                   path="/v2")]}})
        expect("/", (404, None), "path changed: / no longer routed")
        assert answer("/v2/thing") == (200, "beta")

        # Delete the route.
        api.delete("HTTPRoute", ns, "web")
        expect("/v2/thing", (404, None), "route deleted")
        cfg = ctl.config()["config"]
        assert all(not lr.get("rules") for p in cfg.get("ports", [])
                   for lr in p.get("listeners", [])), cfg
        if workers > 1:  # both workers served, and each applied every change
            for w in ("0", "1"):
                assert ctl.metric("rauta_requests_total", worker=w) > 0, w
            gens = {ctl.metric("rauta_config_generation", worker=w) for w in ("0", "1")}
            assert len(gens) == 1 and gens.pop() >= 5, gens


# ---------------------------------------------------------------- validation


def test_crd_invalid_objects_never_reach_the_controller(env: Env) -> None:
    api, ns = env.api, env.ns
    host = loopback_address()
    [port, port2] = free_ports(host, 2)
    api.create(service(ns, "web"))
    api.create(gateway(ns, "gw", env.gc, [listener("http", port)]))
    api.create(route(ns, "good", [{"name": "gw"}], [rule(backend("web"), path="/good")]))
    ctl = env.controller(listen_host=host)
    with logs_on_failure(ctl):
        wait_until(lambda: env.route_conds("good").get("Accepted", {}).get("status") == "True",
                   20, "good route accepted", (ctl,))
        time.sleep(0.5)
        before = ctl.config()
        writes = env.written(ctl)

        bad = [
            route(ns, "bad-path", [{"name": "gw"}], [
                {"matches": [{"path": {"type": "PathPrefix", "value": "no-slash"}}],
                 "backendRefs": [backend("web")]}]),
            route(ns, "bad-weight", [{"name": "gw"}], [rule(backend("web", weight=1000001))]),
            gateway(ns, "bad-port", env.gc, [listener("http", 0)]),
        ]
        for obj in bad:
            status, body = api.try_create(obj)
            assert status == 422, (obj["metadata"]["name"], status, body)
        status, body = api.try_patch("HTTPRoute", ns, "good", {"spec": {"rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "relative"}}],
             "backendRefs": [backend("web")]}]}})
        assert status == 422, body

        time.sleep(1.5)
        # (The generation is not compared: it also counts re-applies for TLS Secrets of
        # other tests' namespaces, which the shared lab may be deleting meanwhile.)
        assert ctl.config()["config"] == before["config"]
        assert env.written(ctl) == writes
        for obj in bad:
            assert api.get(obj["kind"], ns, obj["metadata"]["name"]) is None
        good = env.route("good")
        assert good["metadata"]["generation"] == 1
        log = ctl.tail(400)
        assert not any(f"{ns}/{n}" in log for n in ("bad-path", "bad-weight", "bad-port",
                                                     "good")), log

        # Valid for the API server, wrong for rauta: the right False condition, and the
        # proxy's configuration does not change (nothing of it can be programmed).
        api.create(route(ns, "bad-regex", [{"name": "gw"}], [
            {"matches": [{"path": {"type": "RegularExpression", "value": "/items/(\\d+"}}],
             "backendRefs": [backend("web")]}]))
        api.create(gateway(ns, "https-no-tls", env.gc, [listener("https", port2, "HTTPS")]))
        c = wait_until(lambda: env.route_conds("bad-regex"), 20, "bad-regex status", (ctl,))
        assert brief(c["Accepted"]) == ("False", "UnsupportedValue")
        assert c["Accepted"]["message"].startswith("All rules are invalid")
        assert "(dropped)" in c["Accepted"]["message"]
        g = wait_until(lambda: env.listeners(env.gw("https-no-tls")).get("https"), 20,
                       "https-no-tls status", (ctl,))
        assert brief(conds(g["conditions"])["Accepted"]) == ("False", "UnsupportedValue")
        assert brief(conds(env.gw("https-no-tls")["status"]["conditions"])["Accepted"]) == (
            "False", "ListenersNotValid")
        assert ctl.config()["config"] == before["config"]


# ---------------------------------------------------------------- no-op writes


def test_no_status_write_for_an_equal_status(env: Env) -> None:
    api, ns = env.api, env.ns
    host = loopback_address()
    [port] = free_ports(host, 1)
    api.create(service(ns, "web"))
    api.create(gateway(ns, "gw", env.gc, [listener("http", port)]))
    api.create(route(ns, "r1", [{"name": "gw"}], [rule(backend("web"))]))
    api.create(route(ns, "r2", [{"name": "gw"}], [rule(backend("late"))]))
    lease_s = 2.0
    ctl = env.controller(listen_host=host, lease_duration=lease_s)

    def quiet(p: ControllerProcess) -> float:
        """The written count once it has not moved for a second."""
        last = -1.0
        stable_since = time.monotonic()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            now = env.written(p)
            if now != last:
                last, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since >= 1.0:
                return now
            time.sleep(0.1)
        raise AssertionError(f"status writes never settled\n{p.describe()}")

    with logs_on_failure(ctl):
        wait_until(lambda: env.route_conds("r2").get("ResolvedRefs", {}).get("reason")
                   == "BackendNotFound", 20, "r2 BackendNotFound", (ctl,))
        wait_until(lambda: env.listeners(env.gw("gw")).get("http", {}).get("attachedRoutes")
                   == 2, 20, "attachedRoutes 2", (ctl,))
        base = {k: env.written(ctl, k) for k in ("GatewayClass", "Gateway", "HTTPRoute")}
        assert all(v >= 1 for v in base.values()), base
        quiet(ctl)
        base = {k: env.written(ctl, k) for k in ("GatewayClass", "Gateway", "HTTPRoute")}

        # No-op changes for the model: annotations and labels nobody selects on.
        api.patch("Service", ns, "web", {"metadata": {"annotations": {"touched": "1"}}})
        api.patch("Gateway", ns, "gw", {"metadata": {"annotations": {"touched": "1"}}})
        api.patch("Namespace", None, ns, {"metadata": {"labels": {"touched": "1"}}})
        # Then one real change on the same Service watch (so ordered after the no-op):
        # exactly one status changes.
        api.create(service(ns, "late"))
        wait_until(lambda: env.route_conds("r2")["ResolvedRefs"]["status"] == "True", 20,
                   "r2 ResolvedRefs True", (ctl,))
        quiet(ctl)
        after = {k: env.written(ctl, k) for k in ("GatewayClass", "Gateway", "HTTPRoute")}
        assert after == {**base, "HTTPRoute": base["HTTPRoute"] + 1}, (base, after)

        # A restarted controller computes the same statuses: it reads them, writes none.
        statuses = {n: env.route(n)["status"] for n in ("r1", "r2")}
        gw_status = env.gw("gw")["status"]
        ctl.stop()
        ctl2 = env.controller(listen_host=host, lease_duration=lease_s)
    with logs_on_failure(ctl2):
        ctl2.wait(lambda: ctl2.is_leader(), lease_s * 3 + 5, "the restarted controller leads")
        ctl2.wait(lambda: ctl2.metric("rauta_status_writes_total", outcome="unchanged") >= 4,
                  10, "the restarted controller to compare every status")
        time.sleep(0.5)
        assert env.written(ctl2) == 0
        assert {n: env.route(n)["status"] for n in ("r1", "r2")} == statuses
        assert env.gw("gw")["status"] == gw_status


# ---------------------------------------------------------------- known bugs


def test_endpointslice_emptied_stops_routing_to_its_endpoints(env: Env,
                                                              backends: BackendNet) -> None:
    api, ns = env.api, env.ns
    beta = backends.start_echo("beta")
    host = loopback_address()
    [port] = free_ports(host, 1)
    api.create(service(ns, "beta"))
    api.create(endpoint_slice(ns, "beta", beta.address))
    api.create(gateway(ns, "gw", env.gc, [listener("http", port)]))
    api.create(route(ns, "web", [{"name": "gw"}], [rule(backend("beta"))]))
    ctl = env.controller(listen_host=host)

    def answer() -> tuple[int, str | None]:
        try:
            status, headers, _ = http_get(host, port, "/", timeout=3)
        except OSError:
            return 0, None
        return status, headers.get("x-backend")

    with logs_on_failure(ctl):
        wait_until(lambda: answer() == (200, "beta"), 20, "traffic to beta", (ctl,))
        # An empty list is stored and served back as "endpoints": null.
        got = api.patch("EndpointSlice", ns, "beta-manual", {"endpoints": []})
        assert got.get("endpoints") is None
        # The echo server still runs, so a stale endpoint shows as 200 from beta.
        wait_until(lambda: answer() == (503, None), 5, "503: no endpoints left", (ctl,))


def test_malformed_certificate_is_an_invalid_certificate_ref(env: Env) -> None:
    api, ns = env.api, env.ns
    host = loopback_address()
    [port] = free_ports(host, 1)
    api.create(tls_secret(ns, "garbage"))
    api.create(gateway(ns, "gw", env.gc, [listener(
        "https", port, "HTTPS", tls={"certificateRefs": [{"name": "garbage"}]})]))
    # (not ready=True: see test_a_failed_listener_does_not_keep_the_controller_unready)
    ctl = env.controller(listen_host=host, ready=False)
    with logs_on_failure(ctl):
        lis = wait_until(lambda: (x := conds(env.listeners(env.gw("gw")).get("https", {})
                                             .get("conditions")))
                         and x["Programmed"]["reason"] != "Pending" and x, 20,
                         "listener status", (ctl,))
        assert brief(lis["Programmed"]) == ("False", "Invalid")  # what rauta does today
        assert brief(lis["ResolvedRefs"]) == ("False", "InvalidCertificateRef")


def test_a_failed_listener_does_not_keep_the_controller_unready(env: Env) -> None:
    api, ns = env.api, env.ns
    host = loopback_address()
    http_port, bad_port = free_ports(host, 2)
    api.create(service(ns, "web"))
    api.create(tls_secret(ns, "garbage"))
    api.create(gateway(ns, "gw", env.gc, [
        listener("http", http_port),
        listener("https", bad_port, "HTTPS", tls={"certificateRefs": [{"name": "garbage"}]}),
    ]))
    api.create(route(ns, "web", [{"name": "gw", "sectionName": "http"}],
                     [rule(backend("web"))]))
    ctl = env.controller(listen_host=host, ready=False)
    with logs_on_failure(ctl):
        # The configuration is applied: the good listener serves, statuses are written.
        wait_until(lambda: http_get(host, http_port, "/", timeout=2)[0] == 503, 20,
                   "the http listener to serve (503: no endpoints)", (ctl,))
        c = wait_until(lambda: env.route_conds("web"), 20, "route status", (ctl,))
        assert brief(c["Accepted"]) == ("True", "Accepted")
        ctl.wait(lambda: ctl.get("/readyz")[0] == 200, 5, "/readyz 200")


def test_address_pool_gives_each_gateway_its_own_address_and_keeps_it(env: Env) -> None:
    """Issue 8 part 1 against the real API server: two HTTP Gateways on one port with no
    hostname are both Accepted and Programmed, each on its own address from the pool, each
    serving its own route; the addresses are in status.addresses and survive a restart of
    the controller (allocation is sticky through the status the controller reads back)."""
    api, ns = env.api, env.ns
    pool_net = random.randint(10, 250)  # 127.<n>.7.0/29: hosts .1-.6, private to this test
    pool, first, second = (f"127.{pool_net}.7.0/29", f"127.{pool_net}.7.1",
                           f"127.{pool_net}.7.2")
    [port] = free_ports("127.0.0.1", 1)
    api.create(service(ns, "web"))
    for name in ("one", "two"):
        api.create(gateway(ns, name, env.gc, [listener("http", port)]))
        api.create(route(ns, name, [{"name": name}], [rule(backend("web"))]))

    def gateway_state() -> dict[str, tuple[Any, ...]] | None:
        out = {}
        for name in ("one", "two"):
            st = env.gw(name).get("status") or {}
            c = conds(st.get("conditions"))
            if not c or c["Programmed"]["reason"] == "Pending":
                return None
            out[name] = (brief(c["Accepted"]), brief(c["Programmed"]),
                         [a["value"] for a in st.get("addresses") or ()])
        return out

    ctl = env.controller(extra=("--address-pool", pool))
    with logs_on_failure(ctl):
        state = wait_until(gateway_state, 20, "both Gateways' status", (ctl,))
        assert state == {"one": (("True", "Accepted"), ("True", "Programmed"), [first]),
                         "two": (("True", "Accepted"), ("True", "Programmed"), [second])}
        for addr in (first, second):  # each address serves (503: the Service has no pods)
            wait_until(lambda a=addr: http_get(a, port, "/", timeout=2)[0] == 503, 20,
                       f"{addr}:{port} serving", (ctl,))
    ctl.stop()
    # While no controller runs, the oldest Gateway goes and a new one comes. Without
    # stickiness "two" would move to the lowest address; it keeps its own (read back from
    # its status), and the new Gateway re-uses the freed one.
    api.delete("Gateway", ns, "one")
    api.create(gateway(ns, "three", env.gc, [listener("http", port)]))
    ctl2 = env.controller(extra=("--address-pool", pool))
    with logs_on_failure(ctl2):
        def three() -> list[str] | None:
            st = env.gw("three").get("status") or {}
            return [a["value"] for a in st.get("addresses") or ()] or None
        assert wait_until(three, 20, "the third Gateway's address", (ctl2,)) == [first]
        assert [a["value"] for a in env.gw("two")["status"]["addresses"]] == [second]
        wait_until(lambda: http_get(first, port, "/", timeout=2)[0] == 404, 20,
                   f"{first}:{port} serving the new Gateway (no route: 404)", (ctl2,))
