"""Plain-data rendering of a translation, for golden files, ``rauta translate`` and ``/config``.

Role: turn a ``Translation`` into nested dicts/lists of str/int/bool, ready for YAML or JSON.

Rules:
- The shape is stable and every list keeps the model's order, so equal translations give
  byte-identical YAML/JSON (dumpers must not sort keys: the order here is the order).
- Config fields equal to their defaults are omitted to keep documents readable.
- ``services`` appears only when the translation generates Services, so documents of
  runs without ``--gateway-services`` stay as they were.
- Status conditions appear without observedGeneration/lastTransitionTime: those are stamped
  by the reconciler when it writes to Kubernetes.
"""

from __future__ import annotations

from typing import Any

from rauta.model.conditions import Condition
from rauta.model.config import RouterConfig
from rauta.model.status import Statuses
from rauta.model.translate import Translation


def _conds(conds: tuple[Condition, ...]) -> list[dict[str, str]]:
    return [c.as_dict() for c in conds]


def config_document(config: RouterConfig) -> dict[str, Any]:
    data: dict[str, Any] = config.model_dump(mode="json", exclude_defaults=True)
    return data


def status_document(statuses: Statuses) -> dict[str, Any]:
    return {
        "gatewayClasses": [
            {"name": gc.name, "conditions": _conds(gc.conditions),
             **({"supportedFeatures": list(gc.supported_features)}
                if gc.supported_features else {})}
            for gc in statuses.gateway_classes
        ],
        "gateways": [
            {
                "namespace": gw.namespace,
                "name": gw.name,
                # Only when the Gateway has its own address: without a pool the documents
                # stay as they were.
                **({"addresses": [{"type": t, "value": v} for t, v in gw.addresses]}
                   if gw.addresses else {}),
                "conditions": _conds(gw.conditions),
                "listeners": [
                    {
                        "name": lis.name,
                        "supportedKinds": [{"group": g, "kind": k} for g, k in lis.supported_kinds],
                        "attachedRoutes": lis.attached_routes,
                        "conditions": _conds(lis.conditions),
                    }
                    for lis in gw.listeners
                ],
            }
            for gw in statuses.gateways
        ],
        "httpRoutes": [
            {
                "namespace": r.namespace,
                "name": r.name,
                "parents": [
                    {
                        "parentRef": dict(p.parent_ref),
                        "controllerName": p.controller_name,
                        "conditions": _conds(p.conditions),
                    }
                    for p in r.parents
                ],
            }
            for r in statuses.routes
        ],
    }


def document(translation: Translation) -> dict[str, Any]:
    """The whole translation as plain data: ``{"config": ..., "status": ...}``, plus
    ``services`` (the generated Service manifests) when there are any
    (``--gateway-services``)."""
    doc: dict[str, Any] = {"config": config_document(translation.config),
                           "status": status_document(translation.statuses)}
    if translation.services:
        doc["services"] = [dict(svc) for svc in translation.services]
    return doc
