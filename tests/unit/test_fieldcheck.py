"""``rauta.fieldcheck``: unknown fields named as kubectl names them, and the generated CRD
field tree (``rauta.fieldschema``) knows every field rauta's models read."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from pydantic import BaseModel

from rauta.fieldcheck import TREES, unknown_fields
from rauta.fieldschema import FIELDS
from rauta.model import resources as r


def test_typos_at_every_depth_are_named_with_their_path() -> None:
    obj = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
           "metadata": {"name": "web", "namspace": "x"},
           "spce": {},
           "spec": {"parentRefs": [{"name": "gw", "sectionNmae": "http"}],
                    "rules": [{"backendRefs": [{"name": "a", "port": 80}]},
                              {"filter": [], "matches": [{"path": {"vale": "/"}}]}]},
           "status": {"anything": True}}
    assert unknown_fields(obj) == ["metadata.namspace", "spce",
                                   "spec.parentRefs[0].sectionNmae", "spec.rules[1].filter",
                                   "spec.rules[1].matches[0].path.vale"]


def test_free_form_maps_and_core_kinds() -> None:
    gw = {"kind": "Gateway", "metadata": {"name": "g", "labels": {"any": "thing"}},
          "spec": {"gatewayClassName": "c", "infrastructure": {"labels": {"x": "y"}},
                   "listeners": [{"name": "l", "port": 80, "protocol": "HTTP"}]}}
    assert unknown_fields(gw) == []
    svc = {"kind": "Service", "metadata": {"name": "s"}, "spec": {"anything": 1}, "sepc": {}}
    assert unknown_fields(svc) == ["sepc"]  # core kinds: the top level only
    assert unknown_fields({"kind": "Deployment", "whatever": 1}) == []  # not ours to judge
    assert unknown_fields(["not", "a", "mapping"]) == []


def _aliases(model: type[BaseModel]) -> dict[str, Any]:
    """The wire names of ``model``'s fields and the model types below each."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        alias = field.alias or name
        inner = [a for a in _flatten(field.annotation) if isinstance(a, type)
                 and issubclass(a, BaseModel)]
        out[alias] = inner[0] if inner else None
    return out


def _flatten(tp: Any) -> list[Any]:
    args = typing.get_args(tp)
    return [x for a in args for x in _flatten(a)] if args else [tp]


def _walk(model: type[BaseModel], node: Any, where: str, missing: list[str]) -> None:
    if node is True:
        return
    if isinstance(node, list):
        node = node[1]
        if node is True:
            return
    for alias, sub in _aliases(model).items():
        if alias not in node:
            missing.append(f"{where}.{alias}")
        elif sub is not None:
            _walk(sub, node[alias], f"{where}.{alias}", missing)


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_the_crd_tree_knows_every_field_the_models_read(kind: str) -> None:
    model = r.KINDS[kind]
    missing: list[str] = []
    spec = _aliases(model).get("spec")
    assert spec is not None
    _walk(spec, TREES[kind]["spec"], kind + ".spec", missing)
    assert missing == []


def test_the_generated_tree_is_not_mutated() -> None:
    assert "frontendValidation" not in FIELDS["Gateway"]["spec"]["listeners"][1]["tls"]
