"""The immutable input snapshot (rauta.model.snapshot)."""

from __future__ import annotations

import random

import pytest

from rauta.model.resources import Gateway, ResourceError, Service, parse_object
from rauta.model.snapshot import Snapshot, key_of


def _svc(name: str, ns: str = "app", port: int = 80) -> dict:
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"port": port}]}}


OBJECTS = [
    {"kind": "GatewayClass", "metadata": {"name": "rauta"},
     "spec": {"controllerName": "rauta.io/gateway-controller"}},
    {"kind": "Gateway", "metadata": {"name": "gw", "namespace": "infra"},
     "spec": {"gatewayClassName": "rauta",
              "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
    _svc("b"), _svc("a"), _svc("a", ns="other"),
    {"kind": "Namespace", "metadata": {"name": "app"}},
]


def test_snapshot_is_keyed_by_kind_namespace_name() -> None:
    snap = Snapshot.from_dicts(OBJECTS)
    assert ("Service", "app", "a") in snap
    assert ("GatewayClass", "", "rauta") in snap
    svc = snap.get("Service", "other", "a")
    assert isinstance(svc, Service) and key_of(svc) == ("Service", "other", "a")
    assert snap.get("Service", "nope", "a") is None
    assert len(snap) == len(OBJECTS)


def test_keys_are_sorted_not_insertion_ordered() -> None:
    snap = Snapshot.from_dicts(OBJECTS)
    assert list(snap.keys()) == sorted(snap.keys())
    assert [key_of(o) for o in snap] == list(snap.keys())


def test_shuffled_input_gives_equal_snapshots_and_identical_key_order() -> None:
    base = Snapshot.from_dicts(OBJECTS)
    rng = random.Random(7)
    for _ in range(10):
        shuffled = OBJECTS[:]
        rng.shuffle(shuffled)
        snap = Snapshot.from_dicts(shuffled)
        assert snap == base
        assert hash(snap) == hash(base)
        assert snap.keys() == base.keys()
        assert snap.of_kind(Service) == base.of_kind(Service)


def test_of_kind_returns_only_that_kind_in_key_order() -> None:
    snap = Snapshot.from_dicts(OBJECTS)
    services = snap.of_kind(Service)
    assert [(s.metadata.namespace, s.metadata.name) for s in services] == [
        ("app", "a"), ("app", "b"), ("other", "a")]
    assert [g.metadata.name for g in snap.of_kind(Gateway)] == ["gw"]
    assert isinstance(services, tuple)


def test_duplicate_objects_are_rejected() -> None:
    with pytest.raises(ResourceError) as info:
        Snapshot.from_dicts([_svc("a"), _svc("a", port=81)])
    assert "duplicate" in str(info.value)
    assert "Service app/a" in str(info.value)


def test_same_name_in_another_namespace_or_kind_is_not_a_duplicate() -> None:
    snap = Snapshot.from_dicts([
        _svc("a"), _svc("a", ns="b"),
        {"kind": "Secret", "metadata": {"name": "a", "namespace": "app"}},
    ])
    assert len(snap) == 3


def test_with_object_returns_a_new_snapshot_and_never_mutates() -> None:
    snap = Snapshot.from_dicts(OBJECTS)
    before = snap.keys()
    new = parse_object(_svc("c"))
    bigger = snap.with_object(new)
    assert bigger is not snap
    assert snap.keys() == before and ("Service", "app", "c") not in snap
    assert ("Service", "app", "c") in bigger and len(bigger) == len(snap) + 1
    assert list(bigger.keys()) == sorted(bigger.keys())


def test_with_object_replaces_an_object_with_the_same_key() -> None:
    snap = Snapshot.from_dicts(OBJECTS)
    replaced = snap.with_object(parse_object(_svc("a", port=9090)))
    assert len(replaced) == len(snap)
    assert replaced.get("Service", "app", "a").spec.ports[0].port == 9090  # type: ignore[union-attr]
    assert snap.get("Service", "app", "a").spec.ports[0].port == 80  # type: ignore[union-attr]
    assert replaced != snap


def test_without_returns_a_new_snapshot_and_never_mutates() -> None:
    snap = Snapshot.from_dicts(OBJECTS)
    smaller = snap.without(("Service", "app", "a"))
    assert ("Service", "app", "a") in snap
    assert ("Service", "app", "a") not in smaller
    assert len(smaller) == len(snap) - 1
    assert [s.metadata.name for s in smaller.of_kind(Service)] == ["b", "a"]
    assert snap.without(("Service", "x", "missing")) == snap


def test_from_dicts_flattens_kind_list_and_skips_none() -> None:
    lst = {"apiVersion": "v1", "kind": "List", "items": [_svc("a"), _svc("b")]}
    snap = Snapshot.from_dicts([lst, None, _svc("c")])
    assert [s.metadata.name for s in snap.of_kind(Service)] == ["a", "b", "c"]
    assert Snapshot.from_dicts([{"kind": "List", "items": None}]) == Snapshot()


def test_from_dicts_propagates_parse_errors() -> None:
    with pytest.raises(ResourceError, match="spec.listeners"):
        Snapshot.from_dicts([{"kind": "Gateway", "metadata": {"name": "g"},
                              "spec": {"gatewayClassName": "c", "listeners": []}}])


def test_snapshot_internal_mapping_is_read_only() -> None:
    snap = Snapshot.from_dicts(OBJECTS)
    with pytest.raises(TypeError):
        snap._items[("Service", "app", "z")] = None  # type: ignore[index]
    with pytest.raises(AttributeError):
        snap.extra = 1  # type: ignore[attr-defined]


def _ns(name: str) -> dict:
    return {"kind": "Namespace", "metadata": {"name": name}}


POOL = [parse_object(o) for o in (*(_svc(n, ns) for n in "abc" for ns in ("x", "y")),
                                  *(_svc(n, port=81) for n in "ab"), _ns("x"), _ns("y"))]


def test_updated_equals_a_snapshot_built_from_scratch() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    objs = st.lists(st.sampled_from(POOL), unique_by=key_of)

    @given(objs, st.lists(st.tuples(st.sampled_from(POOL), st.booleans()), max_size=6))
    def check(base: list, changes: list) -> None:
        snap = Snapshot.from_objects(base)
        merged = {key_of(o): o for o in base}
        delta: dict = {}
        for obj, delete in changes:
            delta[key_of(obj)] = None if delete else obj
            if delete:
                merged.pop(key_of(obj), None)
            else:
                merged[key_of(obj)] = obj
        got, want = snap.updated(delta), Snapshot(merged)
        assert got == want and got.keys() == want.keys()
        assert list(got) == list(want)
        for cls in (Service, Gateway, type(POOL[-1])):
            assert got.of_kind(cls) == want.of_kind(cls)
        assert snap == Snapshot.from_objects(base)  # the original is untouched

    check()
