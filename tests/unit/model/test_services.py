"""Per-Gateway Services (rauta.model.services): internal-port allocation and rendering.

The expected values are written out by hand from the module's rules (not computed by
the code under test); the property test checks uniqueness and order independence.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rauta.model.conditions import Reason
from rauta.model.resources import Gateway, parse_object
from rauta.model.services import (
    GATEWAY_NAME_LABEL,
    PortAllocation,
    allocate_ports,
    parse_port_range,
    render_service,
    service_name,
)


def gw(name: str, ports: tuple[int, ...] = (80,), created: str = "2024-01-01T00:00:00Z",
       ns: str = "default", infrastructure: dict[str, Any] | None = None) -> Gateway:
    obj: dict[str, Any] = {
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": created,
                     "uid": f"uid-{name}"},
        "spec": {"gatewayClassName": "rauta",
                 "listeners": [{"name": f"l{p}", "port": p, "protocol": "HTTP"}
                               for p in ports]},
    }
    if infrastructure is not None:
        obj["spec"]["infrastructure"] = infrastructure
    g = parse_object(obj)
    assert isinstance(g, Gateway)
    return g


def test_parse_port_range() -> None:
    assert parse_port_range("20000-20009") == (20000, 20009)
    assert parse_port_range("5-5") == (5, 5)
    for bad in ("20000", "b-c", "10-5", "0-10", "1-70000", ""):
        with pytest.raises(ValueError, match="--internal-ports"):
            parse_port_range(bad)


def test_lowest_free_in_age_order() -> None:
    old = gw("b", (80, 443), created="2024-01-01T00:00:00Z")
    new = gw("a", (80,), created="2024-02-01T00:00:00Z")
    out = allocate_ports([new, old], {}, (100, 199))
    assert out["default/b"] == PortAllocation(ports=((80, 100), (443, 101)))
    assert out["default/a"] == PortAllocation(ports=((80, 102),))


def test_same_age_orders_by_namespace_then_name() -> None:
    out = allocate_ports([gw("z", ns="a"), gw("a", ns="b"), gw("b", ns="a")], {}, (1, 9))
    assert out["a/b"].ports == ((80, 1),)
    assert out["a/z"].ports == ((80, 2),)
    assert out["b/a"].ports == ((80, 3),)


def test_sticky_keeps_existing_target_ports() -> None:
    old = gw("old", (80,), created="2024-01-01T00:00:00Z")
    new = gw("new", (80, 8080), created="2024-02-01T00:00:00Z")
    existing = {"default/new": {80: 105, 8080: 100}}
    out = allocate_ports([old, new], existing, (100, 199))
    # new keeps 105 and 100; old (older, but without a Service yet) takes the lowest free
    assert out["default/new"].ports == ((80, 105), (8080, 100))
    assert out["default/old"].ports == ((80, 101),)


def test_sticky_conflict_goes_to_the_older_gateway() -> None:
    old = gw("old", created="2024-01-01T00:00:00Z")
    new = gw("new", created="2024-02-01T00:00:00Z")
    existing = {"default/old": {80: 150}, "default/new": {80: 150}}
    out = allocate_ports([new, old], existing, (100, 199))
    assert out["default/old"].ports == ((80, 150),)
    assert out["default/new"].ports == ((80, 100),)


def test_target_outside_range_or_removed_listener_is_not_kept() -> None:
    g = gw("g", (80,))
    out = allocate_ports([g], {"default/g": {80: 5000, 443: 100}}, (100, 199))
    assert out["default/g"].ports == ((80, 100),)


def test_exhausted_range_gives_no_half_gateway() -> None:
    a = gw("a", (80,), created="2024-01-01T00:00:00Z")
    b = gw("b", (80, 81), created="2024-02-01T00:00:00Z")
    c = gw("c", (80,), created="2024-03-01T00:00:00Z")
    out = allocate_ports([a, b, c], {}, (10, 11))
    assert out["default/a"].ports == ((80, 10),)
    assert out["default/b"].ports == ()
    assert out["default/b"].problem is not None
    assert out["default/b"].problem[0] == Reason.ADDRESS_NOT_ASSIGNED
    assert out["default/c"].ports == ((80, 11),)  # b's give-back leaves 11 free


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sets(st.integers(1, 6), min_size=1,
                                                      max_size=3)),
                min_size=1, max_size=6),
       st.integers(0, 1000))
def test_unique_in_range_and_order_independent(specs: list[tuple[int, set[int]]],
                                               seed: int) -> None:
    gws = [gw(f"g{i}", tuple(sorted(ports)), created=f"2024-01-0{day + 1}T00:00:00Z")
           for i, (day, ports) in enumerate(specs)]
    out = allocate_ports(gws, {}, (1000, 1009))
    shuffled = list(gws)
    random.Random(seed).shuffle(shuffled)
    assert allocate_ports(shuffled, {}, (1000, 1009)) == out
    targets = [t for a in out.values() for _, t in a.ports]
    assert len(targets) == len(set(targets))
    assert all(1000 <= t <= 1009 for t in targets)
    for g in gws:
        a = out[f"default/{g.metadata.name}"]
        if a.problem is None:
            assert [p for p, _ in a.ports] == sorted({lis.port for lis in g.spec.listeners})


def test_render_service() -> None:
    g = gw("web", (443, 80), ns="team", infrastructure={
        "labels": {"tier": "edge", GATEWAY_NAME_LABEL: "spoofed"},
        "annotations": {"lb.example/kind": "nlb"}})
    svc = render_service(g, PortAllocation(ports=((80, 20001), (443, 20000))),
                         {"app.kubernetes.io/name": "rauta"})
    assert svc == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "web-rauta",
            "namespace": "team",
            "labels": {GATEWAY_NAME_LABEL: "web", "tier": "edge"},
            "annotations": {"lb.example/kind": "nlb"},
            "ownerReferences": [{"apiVersion": "gateway.networking.k8s.io/v1",
                                 "kind": "Gateway", "name": "web", "uid": "uid-web",
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app.kubernetes.io/name": "rauta"},
            "ports": [
                {"name": "p80", "protocol": "TCP", "port": 80, "targetPort": 20001},
                {"name": "p443", "protocol": "TCP", "port": 443, "targetPort": 20000},
            ],
        },
    }


def test_service_name_fits_63() -> None:
    assert service_name("a") == "a-rauta"
    long = service_name("x" * 60)
    assert len(long) <= 63 and long.endswith("-rauta")
    assert long != service_name("x" * 61)


def test_gateway_addresses_from_ingress() -> None:
    from rauta.model.services import gateway_addresses
    status = {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}, {"hostname": "lb.example"},
                                           {"ip": "192.0.2.7"}, {}]}}
    assert gateway_addresses(status) == (
        (("IPAddress", "192.0.2.7"), ("Hostname", "lb.example")), None, "")


def test_gateway_addresses_fallback_and_none() -> None:
    from rauta.model.services import gateway_addresses
    addrs, problem, note = gateway_addresses({}, (("IPAddress", "10.1.2.3"),))
    assert addrs == (("IPAddress", "10.1.2.3"),) and problem is None and "fallback" in note
    addrs, problem, _ = gateway_addresses({"loadBalancer": {}})
    assert addrs == () and problem is not None
    assert problem[0] == Reason.ADDRESS_NOT_ASSIGNED
