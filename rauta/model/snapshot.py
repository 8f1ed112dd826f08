"""An immutable snapshot of the cluster resources the model reads.

Role: the single input of the translator, keyed by (kind, namespace, name).

Rules:
- A snapshot never changes after construction; ``with_object``/``without`` return new ones.
- Iteration order is the sorted key order, never insertion order, so shuffling the input
  cannot change anything computed from a snapshot.
- Duplicate keys are an error in ``from_objects`` (the last write would silently win).
- ``updated`` applies a few changes without re-sorting everything: its result equals the
  snapshot built from scratch over the same items.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from rauta.model.resources import Resource, ResourceError, parse_object

Key = tuple[str, str, str]
R = TypeVar("R", bound=Resource)


def key_of(obj: Resource) -> Key:
    """The (kind, namespace, name) key of a resource."""
    return (obj.kind, obj.metadata.namespace, obj.metadata.name)


class Snapshot:
    """A frozen mapping of resource key to resource."""

    __slots__ = ("_items", "_by_kind", "_keys")

    def __init__(self, items: Mapping[Key, Resource] | None = None) -> None:
        ordered = dict(sorted((items or {}).items()))
        self._keys: tuple[Key, ...] = tuple(ordered)
        self._items: MappingProxyType[Key, Resource] = MappingProxyType(ordered)
        by_kind: dict[str, list[Resource]] = {}
        for (kind, _, _), obj in ordered.items():
            by_kind.setdefault(kind, []).append(obj)
        self._by_kind: MappingProxyType[str, tuple[Resource, ...]] = MappingProxyType(
            {k: tuple(v) for k, v in by_kind.items()}
        )

    @classmethod
    def from_objects(cls, objects: Iterable[Resource]) -> Snapshot:
        items: dict[Key, Resource] = {}
        for obj in objects:
            key = key_of(obj)
            if key in items:
                raise ResourceError(key[0], f"{key[1]}/{key[2]}" if key[1] else key[2],
                                    "metadata.name", "duplicate object in the input")
            items[key] = obj
        return cls(items)

    @classmethod
    def from_dicts(cls, objects: Iterable[Any]) -> Snapshot:
        """Parse raw Kubernetes objects (``kind: List`` items are flattened)."""
        parsed: list[Resource] = []
        for obj in objects:
            if isinstance(obj, Mapping) and obj.get("kind") == "List":
                parsed.extend(parse_object(item) for item in obj.get("items") or ())
            elif obj is not None:
                parsed.append(parse_object(obj))
        return cls.from_objects(parsed)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Resource]:
        return iter(self._items.values())

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and dict(self._items) == dict(other._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items))

    def keys(self) -> tuple[Key, ...]:
        return self._keys

    def get(self, kind: str, namespace: str, name: str) -> Resource | None:
        return self._items.get((kind, namespace, name))

    def of_kind(self, cls: type[R]) -> tuple[R, ...]:
        """All resources of one type, in key order."""
        kind = cls.model_fields["kind"].default
        return self._by_kind.get(kind, ())  # type: ignore[return-value]

    def with_object(self, obj: Resource) -> Snapshot:
        items = dict(self._items)
        items[key_of(obj)] = obj
        return Snapshot(items)

    def updated(self, changes: Mapping[Key, Resource | None]) -> Snapshot:
        """This snapshot with ``changes`` applied (``None`` deletes the key)."""
        if not changes:
            return self
        keys = list(self._keys)
        items = self._items.copy()  # the underlying dict's copy: C speed, order kept
        reshaped = False  # a key added or removed (else only values are replaced)
        replaced: list[Key] = []
        for key, obj in changes.items():
            if obj is None:
                if key in items:
                    del items[key]
                    del keys[bisect_left(keys, key)]
                    reshaped = True
            else:
                if key not in items:
                    insort(keys, key)
                    reshaped = True
                else:
                    replaced.append(key)
                items[key] = obj
        if reshaped:  # new keys went to the end of the dict: restore the key order
            items = {k: items[k] for k in keys}
        by_kind = self._by_kind.copy()
        for kind in {k[0] for k in (changes if reshaped else replaced)}:
            # Keys sort by kind first, so a kind's keys are one contiguous run.
            lo, hi = bisect_left(keys, (kind,)), bisect_left(keys, (kind + "\0",))
            if reshaped:
                group = [items[k] for k in keys[lo:hi]]
            else:
                group = list(by_kind[kind])
                for key in replaced:
                    if key[0] == kind:
                        group[bisect_left(keys, key, lo, hi) - lo] = items[key]
            if group:
                by_kind[kind] = tuple(group)
            else:
                by_kind.pop(kind, None)
        new = Snapshot.__new__(Snapshot)
        new._keys = tuple(keys)
        new._items = MappingProxyType(items)
        new._by_kind = MappingProxyType(by_kind)
        return new

    def without(self, key: Key) -> Snapshot:
        items = dict(self._items)
        items.pop(key, None)
        return Snapshot(items)
