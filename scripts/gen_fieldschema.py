"""Generate ``rauta/fieldschema.py``: the field tree of the Gateway API CRDs.

Role: build-time tool. It reads the experimental-channel CRDs of the Gateway API release
the lab installs (the superset of fields an API server may accept) and writes, per kind,
the nested field names only (no descriptions or validations), which ``rauta.fieldcheck``
walks to warn about unknown fields as ``kubectl``'s field validation does.

Rules:
- One tree per kind from the CRD's storage version schema; a node is a dict of property
  name to node, ``["items", node]`` for a list, or ``True`` where any field is allowed
  (``additionalProperties``, ``x-kubernetes-preserve-unknown-fields``) or for a scalar.
- Output is deterministic (sorted keys), so a re-run without a new release is no diff.

Usage: python scripts/gen_fieldschema.py CRD_DIR > rauta/fieldschema.py
"""

from __future__ import annotations

import pprint
import sys
from pathlib import Path
from typing import Any

import yaml

KINDS = ("GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant")


def tree(schema: dict[str, Any]) -> Any:
    if schema.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in schema:
        return True
    if "properties" in schema:
        return {k: tree(v) for k, v in sorted(schema["properties"].items())}
    if schema.get("type") == "array" and "items" in schema:
        return ["items", tree(schema["items"])]
    return True


def main(crd_dir: str) -> None:
    out: dict[str, Any] = {}
    for path in sorted(Path(crd_dir).glob("gateway.networking.k8s.io_*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            kind = doc["spec"]["names"]["kind"]
            if kind not in KINDS:
                continue
            for version in doc["spec"]["versions"]:
                if version.get("storage"):
                    schema = version["schema"]["openAPIV3Schema"]["properties"]
                    out[kind] = {k: tree(schema[k]) for k in sorted(schema)
                                 if k not in ("metadata", "status")}
    release = Path(crd_dir).resolve().parts
    where = next((p for p in release if p.startswith("gateway-api@")), crd_dir)
    print('"""The field tree of the Gateway API CRDs (generated; do not edit).')
    print()
    print(f"Role: data for ``rauta.fieldcheck``, from {where} (experimental channel),")
    print("written by ``scripts/gen_fieldschema.py``.")
    print()
    print("Rules: a node is a dict of field name to node, ``[\"items\", node]`` for a list, or")
    print("``True`` where any value (a scalar, or a free-form map) is allowed.")
    print('"""')
    print()
    print("from typing import Any")
    print()
    print("FIELDS: dict[str, Any] = " + pprint.pformat(out, width=99, sort_dicts=True))


if __name__ == "__main__":
    main(sys.argv[1])
