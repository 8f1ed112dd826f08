"""The object store: the reconciler's view of the world, fed by watch-style events.

Role: hold the latest raw object per (kind, namespace, name), parse it once, and hand the
pure model an immutable ``Snapshot``. Sources (files, Kubernetes watches, scenario replay)
only ever talk to the store through ``Event``s or ``replace_all``.

Rules:
- An event whose object equals what is stored is a no-op (``apply`` returns False).
  Status is not compared (it is rauta's output), except the two parts the model reads:
  a Gateway's ``status.addresses`` and, on a Service with the gateway-name label (one
  rauta may have generated), ``status.loadBalancer``.
- ``latest`` holds the newest version of every object as delivered, valid or not (the
  status writer goes over its resourceVersion); ``raw`` holds the last good one.
- ``replace_all`` (a re-list: file reload, watch 410 Gone) turns a full object list into
  only the real differences, so nothing is applied twice and nothing is lost.
- An object that fails to parse never replaces the last good version of that object: the
  store keeps serving the old one and records one error line naming the object and field.
  With ``check_fields`` unknown fields are warnings (``warnings``), with ``strict`` errors
  (the ``--strict`` of ``rauta controller``; the file source checks files itself).
- Secret key material never enters the model; the store keeps TLS pairs aside for the proxy.
- Every key whose parsed object changed is remembered until ``take_snapshot`` hands it
  out with the snapshot it belongs to (the incremental translator's input).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rauta.fieldcheck import unknown_fields
from rauta.model.resources import KINDS, Resource, ResourceError, parse_object
from rauta.model.services import GATEWAY_NAME_LABEL
from rauta.model.snapshot import Key, Snapshot, key_of

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True)
class Event:
    """One change, in the shape a Kubernetes watch delivers: a type and the full object."""

    type: EventType
    object: Mapping[str, Any]


def raw_key(obj: Mapping[str, Any]) -> Key:
    """(kind, namespace, name) of a raw object, with the same defaults as ``parse_object``."""
    kind = str(obj.get("kind", ""))
    meta = obj.get("metadata") or {}
    ns = str(meta.get("namespace") or "")
    if not ns and kind not in ("GatewayClass", "Namespace"):
        ns = "default"
    return (kind, ns, str(meta.get("name", "")))


def _comparable(obj: Mapping[str, Any]) -> Any:
    """The object without fields that change on every write but mean nothing to us."""
    meta = dict(obj.get("metadata") or {})
    for noisy in ("resourceVersion", "managedFields"):
        meta.pop(noisy, None)
    out = dict(obj)
    out["metadata"] = meta
    status = out.pop("status", None)  # status is ours to write, never an input...
    if obj.get("kind") == "Gateway" and isinstance(status, Mapping) and status.get("addresses"):
        # ... except a Gateway's addresses: it keeps the address it was given (the model's
        # allocation is sticky), so every replica and every restart agrees...
        out["status"] = {"addresses": status["addresses"]}
    elif (obj.get("kind") == "Service" and isinstance(status, Mapping)
          and status.get("loadBalancer")
          and GATEWAY_NAME_LABEL in (meta.get("labels") or {})):
        # ... and a generated Service's load balancer: its ingress is the Gateway's address.
        out["status"] = {"loadBalancer": status["loadBalancer"]}
    return out


def tls_pair(obj: Mapping[str, Any]) -> tuple[bytes, bytes] | None:
    """(certificate PEM, key PEM) of a kubernetes.io/tls Secret, or None."""
    data = obj.get("data") or {}
    string_data = obj.get("stringData") or {}
    try:
        crt = string_data.get("tls.crt", "").encode() or base64.b64decode(data.get("tls.crt", ""))
        key = string_data.get("tls.key", "").encode() or base64.b64decode(data.get("tls.key", ""))
    except (binascii.Error, ValueError, AttributeError, TypeError):
        return None
    return (crt, key) if crt and key else None


@dataclass
class ObjectStore:
    """Latest good raw and parsed object per key, plus the current parse errors."""

    raw: dict[Key, Mapping[str, Any]] = field(default_factory=dict)
    # The newest version of every object, valid or not (``raw`` keeps the last good one):
    # what a status write goes over (its resourceVersion), as the watch delivered it.
    latest: dict[Key, Mapping[str, Any]] = field(default_factory=dict)
    parsed: dict[Key, Resource] = field(default_factory=dict)
    errors: dict[Key, str] = field(default_factory=dict)
    # Field validation (``rauta.fieldcheck``, as ``rauta serve`` does for files): with
    # ``check_fields`` each unknown field is a warning (``warnings``); with ``strict`` too
    # it is an error instead, and the object's last good version is kept.
    check_fields: bool = False
    strict: bool = False
    warnings: dict[Key, tuple[str, ...]] = field(default_factory=dict)
    _snapshot: Snapshot | None = None
    _changed: set[Key] = field(default_factory=set)  # since the last take_snapshot
    _pending: dict[Key, Resource | None] = field(default_factory=dict)  # not in _snapshot
    _tls: dict[str, tuple[bytes, bytes]] | None = None  # tls() until a Secret event

    def apply(self, event: Event) -> bool:
        """Apply one event; True when the snapshot changed."""
        obj = event.object
        key = raw_key(obj)
        if key[0] not in KINDS:
            return False
        if key[0] == "Secret":
            self._tls = None
        if event.type == "DELETED":
            self.latest.pop(key, None)
        else:
            self.latest[key] = obj
        if event.type == "DELETED":
            self.errors.pop(key, None)
            self.warnings.pop(key, None)
            if key not in self.raw:
                return False
            del self.raw[key]
            self.parsed.pop(key, None)
            self._pending[key] = None
            self._changed.add(key)
            return True
        old = self.raw.get(key)
        if old is not None and _comparable(old) == _comparable(obj):
            if key in self.parsed:
                # Nothing the model reads changed, but keep the latest raw object: its
                # resourceVersion is what a write of it (a generated Service) must carry.
                self.raw[key] = obj
                self.errors.pop(key, None)  # back to the last good version: valid again
            return False
        if self.check_fields or self.strict:
            where = f"{key[0]} {key[1]}/{key[2]}" if key[1] else f"{key[0]} {key[2]}"
            found = tuple(f'{where}: unknown field "{f}"' for f in unknown_fields(obj))
            if found and self.strict:
                more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
                self.errors[key] = f"{found[0]}{more} (--strict)"
                return False
            if found:
                self.warnings[key] = found
            else:
                self.warnings.pop(key, None)
        try:
            parsed = parse_object(_comparable(obj))
        except ResourceError as exc:
            self.errors[key] = str(exc)
            return False
        self.errors.pop(key, None)
        self.raw[key] = obj
        if self.parsed.get(key) == parsed:
            # The model sees no change, but a Secret's key material may have rotated.
            return key[0] == "Secret" and tls_pair(obj) != (tls_pair(old) if old else None)
        self.parsed[key] = parsed
        self._pending[key] = parsed
        self._changed.add(key)
        return True

    def diff(self, objects: Iterable[Mapping[str, Any]],
             kinds: Iterable[str] | None = None) -> list[Event]:
        """The events that turn the store into exactly ``objects`` (a re-list).

        With ``kinds``, only objects of those kinds are compared (a re-list of one watch).
        """
        scope = set(kinds) if kinds is not None else set(KINDS)
        incoming: dict[Key, Mapping[str, Any]] = {}
        for obj in objects:
            if raw_key(obj)[0] in scope:
                incoming[raw_key(obj)] = obj
        events: list[Event] = []
        for key in sorted(k for k in self.raw.keys() - incoming.keys() if k[0] in scope):
            events.append(Event("DELETED", self.raw[key]))
        for key in sorted(incoming):
            old = self.raw.get(key)
            if old is None:
                events.append(Event("ADDED", incoming[key]))
            elif key in self.errors or _comparable(old) != _comparable(incoming[key]):
                events.append(Event("MODIFIED", incoming[key]))
        # Objects that never parsed and are gone now: forget their errors.
        for key in list(self.errors):
            if key[0] in scope and key not in incoming:
                del self.errors[key]
        return events

    def replace_all(self, objects: Iterable[Mapping[str, Any]],
                    kinds: Iterable[str] | None = None) -> list[Event]:
        """Apply a full listing (of ``kinds``, default all); returns the real changes."""
        objects = list(objects)
        changed = [ev for ev in self.diff(objects, kinds) if self.apply(ev)]
        scope = set(kinds) if kinds is not None else set(KINDS)
        listed: dict[Key, Mapping[str, Any]] = {}
        for obj in objects:  # unchanged for the model, but maybe a newer resourceVersion
            key = raw_key(obj)
            if key[0] in scope:
                listed[key] = obj
                if key in self.raw and key not in self.errors:
                    self.raw[key] = obj
        for key in [k for k in self.latest if k[0] in scope and k not in listed]:
            del self.latest[key]
        self.latest.update(listed)
        return changed

    def snapshot(self) -> Snapshot:
        """The parsed objects as a Snapshot (updated with what changed since the last one,
        or built from scratch when most of it changed)."""
        if self._snapshot is None or len(self._pending) * 8 > len(self.parsed):
            self._snapshot = Snapshot(dict(self.parsed))
        elif self._pending:
            self._snapshot = self._snapshot.updated(self._pending)
        self._pending.clear()
        return self._snapshot

    def take_snapshot(self) -> tuple[Snapshot, frozenset[Key]]:
        """The snapshot, and the keys whose object changed since the last call."""
        changed, self._changed = frozenset(self._changed), set()
        return self.snapshot(), changed

    def tls(self) -> dict[str, tuple[bytes, bytes]]:
        """TLS pairs of every kubernetes.io/tls Secret, keyed ``namespace/name`` (computed
        again only after a Secret event: every reconcile asks, and the store may hold
        thousands of routes). The caller must not change the dict."""
        if self._tls is None:
            out: dict[str, tuple[bytes, bytes]] = {}
            for key, obj in self.raw.items():
                if key[0] == "Secret":
                    pair = tls_pair(obj)
                    if pair is not None:
                        out[f"{key[1]}/{key[2]}"] = pair
            self._tls = out
        return self._tls

    def key_of(self, obj: Resource) -> Key:
        return key_of(obj)
