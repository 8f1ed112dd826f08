"""Status sinks for standalone mode: where ``rauta serve`` and ``rauta replay`` put statuses.

Role: receive ``StatusChanges`` from the reconciler, stamp them (observedGeneration,
lastTransitionTime kept for unchanged conditions) and keep the current stamped status of
every object, optionally mirroring it to a YAML file or a log line.

Rules:
- Stamping goes through ``rauta.model.status`` (one implementation for every sink); the
  clock is injected, so tests and replays are deterministic.
- The sink keeps the previous stamped status per object; only it decides times.
- A route whose ``parents`` is empty has our entries removed and others' kept.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from rauta.model.graph import DEFAULT_CONTROLLER
from rauta.model.status import stamp, status_key
from rauta.reconcile.reconciler import StatusChanges

log = logging.getLogger("rauta.status")
Key = tuple[str, str, str]


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class MemorySink:
    """Holds the stamped ``status`` of every object rauta wrote, keyed (kind, ns, name)."""

    def __init__(self, *, controller_name: str = DEFAULT_CONTROLLER,
                 clock: Callable[[], str] = utc_now, path: Path | None = None) -> None:
        self.controller_name = controller_name
        self.clock = clock
        self.path = path
        self.status: dict[Key, dict[str, Any]] = {}
        self.writes = 0

    async def write(self, changes: StatusChanges) -> None:
        now = self.clock()
        for key in changes.gone:
            self.status.pop(key, None)
        written = []
        for st in (*changes.gateway_classes, *changes.gateways, *changes.routes):
            key = status_key(st)
            self.status[key] = stamp(st, self.status.get(key),
                                     controller_name=self.controller_name, now=now)
            self.writes += 1
            written.append(key)
        for key in sorted(written):
            log.info("status %s %s: %s", key[0], "/".join(p for p in key[1:] if p),
                     summary(self.status[key]))
        if self.path is not None:
            self.path.write_text(yaml.safe_dump(self.document(), sort_keys=False))

    def document(self) -> list[dict[str, Any]]:
        """Every stamped status as a list of ``{kind, namespace, name, status}``."""
        return [{"kind": k, "namespace": ns, "name": n, "status": st}
                for (k, ns, n), st in sorted(self.status.items())]


def summary(status: dict[str, Any]) -> str:
    """A one-line summary: ``Accepted=True Programmed=True`` (per parent for routes)."""
    def conds(cs: Any) -> str:
        return " ".join(f"{c['type']}={c['status']}"
                        + ("" if c["status"] == "True" else f"({c['reason']})") for c in cs)
    if "parents" in status:
        return "; ".join(f"{p['parentRef'].get('name')}: {conds(p['conditions'])}"
                         for p in status["parents"]) or "no parents"
    return conds(status.get("conditions") or ())
