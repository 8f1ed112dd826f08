"""Status stamping and merging (rauta.model.status)."""

from __future__ import annotations

import copy

import pydantic
import pytest

from rauta.model.conditions import Condition, CondType, Reason, cond
from rauta.model.status import (
    Applied,
    GatewayStatus,
    ListenerStatus,
    RouteParentStatus,
    RouteStatus,
    gateway_status_dict,
    merge_route_parents,
    stamp,
    stamp_conditions,
)

OURS = "rauta.io/gateway-controller"
THEIRS = "example.com/other-controller"
T_OLD, T_NOW = "2024-01-01T00:00:00Z", "2024-05-05T05:05:05Z"


def _prev(type_: str, status: str, reason: str = "Whatever", ltt: str = T_OLD) -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": "old",
            "observedGeneration": 1, "lastTransitionTime": ltt}


ACCEPTED = cond(CondType.ACCEPTED, True, Reason.ACCEPTED, "fine")
RESOLVED_BAD = cond(CondType.RESOLVED_REFS, False, Reason.BACKEND_NOT_FOUND, "gone")


def test_new_condition_gets_now_and_observed_generation() -> None:
    (out,) = stamp_conditions([ACCEPTED], [], generation=7, now=T_NOW)
    assert out == {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "fine",
                   "observedGeneration": 7, "lastTransitionTime": T_NOW}


def test_unchanged_status_keeps_last_transition_time_even_if_reason_and_message_change() -> None:
    (out,) = stamp_conditions([ACCEPTED], [_prev("Accepted", "True", reason="Other")],
                              generation=8, now=T_NOW)
    assert out["lastTransitionTime"] == T_OLD
    assert (out["reason"], out["message"], out["observedGeneration"]) == ("Accepted", "fine", 8)


def test_changed_status_uses_now() -> None:
    (out,) = stamp_conditions([ACCEPTED], [_prev("Accepted", "False")], generation=2, now=T_NOW)
    assert out["lastTransitionTime"] == T_NOW


def test_unknown_to_true_is_a_transition() -> None:
    (out,) = stamp_conditions([ACCEPTED], [_prev("Accepted", "Unknown")], generation=2, now=T_NOW)
    assert out["lastTransitionTime"] == T_NOW


def test_previous_conditions_are_matched_by_type_only() -> None:
    prev = [_prev("ResolvedRefs", "False", ltt="2023-03-03T00:00:00Z"), _prev("Accepted", "False")]
    out = stamp_conditions([ACCEPTED, RESOLVED_BAD], prev, generation=1, now=T_NOW)
    assert [c["type"] for c in out] == ["Accepted", "ResolvedRefs"]
    assert out[0]["lastTransitionTime"] == T_NOW
    assert out[1]["lastTransitionTime"] == "2023-03-03T00:00:00Z"


def test_previous_without_last_transition_time_falls_back_to_now() -> None:
    prev = [{"type": "Accepted", "status": "True"}]
    (out,) = stamp_conditions([ACCEPTED], prev, generation=1, now=T_NOW)
    assert out["lastTransitionTime"] == T_NOW


def test_stamp_conditions_does_not_mutate_previous() -> None:
    prev = [_prev("Accepted", "True")]
    snapshot = copy.deepcopy(prev)
    stamp_conditions([ACCEPTED], prev, generation=9, now=T_NOW)
    assert prev == snapshot


def _route_status(*parents: RouteParentStatus, generation: int = 4) -> RouteStatus:
    return RouteStatus(namespace="app", name="web", generation=generation, parents=parents)


def _ours(name: str, *conds: Condition) -> RouteParentStatus:
    ref = (("group", "gateway.networking.k8s.io"), ("kind", "Gateway"),
           ("namespace", "infra"), ("name", name))
    return RouteParentStatus(parent_ref=ref, controller_name=OURS, conditions=conds)


def _entry(controller: str, name: str, conditions: list | None = None) -> dict:
    return {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                          "namespace": "infra", "name": name},
            "controllerName": controller, "conditions": conditions or []}


def test_merge_route_parents_keeps_other_controllers_in_order_and_replaces_ours() -> None:
    previous = [_entry(THEIRS, "x"), _entry(OURS, "gw"), _entry(THEIRS, "y"),
                _entry(OURS, "stale")]
    out = merge_route_parents(_route_status(_ours("gw", ACCEPTED)), previous, OURS, T_NOW)
    assert [(p["controllerName"], p["parentRef"]["name"]) for p in out] == [
        (THEIRS, "x"), (THEIRS, "y"), (OURS, "gw")]
    assert out[0] == previous[0] and out[1] == previous[2]
    assert out[2]["conditions"][0]["observedGeneration"] == 4


def test_merge_route_parents_keeps_our_last_transition_time_for_the_same_parent() -> None:
    previous = [_entry(OURS, "gw", [_prev("Accepted", "True")])]
    out = merge_route_parents(_route_status(_ours("gw", ACCEPTED)), previous, OURS, T_NOW)
    assert out[0]["conditions"][0]["lastTransitionTime"] == T_OLD


def test_merge_route_parents_does_not_borrow_times_from_another_parent_or_controller() -> None:
    previous = [_entry(THEIRS, "gw", [_prev("Accepted", "True")]),
                _entry(OURS, "other", [_prev("Accepted", "True")])]
    out = merge_route_parents(_route_status(_ours("gw", ACCEPTED)), previous, OURS, T_NOW)
    assert out[-1]["conditions"][0]["lastTransitionTime"] == T_NOW


def test_merge_route_parents_with_no_entries_of_ours_removes_our_old_ones_only() -> None:
    previous = [_entry(OURS, "gw"), _entry(THEIRS, "x")]
    assert merge_route_parents(_route_status(), previous, OURS, T_NOW) == [_entry(THEIRS, "x")]


def test_gateway_status_dict_stamps_listeners_by_name_and_adds_addresses() -> None:
    prog = cond(CondType.PROGRAMMED, True, Reason.PROGRAMMED)
    gs = GatewayStatus(
        namespace="infra", name="gw", generation=5, conditions=(ACCEPTED, prog),
        listeners=(ListenerStatus(name="http", supported_kinds=(("g", "HTTPRoute"),),
                                  attached_routes=2, conditions=(ACCEPTED,)),))
    prev = {"conditions": [_prev("Accepted", "True")],
            "listeners": [{"name": "http", "conditions": [_prev("Accepted", "False")]}]}
    out = gateway_status_dict(gs, prev, T_NOW, addresses=[{"type": "IPAddress",
                                                           "value": "10.0.0.1"}])
    assert list(out) == ["addresses", "conditions", "listeners"]
    assert out["conditions"][0]["lastTransitionTime"] == T_OLD
    assert out["conditions"][1]["lastTransitionTime"] == T_NOW
    (ls,) = out["listeners"]
    assert ls["supportedKinds"] == [{"group": "g", "kind": "HTTPRoute"}]
    assert ls["attachedRoutes"] == 2
    assert ls["conditions"][0]["lastTransitionTime"] == T_NOW
    assert ls["conditions"][0]["observedGeneration"] == 5


def test_stamp_removes_an_address_the_gateway_no_longer_has() -> None:
    # A pool Gateway that lost its address (pool exhausted, address refused) must not
    # keep advertising the old one; fields rauta does not own are kept.
    gs = GatewayStatus(namespace="infra", name="gw", generation=2, conditions=(ACCEPTED,),
                       listeners=())
    current = {"addresses": [{"type": "IPAddress", "value": "127.0.1.7"}], "other": 1}
    out = stamp(gs, current, controller_name=OURS, now=T_NOW)
    assert "addresses" not in out and out["other"] == 1
    assert current["addresses"] == [{"type": "IPAddress", "value": "127.0.1.7"}]  # unmutated
    moved = gs.model_copy(update={"addresses": (("IPAddress", "127.0.1.8"),)})
    assert stamp(moved, current, controller_name=OURS, now=T_NOW)["addresses"] == [
        {"type": "IPAddress", "value": "127.0.1.8"}]


def test_applied_failure_lookup() -> None:
    a = Applied(ports=(80,), failed=((443, "address in use"),))
    assert a.failure(443) == "address in use"
    assert a.failure(80) is None


def test_status_models_are_frozen() -> None:
    a = Applied()
    with pytest.raises(pydantic.ValidationError):
        a.ports = (1,)  # type: ignore[misc]
