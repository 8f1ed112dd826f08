"""The pod runner's kubelet semantics as pure functions (tests/e2e/podrunner_env.py)."""

from __future__ import annotations

import base64

import pytest

from tests.e2e import podrunner_env as penv


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


POD = {"metadata": {"name": "web-1", "namespace": "ns", "uid": "u-1",
                    "labels": {"app": "web"}, "annotations": {"a": "b"}},
       "spec": {"nodeName": "n1", "serviceAccountName": "sa",
                "containers": [{"name": "c", "resources": {"limits": {"cpu": "500m"}}}]},
       "status": {"podIP": "10.244.1.2", "podIPs": [{"ip": "10.244.1.2"}],
                  "hostIP": "10.244.1.1", "hostIPs": [{"ip": "10.244.1.1"}]}}
OBJS = {
    ("Secret", "ns", "s"): {"data": {"token": b64("t0k"), "tls.crt": b64("CRT")}},
    ("ConfigMap", "ns", "cm"): {"data": {"color": "blue", "bad name": "x"},
                                "binaryData": {"bin": b64("\x00\x01")}},
}


def lookup(kind: str, ns: str, name: str) -> dict | None:
    return OBJS.get((kind, ns, name))


@pytest.mark.parametrize(("path", "want"), [
    ("metadata.name", "web-1"), ("metadata.namespace", "ns"), ("metadata.uid", "u-1"),
    ("metadata.labels['app']", "web"), ("metadata.annotations['a']", "b"),
    ("metadata.labels['none']", ""), ("spec.nodeName", "n1"),
    ("spec.serviceAccountName", "sa"), ("status.podIP", "10.244.1.2"),
    ("status.podIPs", "10.244.1.2"), ("status.hostIP", "10.244.1.1"),
    ("metadata.labels", 'app="web"'),
])
def test_field_ref(path: str, want: str) -> None:
    assert penv.field_ref(POD, path) == want


def test_field_ref_unknown() -> None:
    with pytest.raises(penv.Unsupported):
        penv.field_ref(POD, "spec.nothing")


@pytest.mark.parametrize(("s", "want"), [
    ("$(A)-$(B)", "1-2"), ("$$(A)", "$(A)"), ("$(NOPE)", "$(NOPE)"), ("$A", "$A"),
    ("$$$(A)", "$1"), ("x$(A", "x$(A"),
])
def test_expand(s: str, want: str) -> None:
    assert penv.expand(s, {"A": "1", "B": "2"}) == want


def test_container_env_order_and_sources() -> None:
    c = {"name": "c",
         "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"},
                     {"secretRef": {"name": "s"}}],
         "env": [
             {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
             {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
             {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "color"}}},
             {"name": "MIX", "value": "$(NAME)/$(COLOR)/$(LATER)"},
             {"name": "LATER", "value": "l"},
             {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
             {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k",
                                                           "optional": True}}},
             {"name": "PATH", "value": "/pod/bin"},
         ]}
    env = penv.container_env(POD, c, lookup, base={"PATH": "/usr/bin", "HOSTNAME": "web-1"})
    assert env["CM_color"] == "blue" and "CM_bad name" not in env
    assert env["tls.crt"] == "CRT" and env["token"] == "t0k"
    assert env["NAME"] == "web-1" and env["TOKEN"] == "t0k" and env["COLOR"] == "blue"
    assert env["MIX"] == "web-1/blue/$(LATER)"  # only names defined before it
    assert env["CPU"] == "500m" and "OPT" not in env
    assert env["PATH"] == "/pod/bin" and env["HOSTNAME"] == "web-1"


@pytest.mark.parametrize("ref", [
    {"secretKeyRef": {"name": "gone", "key": "k"}},
    {"secretKeyRef": {"name": "s", "key": "nokey"}},
    {"configMapKeyRef": {"name": "gone", "key": "k"}},
])
def test_missing_reference_waits(ref: dict) -> None:
    c = {"name": "c", "env": [{"name": "X", "valueFrom": ref}]}
    with pytest.raises(penv.Missing):
        penv.container_env(POD, c, lookup)


def test_secret_volume_items_and_modes() -> None:
    vol = {"name": "v", "secret": {"secretName": "s", "defaultMode": 0o400,
                                   "items": [{"key": "tls.crt", "path": "crt"},
                                             {"key": "token", "path": "d/t", "mode": 0o600}]}}
    assert penv.volume_files(POD, vol, lookup) == {"crt": (b"CRT", 0o400),
                                                   "d/t": (b"t0k", 0o600)}
    whole = penv.volume_files(POD, {"name": "v", "secret": {"secretName": "s"}}, lookup)
    assert whole == {"token": (b"t0k", 0o644), "tls.crt": (b"CRT", 0o644)}


def test_configmap_downward_projected_emptydir() -> None:
    cm = penv.volume_files(POD, {"name": "v", "configMap": {"name": "cm"}}, lookup)
    assert cm["color"] == (b"blue", 0o644) and cm["bin"] == (b"\x00\x01", 0o644)
    dw = penv.volume_files(POD, {"name": "v", "downwardAPI": {"items": [
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}, lookup)
    assert dw == {"name": (b"web-1", 0o644), "labels": (b'app="web"', 0o644)}
    pj = penv.volume_files(POD, {"name": "v", "projected": {"sources": [
        {"secret": {"name": "s", "items": [{"key": "token", "path": "t"}]}},
        {"configMap": {"name": "cm", "items": [{"key": "color", "path": "c"}]}}]}}, lookup)
    assert pj == {"t": (b"t0k", 0o644), "c": (b"blue", 0o644)}
    assert penv.volume_files(POD, {"name": "v", "emptyDir": {}}, lookup) == {}


def test_volume_missing_and_optional() -> None:
    with pytest.raises(penv.Missing):
        penv.volume_files(POD, {"name": "v", "secret": {"secretName": "gone"}}, lookup)
    assert penv.volume_files(
        POD, {"name": "v", "secret": {"secretName": "gone", "optional": True}}, lookup) == {}
    with pytest.raises(penv.Unsupported):
        penv.volume_files(POD, {"name": "v", "hostPath": {"path": "/"}}, lookup)


def test_translate_path() -> None:
    c = {"volumeMounts": [{"name": "a", "mountPath": "/etc/secret-volume"},
                          {"name": "b", "mountPath": "/etc/secret-volume/inner/"},
                          {"name": "c", "mountPath": "/cfg", "subPath": "sub"}]}
    mounts = penv.mount_map(c, lambda n: f"/host/{n}")
    t = lambda s: penv.translate_path(s, mounts)  # noqa: E731
    assert t("/etc/secret-volume/crt") == "/host/a/crt"
    assert t("/etc/secret-volume") == "/host/a"
    assert t("/etc/secret-volume/inner/x") == "/host/b/x"  # the longest mount wins
    assert t("/etc/secret-volumes/crt") == "/etc/secret-volumes/crt"  # not a prefix match
    assert t("/cfg/file") == "/host/c/sub/file"
    assert t("relative/etc/secret-volume") == "relative/etc/secret-volume"


@pytest.mark.parametrize(("image", "kind"), [
    ("registry.k8s.io/gateway-api/echo-basic:v1.5.1", penv.ECHO_BASIC),
    ("registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3", penv.ECHO_BASIC),
    ("registry.k8s.io/gateway-api/echo-basic@sha256:abcd", penv.ECHO_BASIC),
    ("registry.k8s.io/coredns/coredns:v1.12.2", penv.PLACEHOLDER),
    ("docker.io/library/nginx:1.27", None),
    ("localhost:5000/foo", None),
])
def test_map_image(image: str, kind: str | None) -> None:
    assert penv.map_image(image) == kind


def test_container_argv() -> None:
    env = {"X": "1"}
    tr = lambda s: s.replace("/etc/s", "/host/s")  # noqa: E731
    assert penv.container_argv(penv.ECHO_BASIC, {"args": ["-a", "$(X)", "/etc/s/f"]}, env,
                               "/bin/eb", tr) == ["/bin/eb", "-a", "1", "/host/s/f"]
    assert penv.container_argv(penv.ECHO_BASIC, {"command": ["/echo-basic", "-v"]}, env,
                               "/bin/eb") == ["/bin/eb", "-v"]
    with pytest.raises(penv.Unsupported):
        penv.container_argv(penv.ECHO_BASIC, {"command": ["/bin/sh"]}, env, "/bin/eb")


def test_safe_relpath() -> None:
    assert penv.safe_relpath("a/./b") == "a/b"
    for bad in ("/abs", "../x", "a/../../b", ""):
        with pytest.raises(penv.Unsupported):
            penv.safe_relpath(bad)
