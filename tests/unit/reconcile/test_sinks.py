"""MemorySink: stamping with an injected clock, other controllers' entries kept, YAML file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rauta.model.conditions import CondType, Reason, cond
from rauta.model.status import (
    GatewayClassStatus,
    GatewayStatus,
    ListenerStatus,
    RouteParentStatus,
    RouteStatus,
)
from rauta.reconcile.reconciler import StatusChanges
from rauta.reconcile.sinks import MemorySink, summary

from . import CONTROLLER

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(10)]

GW_KEY = ("Gateway", "infra", "gw")
RT_KEY = ("HTTPRoute", "default", "web")


class Clock:
    def __init__(self) -> None:
        self.now = "2026-01-01T00:00:00Z"

    def __call__(self) -> str:
        return self.now


def gw(programmed: bool = True, generation: int = 1, message: str = "") -> GatewayStatus:
    prog = cond(CondType.PROGRAMMED, programmed,
                Reason.PROGRAMMED if programmed else Reason.INVALID, message)
    lis = ListenerStatus(name="http", supported_kinds=(("gateway.networking.k8s.io",
                                                        "HTTPRoute"),),
                         attached_routes=1,
                         conditions=(cond(CondType.ACCEPTED, True, Reason.ACCEPTED), prog))
    return GatewayStatus(namespace="infra", name="gw", generation=generation,
                         conditions=(cond(CondType.ACCEPTED, True, Reason.ACCEPTED), prog),
                         listeners=(lis,))


PARENT_REF = (("group", "gateway.networking.k8s.io"), ("kind", "Gateway"),
              ("namespace", "infra"), ("name", "gw"))


def rt(accepted: bool = True, generation: int = 3,
       parents: bool = True) -> RouteStatus:
    entry = RouteParentStatus(
        parent_ref=PARENT_REF, controller_name=CONTROLLER,
        conditions=(cond(CondType.ACCEPTED, accepted,
                         Reason.ACCEPTED if accepted else Reason.NOT_ALLOWED_BY_LISTENERS),))
    return RouteStatus(namespace="default", name="web", generation=generation,
                       parents=(entry,) if parents else ())


def by_type(conds: list[dict]) -> dict[str, dict]:
    return {c["type"]: c for c in conds}


async def test_last_transition_time_kept_when_unchanged_and_moved_on_flip() -> None:
    clock = Clock()
    sink = MemorySink(clock=clock)
    await sink.write(StatusChanges(gateways=(gw(),)))
    first = by_type(sink.status[GW_KEY]["conditions"])
    assert first["Programmed"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"

    clock.now = "2026-01-01T00:05:00Z"  # same statuses, new generation: times kept
    await sink.write(StatusChanges(gateways=(gw(generation=2),)))
    second = by_type(sink.status[GW_KEY]["conditions"])
    assert second["Programmed"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert second["Programmed"]["observedGeneration"] == 2

    clock.now = "2026-01-01T00:10:00Z"  # Programmed flips: only its time moves
    await sink.write(StatusChanges(gateways=(gw(programmed=False, generation=2,
                                                message="port in use"),)))
    third = by_type(sink.status[GW_KEY]["conditions"])
    assert third["Programmed"] == {
        "type": "Programmed", "status": "False", "reason": "Invalid", "message": "port in use",
        "observedGeneration": 2, "lastTransitionTime": "2026-01-01T00:10:00Z"}
    assert third["Accepted"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    lis = by_type(sink.status[GW_KEY]["listeners"][0]["conditions"])
    assert lis["Programmed"]["lastTransitionTime"] == "2026-01-01T00:10:00Z"
    assert lis["Accepted"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert sink.writes == 3


async def test_observed_generation_from_generation() -> None:
    sink = MemorySink(clock=Clock())
    gc = GatewayClassStatus(name="rauta", generation=7,
                            conditions=(cond(CondType.ACCEPTED, True, Reason.ACCEPTED),))
    await sink.write(StatusChanges(gateway_classes=(gc,), gateways=(gw(generation=4),),
                                   routes=(rt(generation=9),)))
    assert sink.status[("GatewayClass", "", "rauta")]["conditions"][0]["observedGeneration"] == 7
    assert {c["observedGeneration"] for c in sink.status[GW_KEY]["conditions"]} == {4}
    assert {c["observedGeneration"]
            for c in sink.status[GW_KEY]["listeners"][0]["conditions"]} == {4}
    parent = sink.status[RT_KEY]["parents"][0]
    assert parent["conditions"][0]["observedGeneration"] == 9
    assert parent["parentRef"] == dict(PARENT_REF)
    assert parent["controllerName"] == CONTROLLER


async def test_route_keeps_other_controllers_entries() -> None:
    clock = Clock()
    sink = MemorySink(clock=clock)
    foreign = {"parentRef": {"name": "other-gw", "namespace": "default"},
               "controllerName": "example.com/other",
               "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                               "message": "", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}
    ours_before = {"parentRef": dict(PARENT_REF), "controllerName": CONTROLLER,
                   "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                                   "message": "", "observedGeneration": 1,
                                   "lastTransitionTime": "2025-06-01T00:00:00Z"}]}
    sink.status[RT_KEY] = {"parents": [foreign, ours_before]}

    await sink.write(StatusChanges(routes=(rt(),)))
    parents = sink.status[RT_KEY]["parents"]
    assert parents[0] == foreign
    assert len(parents) == 2
    assert parents[1]["controllerName"] == CONTROLLER
    # Same status as before: its time is kept.
    assert parents[1]["conditions"][0]["lastTransitionTime"] == "2025-06-01T00:00:00Z"

    clock.now = "2026-02-02T00:00:00Z"
    await sink.write(StatusChanges(routes=(rt(accepted=False),)))
    parents = sink.status[RT_KEY]["parents"]
    assert parents[0] == foreign
    assert parents[1]["conditions"][0]["lastTransitionTime"] == "2026-02-02T00:00:00Z"

    # Detached: our entries removed, theirs kept.
    await sink.write(StatusChanges(routes=(rt(parents=False),)))
    assert sink.status[RT_KEY]["parents"] == [foreign]


async def test_path_writes_a_yaml_document(tmp_path: Path) -> None:
    out = tmp_path / "status.yaml"
    sink = MemorySink(clock=Clock(), path=out)
    await sink.write(StatusChanges(gateways=(gw(),), routes=(rt(),)))
    doc = yaml.safe_load(out.read_text())
    assert doc == sink.document()
    assert [(d["kind"], d["namespace"], d["name"]) for d in doc] == [
        ("Gateway", "infra", "gw"), ("HTTPRoute", "default", "web")]
    assert doc[0]["status"]["conditions"][0]["type"] == "Accepted"
    await sink.write(StatusChanges(routes=(rt(parents=False),)))
    doc = yaml.safe_load(out.read_text())
    assert doc[1]["status"] == {"parents": []}


async def test_summary_line() -> None:
    sink = MemorySink(clock=Clock())
    await sink.write(StatusChanges(gateways=(gw(programmed=False),), routes=(rt(),)))
    assert summary(sink.status[GW_KEY]) == "Accepted=True Programmed=False(Invalid)"
    assert summary(sink.status[RT_KEY]) == "gw: Accepted=True"
    assert summary({"parents": []}) == "no parents"
