"""Field validation of input objects: the fields an API server would not know.

Role: the loader-side counterpart of ``kubectl``'s field validation (``--validate=warn``
and ``strict``). The resource models ignore unknown fields on purpose (newer API servers
must not break parsing), so a typo such as ``filter:`` for ``filters:`` would otherwise
vanish without a word; ``unknown_fields`` names each one so that the file source and
``rauta translate`` can warn, or refuse the file under ``--strict``.

Rules:
- Gateway API kinds are checked against the field tree of their CRDs (experimental
  channel, so every field an API server may accept is known: ``rauta.fieldschema``).
- Every kind's ``metadata`` is checked against ObjectMeta; ``status`` is never checked
  (it is written by controllers, not by the user).
- Core kinds (Service, EndpointSlice, Secret, Namespace) are checked at the top level
  only: rauta reads a small part of them and does not carry their full schema.
- Paths are written as kubectl writes them: ``spec.rules[0].filter``, in document order.
- Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rauta.fieldschema import FIELDS

_META = {
    "annotations", "creationTimestamp", "deletionGracePeriodSeconds", "deletionTimestamp",
    "finalizers", "generateName", "generation", "labels", "managedFields", "name",
    "namespace", "ownerReferences", "resourceVersion", "selfLink", "uid",
}
_COMMON = {"apiVersion", "kind", "metadata", "status"}
_CORE_TOP: dict[str, set[str]] = {
    "Service": {"spec"},
    "EndpointSlice": {"addressType", "endpoints", "ports"},
    "Secret": {"data", "stringData", "type", "immutable"},
    "Namespace": {"spec"},
}


def _walk(data: Any, node: Any, where: str, out: list[str]) -> None:
    if node is True or data is None:
        return
    if isinstance(node, list):  # ["items", item node]
        if isinstance(data, list):
            for i, item in enumerate(data):
                _walk(item, node[1], f"{where}[{i}]", out)
        return
    if not isinstance(data, Mapping):
        return  # a type error, which parsing reports
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in node:
            out.append(path)
        else:
            _walk(value, node[key], path, out)


def unknown_fields(obj: Any) -> list[str]:
    """The paths of the fields of ``obj`` its kind does not define (see the module doc)."""
    if not isinstance(obj, Mapping):
        return []
    kind = obj.get("kind")
    out: list[str] = []
    tree = FIELDS.get(kind) if isinstance(kind, str) else None
    for key, value in obj.items():
        if key == "metadata":
            if isinstance(value, Mapping):
                out.extend(f"metadata.{k}" for k in value if k not in _META)
        elif key in _COMMON:
            continue
        elif tree is not None:
            if key not in tree:
                out.append(str(key))
            else:
                _walk(value, tree[key], str(key), out)
        elif isinstance(kind, str) and kind in _CORE_TOP and key not in _CORE_TOP[kind]:
            out.append(str(key))
    return out
