"""The ``--gateway-services`` mode of the translator (issue 11, "each Gateway gets its own
address"): spec.infrastructure accepted only in the mode, listeners bound on internal
ports, redirects keep the listener port, ownership of generated Services, and the
incremental translator equal to ``translate`` in the mode (a stateful machine built on
``tests/stateful/test_incremental_machine.py``'s object strategies).

Expected values are written out from the rules (issue 11, services.py), not computed
with the code under test.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from rauta.model import incremental
from rauta.model.conditions import Reason
from rauta.model.resources import Service, parse_object
from rauta.model.routing import RequestView
from rauta.model.routing import route as route_request
from rauta.model.services import (
    CONTROLLER_ANNOTATION,
    GATEWAY_NAME_LABEL,
    ServiceMode,
    owner_gateway,
)
from rauta.model.snapshot import Snapshot, key_of
from rauta.model.translate import translate
from tests.stateful import test_incremental_machine as machine
from tests.unit.model.test_translate import conds, gateway, gw_status, listener, route, snap

CTRL = "rauta.io/gateway-controller"
MODE = ServiceMode(port_range=(30000, 30009))


def owned_service(gw: str = "gw", ns: str = "infra", targets: dict[int, int] | None = None,
                  ingress: list[dict[str, str]] | None = None, **meta: Any) -> dict[str, Any]:
    """A Service as rauta generates it for Gateway ``ns/gw`` (what a watch delivers)."""
    metadata = {"name": f"{gw}-rauta", "namespace": ns,
                "labels": {GATEWAY_NAME_LABEL: gw},
                "annotations": {CONTROLLER_ANNOTATION: CTRL},
                "ownerReferences": [{"apiVersion": "gateway.networking.k8s.io/v1",
                                     "kind": "Gateway", "name": gw, "uid": "u",
                                     "controller": True}]}
    metadata.update(meta)
    out: dict[str, Any] = {
        "kind": "Service", "metadata": metadata,
        "spec": {"type": "LoadBalancer",
                 "ports": [{"name": f"p{p}", "port": p, "targetPort": t}
                           for p, t in (targets or {80: 30005}).items()]}}
    if ingress is not None:
        out["status"] = {"loadBalancer": {"ingress": ingress}}
    return out


def test_infrastructure_labels_are_accepted_only_in_the_mode() -> None:
    gw = gateway(infrastructure={"labels": {"team": "a"}, "annotations": {"x": "y"}})
    without = conds(gw_status(translate(snap(gw))).conditions)["Accepted"]
    assert (without.status, without.reason) == ("False", Reason.INVALID)
    t = translate(snap(gw), gateway_services=MODE)
    assert conds(gw_status(t).conditions)["Accepted"].status == "True"
    (svc,) = t.services
    assert svc["metadata"]["labels"] == {GATEWAY_NAME_LABEL: "gw", "team": "a"}  # type: ignore[index]
    assert svc["metadata"]["annotations"] == {CONTROLLER_ANNOTATION: CTRL, "x": "y"}  # type: ignore[index]


def test_parameters_ref_stays_invalid_parameters_in_the_mode() -> None:
    gw = gateway(infrastructure={"parametersRef": {"group": "x", "kind": "Y", "name": "z"}})
    t = translate(snap(gw), gateway_services=MODE)
    accepted = conds(gw_status(t).conditions)["Accepted"]
    assert (accepted.status, accepted.reason) == ("False", Reason.INVALID_PARAMETERS)
    assert t.services == () and t.config.ports == ()


def test_two_gateways_on_port_80_get_their_own_internal_ports() -> None:
    t = translate(snap(gateway("one"), gateway("two"), route(parents=[
        {"name": "one", "namespace": "infra"}])), gateway_services=MODE)
    got = [(p.address, p.port, p.public_port, [lr.gateway for lr in p.listeners])
           for p in t.config.ports]
    # same creationTimestamp: infra/gw < infra/one < infra/two
    assert got == [("", 30000, 80, ["infra/gw"]), ("", 30001, 80, ["infra/one"]),
                   ("", 30002, 80, ["infra/two"])]
    for key in ("infra/one", "infra/two"):
        lis = gw_status(t, key).listeners[0]
        assert conds(lis.conditions)["Conflicted"].reason == Reason.NO_CONFLICTS


def test_sticky_port_and_load_balancer_address() -> None:
    t = translate(snap(owned_service(targets={80: 30005}, ingress=[{"ip": "203.0.113.9"}])),
                  gateway_services=MODE)
    assert [(p.port, p.public_port) for p in t.config.ports] == [(30005, 80)]
    st_ = gw_status(t)
    assert st_.addresses == (("IPAddress", "203.0.113.9"),)
    programmed = conds(st_.conditions)["Programmed"]
    assert (programmed.status, programmed.reason) == ("True", Reason.PROGRAMMED)


def test_a_service_without_the_mark_is_not_ours() -> None:
    for change in ({"annotations": {}}, {"ownerReferences": []},
                   {"labels": {GATEWAY_NAME_LABEL: "other"}},
                   {"annotations": {CONTROLLER_ANNOTATION: "example.net/else"}}):
        obj = parse_object(owned_service(**change))
        assert isinstance(obj, Service)
        assert owner_gateway(obj, CTRL) is None, change
    obj = parse_object(owned_service())
    assert isinstance(obj, Service) and owner_gateway(obj, CTRL) == "infra/gw"


def test_redirect_keeping_the_port_uses_the_listener_port() -> None:
    redirect = {"filters": [{"type": "RequestRedirect",
                             "requestRedirect": {"hostname": "new.example.com"}}]}
    gw = gateway(listeners=[listener(port=8080)])
    t = translate(snap(gw, route(rules=[redirect])), gateway_services=MODE)
    (pc,) = t.config.ports
    assert (pc.port, pc.public_port) == (30000, 8080)
    view = RequestView(method="GET", host="old.example.com", path="/x", query="",
                       headers=(), port=30000, scheme="http", client_ip="192.0.2.1",
                       client_port=4000)
    d = route_request(t.config, view)
    assert d.kind == "redirect" and d.location == "http://new.example.com:8080/x"


def test_without_the_mode_nothing_is_generated() -> None:
    t = translate(snap(owned_service(ingress=[{"ip": "203.0.113.9"}])))
    assert t.services == ()
    assert [(p.port, p.public_port) for p in t.config.ports] == [(80, None)]
    assert gw_status(t).addresses == ()


# ------------------------------------------------------------------ incremental == full

generated = st.builds(
    lambda gw, ns, target, ingress, marked: owned_service(
        gw, ns, {80: target}, ingress,
        **({} if marked else {"annotations": {}})),
    st.sampled_from(("gw", "gw2")), st.sampled_from(("infra", "app")),
    st.sampled_from((30000, 30001, 30009, 40000)),
    st.none() | st.sampled_from(([], [{"ip": "203.0.113.1"}], [{"hostname": "lb.test"}])),
    st.sampled_from((True, True, False)))

MODES = (ServiceMode(port_range=(30000, 30002)),
         ServiceMode(port_range=(30000, 30009), fallback=(("IPAddress", "192.0.2.1"),),
                     selector=(("app", "rauta"),)))


class ServiceModeMachine(machine.IncrementalMachine):
    """The incremental machine, in the service mode, with generated Services too."""

    mode: ServiceMode = MODES[0]

    @initialize(first=st.lists(machine.routes, min_size=1, max_size=4),
                objs=st.lists(st.one_of(machine.OBJECTS, generated), max_size=8),
                mode=st.sampled_from(MODES))
    def begin(self, first: list[dict[str, Any]],  # type: ignore[override]
              objs: list[dict[str, Any]], mode: ServiceMode) -> None:
        """Replaces the parent's initializer (same name): the mode instead of a pool."""
        self.mode = mode
        for raw in [*machine.BASE, *first, *objs]:
            obj = parse_object(raw)
            self.objects[key_of(obj)] = obj
        self.state = incremental.start(Snapshot(self.objects), gateway_services=mode)

    @rule(raws=st.lists(generated, min_size=1, max_size=2))
    def put_generated(self, raws: list[dict[str, Any]]) -> None:
        """Create or replace generated Services (a sticky port, an LB address arrives)."""
        self.store(raws)

    @invariant()
    def equals_full_translation(self) -> None:
        if self.state is None:
            return
        full = translate(Snapshot(self.objects), applied=self.applied,
                         gateway_services=self.mode)
        got = self.state.translation
        assert got.config == full.config
        assert got.statuses == full.statuses
        assert got.services == full.services


ServiceModeMachine.TestCase.settings = settings(stateful_step_count=20, max_examples=40,
                                                deadline=None)
TestServiceModeIncremental = ServiceModeMachine.TestCase
