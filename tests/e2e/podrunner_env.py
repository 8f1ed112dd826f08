"""What a kubelet computes before it starts a container, as pure functions over Pod dicts.

The pod runner (``tests/e2e/podrunner.py``) fetches Secrets and ConfigMaps and hands them
in as plain dicts (the API's JSON, camelCase keys); nothing here talks to the API server
or touches the file system, so it is unit-tested on its own (``tests/unit/test_podrunner_env.py``).

- :func:`volume_files`: the files a ``secret``, ``configMap``, ``downwardAPI`` or
  ``projected`` volume holds (``emptyDir`` holds none);
- :func:`container_env`: the environment, with kubelet semantics (``envFrom`` first, then
  ``env`` in order, ``value``/``fieldRef``/``resourceFieldRef``/``secretKeyRef``/
  ``configMapKeyRef``, ``$(VAR)`` expansion with ``$$`` escaping);
- :func:`translate_path`: mounts by path translation (no mount namespace): a value that is
  a ``mountPath`` or lies under one is rewritten to the volume's host directory;
- :func:`map_image` and :func:`container_argv`: which process an image becomes.

Must not import ``rauta``: this is the harness, not the system under test.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from typing import Any

Obj = dict[str, Any]
# (kind, namespace, name) -> the object, or None when it does not exist.
Lookup = Callable[[str, str, str], Obj | None]

ECHO_BASIC = "echo-basic"
PLACEHOLDER = "placeholder"


class Missing(Exception):  # noqa: N818 - a condition, not a bug
    """A referenced Secret/ConfigMap (or key) is absent: the Pod waits, as a kubelet does."""


class Unsupported(Exception):  # noqa: N818
    """The Pod asks for something this runner does not do."""


# ---------------------------------------------------------------- images


def map_image(image: str) -> str | None:
    """``echo-basic``, ``placeholder`` (Ready, no process) or None (not mapped)."""
    repo = image.split("@", 1)[0]
    if ":" in repo.rsplit("/", 1)[-1]:
        repo = repo.rsplit(":", 1)[0]
    if repo == "registry.k8s.io/gateway-api/echo-basic" or repo.endswith("/echo-basic"):
        return ECHO_BASIC
    if repo == "registry.k8s.io/coredns/coredns" or repo.endswith("/coredns"):
        return PLACEHOLDER
    return None


def container_argv(kind: str, container: Obj, env: Mapping[str, str], binary: str,
                   translate: Callable[[str], str] = lambda s: s) -> list[str]:
    """ENTRYPOINT/CMD semantics for echo-basic (ENTRYPOINT ``/echo-basic``, no CMD)."""
    if kind != ECHO_BASIC:
        raise Unsupported(f"no process for image kind {kind!r}")
    command = [expand(c, env) for c in container.get("command") or []]
    args = [translate(expand(a, env)) for a in container.get("args") or []]
    if command:
        if command[0] not in ("/echo-basic", "echo-basic"):
            raise Unsupported(f"command {command[0]!r} is not in the echo-basic image")
        return [binary, *[translate(c) for c in command[1:]], *args]
    return [binary, *args]


# ---------------------------------------------------------------- $(VAR)

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand(s: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined names are replaced, ``$$`` becomes ``$``,
    an undefined ``$(NAME)`` stays as written."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)
    return _VAR.sub(sub, s)


# ---------------------------------------------------------------- fieldRef

_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['([^']*)'\]$")


def field_ref(pod: Obj, path: str) -> str:
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    if m := _SUBSCRIPT.match(path):
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []),
    }
    if path in ("metadata.labels", "metadata.annotations"):
        d = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(d.items()))
    if path not in simple:
        raise Unsupported(f"fieldRef {path!r}")
    return str(simple[path] or "")


def resource_field_ref(pod: Obj, ref: Obj, default_container: str | None = None) -> str:
    """``limits.*``/``requests.*`` as written in the spec (no divisor arithmetic beyond 1)."""
    name = ref.get("containerName") or default_container
    res = ref.get("resource", "")
    for c in pod.get("spec", {}).get("containers", []):
        if c.get("name") == name:
            section, _, what = res.partition(".")
            value = ((c.get("resources") or {}).get(section) or {}).get(what)
            if value is not None:
                return str(value)
    # Unset limits default to the node's allocatable; this node advertises 2 CPUs.
    return {"limits.cpu": "2", "requests.cpu": "0", "limits.memory": "8589934592",
            "requests.memory": "0"}.get(res, "0")


# ---------------------------------------------------------------- data of Secret/ConfigMap


def _data(kind: str, obj: Obj) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if kind == "Secret":
        for k, v in (obj.get("data") or {}).items():
            out[k] = base64.b64decode(v or "")
        for k, v in (obj.get("stringData") or {}).items():  # never stored, but harmless
            out[k] = v.encode()
    else:
        for k, v in (obj.get("data") or {}).items():
            out[k] = (v or "").encode()
        for k, v in (obj.get("binaryData") or {}).items():
            out[k] = base64.b64decode(v or "")
    return out


def _get(lookup: Lookup, kind: str, ns: str, name: str, optional: bool) -> dict[str, bytes] | None:
    obj = lookup(kind, ns, name)
    if obj is None:
        if optional:
            return None
        raise Missing(f"{kind} {ns}/{name} not found")
    return _data(kind, obj)


# ---------------------------------------------------------------- volumes


def _items(data: dict[str, bytes], items: list[Obj] | None, mode: int, what: str,
           optional: bool) -> dict[str, tuple[bytes, int]]:
    if not items:
        return {k: (v, mode) for k, v in data.items()}
    files: dict[str, tuple[bytes, int]] = {}
    for it in items:
        if it["key"] not in data:
            if optional:
                continue
            raise Missing(f"{what} has no key {it['key']!r}")
        files[it["path"]] = (data[it["key"]], it.get("mode", mode))
    return files


def _source_files(pod: Obj, src: Obj, lookup: Lookup, mode: int) -> dict[str, tuple[bytes, int]]:
    ns = pod["metadata"]["namespace"]
    if "secret" in src:
        s = src["secret"]
        name = s.get("secretName") or s.get("name") or ""
        optional = bool(s.get("optional"))
        data = _get(lookup, "Secret", ns, name, optional)
        return {} if data is None else _items(data, s.get("items"), s.get("defaultMode", mode),
                                              f"Secret {ns}/{name}", optional)
    if "configMap" in src:
        c = src["configMap"]
        optional = bool(c.get("optional"))
        data = _get(lookup, "ConfigMap", ns, c.get("name", ""), optional)
        return {} if data is None else _items(data, c.get("items"), c.get("defaultMode", mode),
                                              f"ConfigMap {ns}/{c.get('name')}", optional)
    if "downwardAPI" in src:
        d = src["downwardAPI"]
        files = {}
        for it in d.get("items") or []:
            if "fieldRef" in it:
                value = field_ref(pod, it["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in it:
                value = resource_field_ref(pod, it["resourceFieldRef"])
            else:
                raise Unsupported(f"downwardAPI item {it!r}")
            files[it["path"]] = (value.encode(), it.get("mode", d.get("defaultMode", mode)))
        return files
    raise Unsupported(f"volume source {sorted(src)}")


def volume_files(pod: Obj, volume: Obj, lookup: Lookup) -> dict[str, tuple[bytes, int]]:
    """Relative path -> (content, mode) for one volume of the Pod. Raises :class:`Missing`
    when a non-optional Secret/ConfigMap/key is absent, :class:`Unsupported` otherwise."""
    if "emptyDir" in volume:
        return {}
    if "projected" in volume:
        p = volume["projected"]
        files: dict[str, tuple[bytes, int]] = {}
        for src in p.get("sources") or []:
            if "serviceAccountToken" in src or "clusterTrustBundle" in src:
                raise Unsupported(f"projected source {sorted(src)}")
            files.update(_source_files(pod, src, lookup, p.get("defaultMode", 0o644)))
        return files
    for kind in ("secret", "configMap", "downwardAPI"):
        if kind in volume:
            return _source_files(pod, {kind: volume[kind]}, lookup, 0o644)
    raise Unsupported(f"volume {volume.get('name')!r}: {sorted(set(volume) - {'name'})}")


def safe_relpath(path: str) -> str:
    """A volume item path is relative and has no '..' (the API validates this too)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if path.startswith("/") or ".." in parts or not parts:
        raise Unsupported(f"volume item path {path!r}")
    return "/".join(parts)


# ---------------------------------------------------------------- mounts


def mount_map(container: Obj, volume_dir: Callable[[str], str]) -> list[tuple[str, str]]:
    """[(mountPath, host path)] for the container, longest mountPath first."""
    out = []
    for m in container.get("volumeMounts") or []:
        host = volume_dir(m["name"])
        if m.get("subPath"):
            host = f"{host}/{safe_relpath(m['subPath'])}"
        out.append((m["mountPath"].rstrip("/") or "/", host))
    return sorted(out, key=lambda t: -len(t[0]))


def translate_path(value: str, mounts: list[tuple[str, str]]) -> str:
    """Rewrite ``value`` when it is a mountPath or lies under one."""
    for mount, host in mounts:
        if value == mount:
            return host
        prefix = mount if mount.endswith("/") else mount + "/"
        if value.startswith(prefix):
            return f"{host}/{value[len(prefix):]}"
    return value


# ---------------------------------------------------------------- env

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def container_env(pod: Obj, container: Obj, lookup: Lookup, *,
                  base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The container's environment, before path translation.

    ``base`` (e.g. ``PATH`` and ``HOSTNAME``) comes first and is overridden by the Pod's own
    values, as an image's ENV is."""
    ns = pod["metadata"]["namespace"]
    env: dict[str, str] = dict(base or {})
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "secretRef" in src:
            ref, kind = src["secretRef"], "Secret"
        elif "configMapRef" in src:
            ref, kind = src["configMapRef"], "ConfigMap"
        else:
            raise Unsupported(f"envFrom {sorted(src)}")
        data = _get(lookup, kind, ns, ref.get("name", ""), bool(ref.get("optional")))
        for k, v in (data or {}).items():
            if _ENV_NAME.match(prefix + k):  # kubelet skips invalid names (an event)
                env[prefix + k] = v.decode(errors="replace")
    for e in container.get("env") or []:
        name = e["name"]
        if "valueFrom" not in e:
            env[name] = expand(e.get("value", ""), env)
            continue
        vf = e["valueFrom"]
        if "fieldRef" in vf:
            env[name] = field_ref(pod, vf["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in vf:
            env[name] = resource_field_ref(pod, vf["resourceFieldRef"], container.get("name"))
        elif "secretKeyRef" in vf or "configMapKeyRef" in vf:
            kind = "Secret" if "secretKeyRef" in vf else "ConfigMap"
            ref = vf["secretKeyRef"] if kind == "Secret" else vf["configMapKeyRef"]
            optional = bool(ref.get("optional"))
            data = _get(lookup, kind, ns, ref.get("name", ""), optional)
            if data is None:
                continue
            if ref["key"] not in data:
                if optional:
                    continue
                raise Missing(f"{kind} {ns}/{ref.get('name')} has no key {ref['key']!r}")
            env[name] = data[ref["key"]].decode(errors="replace")
        else:
            raise Unsupported(f"env {name}: valueFrom {sorted(vf)}")
    return env
