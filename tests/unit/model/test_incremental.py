"""Incremental translation (rauta.model.incremental): equal to ``translate``, recomputes
only the routes a change touches, reuses unchanged pieces by identity, never mutates the
previous state. (Random change sequences: tests/stateful/test_incremental_machine.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rauta.model import incremental
from rauta.model.resources import parse_object
from rauta.model.snapshot import Key, Snapshot, key_of
from rauta.model.status import Applied
from rauta.model.translate import translate

from .test_translate import eslice, gateway, gclass, listener, route, service

GOLDEN = Path(__file__).resolve().parents[2] / "golden"


def objects(*raws: dict[str, Any]) -> dict[Key, Any]:
    out = {}
    for raw in raws:
        obj = parse_object(raw)
        out[key_of(obj)] = obj
    return out


def world(n: int = 4) -> dict[Key, Any]:
    """One Gateway, Services web0/web1, n routes r{i} each to web{i % 2}."""
    return objects(gclass(), gateway(listeners=[listener(), listener("other", port=8080)]),
                   service("web0"), service("web1"), eslice("web0"), eslice("web1", "app",
                                                                          "10.0.0.2"),
                   *(route(f"r{i}", hostnames=[f"h{i}.example.com"],
                           rules=[{"backendRefs": [{"name": f"web{i % 2}", "port": 80}]}])
                     for i in range(n)))


def step(state: incremental.Incremental, objs: dict[Key, Any], *changed: Key,
         applied: Applied | None = None) -> incremental.Incremental:
    new = incremental.update(state, Snapshot(objs), changed, applied=applied)
    assert new.translation == translate(Snapshot(objs), applied=applied)
    return new


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*/input.yaml")), ids=lambda p: p.parent.name)
def test_start_equals_translate_on_every_golden_input(path: Path) -> None:
    snap = Snapshot.from_dicts(d for d in yaml.safe_load_all(path.read_text()) if d)
    assert incremental.start(snap).translation == translate(snap)


def test_a_route_change_recomputes_that_route_only_and_keeps_other_listeners() -> None:
    objs = world()
    state = incremental.start(Snapshot(objs))
    before = state.translation.config
    changed = route("r1", hostnames=["h1.example.com"], rules=[
        {"matches": [{"path": {"type": "Exact", "value": "/x"}}],
         "backendRefs": [{"name": "web1", "port": 80}]}])
    objs.update(objects(changed))
    new = step(state, objs, ("HTTPRoute", "app", "r1"))
    assert new.recomputed == 1
    after = new.translation.config
    assert after != before
    # Every other route's status is the same object; untouched rules too.
    old_routes = {(s.namespace, s.name): s for s in state.translation.statuses.routes}
    for s in new.translation.statuses.routes:
        if s.name != "r1":
            assert s is old_routes[(s.namespace, s.name)]
    old_rules = {(p.port, r.route, r.hostname): r for p in before.ports
                 for lr in p.listeners for r in lr.rules}
    for p in after.ports:
        for lr in p.listeners:
            for r in lr.rules:
                if r.route != "app/r1":
                    assert r is old_rules[(p.port, r.route, r.hostname)]


def test_an_unchanged_result_is_the_previous_config_object() -> None:
    objs = world()
    state = incremental.start(Snapshot(objs))
    objs.update(objects(service("unused")))
    new = step(state, objs, ("Service", "app", "unused"))
    assert new.recomputed == 0
    assert new.translation.config is state.translation.config


def test_a_service_change_recomputes_exactly_the_routes_that_use_it() -> None:
    objs = world(6)
    state = incremental.start(Snapshot(objs))
    svc = service("web0")
    svc["spec"]["ports"][0]["port"] = 81  # the routes ask for port 80: now unresolved
    objs.update(objects(svc))
    new = step(state, objs, ("Service", "app", "web0"))
    assert new.recomputed == 3  # r0, r2, r4


def test_an_endpointslice_moving_to_another_service_updates_both() -> None:
    objs = world()
    state = incremental.start(Snapshot(objs))
    moved = eslice("web1", "app", "10.0.0.7")
    moved["metadata"]["name"] = "web0-1"  # the slice of web0 now labels web1
    objs.update(objects(moved))
    new = step(state, objs, ("EndpointSlice", "app", "web0-1"))
    assert new.recomputed == 4


def test_deletes_namespace_labels_grants_and_certificate_verdicts() -> None:
    objs = world()
    state = incremental.start(Snapshot(objs))
    del objs[("HTTPRoute", "app", "r0")]
    state = step(state, objs, ("HTTPRoute", "app", "r0"))
    del objs[("Service", "app", "web1")]
    state = step(state, objs, ("Service", "app", "web1"))
    objs.update(objects({"kind": "Namespace", "metadata": {"name": "app",
                                                           "labels": {"team": "a"}}}))
    state = step(state, objs, ("Namespace", "", "app"))
    del objs[("Gateway", "infra", "gw")]
    state = step(state, objs, ("Gateway", "infra", "gw"))
    assert state.translation.config.ports == ()
    state = step(state, objs, applied=Applied(invalid_certificates=(("infra/c", "bad"),)))


def test_update_does_not_mutate_the_previous_state() -> None:
    objs = world()
    state = incremental.start(Snapshot(objs))
    dump = state.translation.config.model_dump_json(), state.translation.statuses
    routes, listeners = dict(state.routes), dict(state.listeners)
    objs.update(objects(route("r9", hostnames=["h9.example.com"])))
    step(state, objs, ("HTTPRoute", "app", "r9"))
    assert (state.translation.config.model_dump_json(), state.translation.statuses) == dump
    assert dict(state.routes) == routes and dict(state.listeners) == listeners


def test_a_missed_key_gives_a_stale_result_which_is_why_changed_keys_exists() -> None:
    objs = world()
    state = incremental.start(Snapshot(objs))
    objs.update(objects(route("r1", hostnames=["other.example.com"])))
    stale = incremental.update(state, Snapshot(objs), ())
    assert stale.translation != translate(Snapshot(objs))
    keys = incremental.changed_keys(state.snapshot, Snapshot(objs))
    assert keys == {("HTTPRoute", "app", "r1")}
    assert incremental.update(state, Snapshot(objs), keys).translation == translate(
        Snapshot(objs))


def test_many_changes_in_one_listener_resort_it() -> None:
    objs = world(200)
    state = incremental.start(Snapshot(objs))
    for i in range(0, 200, 2):
        objs.update(objects(route(f"r{i}", hostnames=[f"x{i}.example.com"])))
    step(state, objs, *(("HTTPRoute", "app", f"r{i}") for i in range(0, 200, 2)))
