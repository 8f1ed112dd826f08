"""Per-Gateway address allocation (rauta.model.addresses) and how graph/translate use it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rauta.model.addresses import Allocation, allocate, is_host, parse_pool
from rauta.model.conditions import Reason
from rauta.model.resources import Gateway, parse_object
from rauta.model.snapshot import Snapshot
from rauta.model.status import Applied
from rauta.model.translate import translate

POOL = "127.0.1.0/24"


def gw(name: str, created: str = "2024-01-01T00:00:00Z", ns: str = "default",
       static: list[tuple[str, str]] | None = None, status: str | None = None,
       port: int = 80, hostname: str | None = None) -> Gateway:
    lis: dict[str, Any] = {"name": "http", "port": port, "protocol": "HTTP"}
    if hostname is not None:
        lis["hostname"] = hostname
    obj: dict[str, Any] = {
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
        "spec": {"gatewayClassName": "rauta", "listeners": [lis]},
    }
    if static:
        obj["spec"]["addresses"] = [{"type": t, "value": v} for t, v in static]
    if status is not None:
        obj["status"] = {"addresses": [{"type": "IPAddress", "value": status}]}
    g = parse_object(obj)
    assert isinstance(g, Gateway)
    return g


def addrs(result: dict[str, Allocation]) -> dict[str, str]:
    return {k: a.address for k, a in result.items()}


# --------------------------------------------------------------------------- allocation


def test_no_pool_means_the_shared_listen_host_for_everyone():
    out = allocate([gw("a", static=[("IPAddress", "10.0.0.1")]), gw("b", status="127.0.1.9")],
                   None)
    assert out == {"default/a": Allocation(), "default/b": Allocation()}


def test_lowest_free_in_age_order_then_namespace_name():
    gws = [gw("c", "2024-03-01T00:00:00Z"), gw("b", "2024-02-01T00:00:00Z", ns="z"),
           gw("a", "2024-02-01T00:00:00Z", ns="y"), gw("old", "2024-01-01T00:00:00Z")]
    assert addrs(allocate(gws, POOL)) == {
        "default/old": "127.0.1.1", "y/a": "127.0.1.2", "z/b": "127.0.1.3",
        "default/c": "127.0.1.4"}


def test_status_address_is_kept_while_valid_and_free():
    gws = [gw("older", "2024-01-01T00:00:00Z"),
           gw("newer", "2024-02-01T00:00:00Z", status="127.0.1.1"),
           gw("outside", "2024-03-01T00:00:00Z", status="10.9.9.9"),
           gw("network", "2024-04-01T00:00:00Z", status="127.0.1.0"),
           gw("garbage", "2024-05-01T00:00:00Z", status="not-an-ip"),
           gw("dup", "2024-06-01T00:00:00Z", status="127.0.1.1")]
    assert addrs(allocate(gws, POOL)) == {
        "default/newer": "127.0.1.1", "default/older": "127.0.1.2",
        "default/outside": "127.0.1.3", "default/network": "127.0.1.4",
        "default/garbage": "127.0.1.5", "default/dup": "127.0.1.6"}


def test_allocation_is_a_fixed_point_once_written_to_status():
    first = addrs(allocate([gw("a"), gw("b", "2024-02-01T00:00:00Z"),
                            gw("c", "2024-03-01T00:00:00Z", static=[("IPAddress", "127.0.1.1")])],
                           POOL))
    again = addrs(allocate([gw("a", status=first["default/a"]),
                            gw("b", "2024-02-01T00:00:00Z", status=first["default/b"]),
                            gw("c", "2024-03-01T00:00:00Z", static=[("IPAddress", "127.0.1.1")],
                               status=first["default/c"])], POOL))
    assert again == first


def test_freed_address_goes_to_the_next_gateway_without_one():
    out = addrs(allocate([gw("keeper", "2024-02-01T00:00:00Z", status="127.0.1.2"),
                          gw("new", "2024-03-01T00:00:00Z")], POOL))
    assert out == {"default/keeper": "127.0.1.2", "default/new": "127.0.1.1"}


def test_static_address_claims_and_problems():
    out = allocate([
        gw("inside", "2024-01-01T00:00:00Z", static=[("IPAddress", "127.0.1.10")]),
        gw("taken", "2024-01-02T00:00:00Z", static=[("IPAddress", "127.0.1.10")]),
        gw("outside", "2024-01-03T00:00:00Z", static=[("IPAddress", "10.0.0.7")]),
        gw("nope", "2024-01-03T00:00:01Z", static=[("IPAddress", "nope")]),
        gw("broadcast", "2024-01-03T00:00:02Z", static=[("IPAddress", "127.0.1.255")]),
        gw("named", "2024-01-04T00:00:00Z", static=[("Hostname", "gw.example.com")]),
        gw("dyn", "2024-01-05T00:00:00Z"),
    ], POOL)
    assert out["default/inside"] == Allocation(address="127.0.1.10")
    for name, part in (("taken", "127.0.1.10 is already used by Gateway default/inside"),
                       ("outside", "10.0.0.7 is outside the address pool 127.0.1.0/24"),
                       ("nope", "'nope' is not an IP address"),
                       ("broadcast", "127.0.1.255 is outside")):  # broadcast is no host
        bad = out[f"default/{name}"]
        assert bad.address == "" and bad.problem is not None, name
        assert bad.problem[0] == Reason.ADDRESS_NOT_USABLE, name
        assert part in bad.problem[1], (name, bad.problem[1])
    named = out["default/named"]
    assert named.address == "" and named.problem is not None
    assert named.problem[0] == Reason.UNSUPPORTED_ADDRESS and "Hostname" in named.problem[1]
    assert out["default/dyn"] == Allocation(address="127.0.1.1")


def test_several_static_addresses_are_refused_not_picked_from():
    # The spec: every assigned address carries all listeners; rauta serves a Gateway on
    # one address, so two entries (even both usable) are refused rather than half-served.
    # This is also the conformance suite's "unusable + usable" step (AddressNotUsable).
    out = allocate([gw("two", static=[("IPAddress", "10.0.0.7"), ("IPAddress", "127.0.1.11")])],
                   POOL)["default/two"]
    assert out.address == "" and out.problem is not None
    assert out.problem[0] == Reason.ADDRESS_NOT_USABLE
    assert "2 addresses" in out.problem[1] and "'10.0.0.7'" in out.problem[1]


def test_an_address_without_a_value_is_assigned_from_the_pool():
    # GatewayAddressEmpty: {type: IPAddress} with no value asks for any address.
    out = addrs(allocate([gw("a"), gw("empty", "2024-02-01T00:00:00Z",
                                      static=[("IPAddress", "")])], POOL))
    assert out == {"default/a": "127.0.1.1", "default/empty": "127.0.1.2"}
    sticky = addrs(allocate([gw("empty", static=[("IPAddress", "")], status="127.0.1.9")],
                            POOL))
    assert sticky == {"default/empty": "127.0.1.9"}
    # As the conformance manifest writes it: the value left out altogether.
    absent = parse_object({"kind": "Gateway", "metadata": {"name": "x", "namespace": "d"},
                           "spec": {"gatewayClassName": "rauta", "addresses": [{"type": "IPAddress"}],
                                    "listeners": [{"name": "h", "port": 80, "protocol": "HTTP"}]}})
    assert isinstance(absent, Gateway)
    assert addrs(allocate([absent], POOL)) == {"d/x": "127.0.1.1"}


def test_static_address_beats_a_newer_gateways_status_address():
    out = addrs(allocate([gw("static", "2024-01-01T00:00:00Z", static=[("IPAddress", "127.0.1.1")]),
                          gw("holder", "2024-02-01T00:00:00Z", status="127.0.1.1")], POOL))
    assert out == {"default/static": "127.0.1.1", "default/holder": "127.0.1.2"}


def test_exhausted_pool():
    out = allocate([gw(n, f"2024-01-0{i + 1}T00:00:00Z") for i, n in enumerate("abc")],
                   "127.0.1.0/30")  # hosts .1 and .2
    assert addrs(out) == {"default/a": "127.0.1.1", "default/b": "127.0.1.2", "default/c": ""}
    problem = out["default/c"].problem
    assert problem is not None and problem[0] == Reason.ADDRESS_NOT_ASSIGNED
    assert "127.0.1.0/30" in problem[1]


def test_ipv6_pool_and_canonical_form():
    out = addrs(allocate([gw("a"), gw("b", "2024-02-01T00:00:00Z", status="FD00:0::5"),
                          gw("c", "2024-03-01T00:00:00Z", static=[("IPAddress", "fd00::0:9")])],
                         "fd00::/120"))
    assert out == {"default/a": "fd00::1", "default/b": "fd00::5", "default/c": "fd00::9"}
    # An IPv4 address is never inside an IPv6 pool.
    v4 = allocate([gw("x", static=[("IPAddress", "127.0.1.1")])], "fd00::/120")["default/x"]
    assert v4.problem is not None and "outside" in v4.problem[1]


def test_a_huge_ipv6_pool_is_not_enumerated():
    out = addrs(allocate([gw(f"g{i}", f"2024-01-{i + 10}T00:00:00Z") for i in range(5)],
                         "fd00::/64"))
    assert sorted(out.values()) == [f"fd00::{i}" for i in range(1, 6)]


@pytest.mark.parametrize(("pool", "ip", "host"), [
    ("127.0.1.0/24", "127.0.1.0", False), ("127.0.1.0/24", "127.0.1.255", False),
    ("127.0.1.0/24", "127.0.1.1", True), ("127.0.1.0/31", "127.0.1.0", True),
    ("127.0.1.7/32", "127.0.1.7", True), ("fd00::/120", "fd00::", False),
    ("fd00::/120", "fd00::ff", True), ("fd00::/127", "fd00::", True),
])
def test_is_host_agrees_with_hosts(pool, ip, host):
    import ipaddress
    net = parse_pool(pool)
    assert is_host(ipaddress.ip_address(ip), net) is host
    assert (ipaddress.ip_address(ip) in set(net.hosts())) is host


@pytest.mark.parametrize("bad", ["127.0.1.1/24", "nonsense", "300.0.0.0/8", ""])
def test_parse_pool_rejects_non_cidrs(bad):
    with pytest.raises(ValueError, match="--address-pool"):
        parse_pool(bad)


GATEWAYS = [
    gw("a", "2024-01-01T00:00:00Z"),
    gw("b", "2024-01-01T00:00:00Z", ns="other", status="127.0.1.3"),
    gw("c", "2024-01-02T00:00:00Z", static=[("IPAddress", "127.0.1.3")]),
    gw("d", "2024-01-02T00:00:00Z", static=[("IPAddress", "10.0.0.1")]),
    gw("e", "2024-01-03T00:00:00Z", static=[("Hostname", "x.example.com")]),
    gw("f", "2024-01-04T00:00:00Z", status="127.0.1.1"),
    gw("g", "2024-01-05T00:00:00Z"),
]


@settings(max_examples=50, deadline=None)
@given(st.permutations(GATEWAYS))
def test_allocation_does_not_depend_on_input_order(shuffled):
    assert allocate(shuffled, "127.0.1.0/29") == allocate(GATEWAYS, "127.0.1.0/29")


# --------------------------------------------------------------------------- translate


def snapshot(*gws: Gateway) -> Snapshot:
    gc = parse_object({"kind": "GatewayClass", "metadata": {"name": "rauta"},
                       "spec": {"controllerName": "rauta.io/gateway-controller"}})
    return Snapshot.from_objects([gc, *gws])


def test_gateways_on_different_addresses_do_not_conflict():
    snap = snapshot(gw("a", hostname="pay.example.com"),
                    gw("b", "2024-02-01T00:00:00Z", hostname="pay.example.com"))
    shared = translate(snap)
    assert [p.address for p in shared.config.ports] == [""]
    own = translate(snap, address_pool=POOL)
    assert [(p.address, p.port, [lis.gateway for lis in p.listeners])
            for p in own.config.ports] == [("127.0.1.1", 80, ["default/a"]),
                                           ("127.0.1.2", 80, ["default/b"])]
    assert all(c.status == "True" for g in own.statuses.gateways for c in g.conditions)
    assert [g.addresses for g in own.statuses.gateways] == [(("IPAddress", "127.0.1.1"),),
                                                            (("IPAddress", "127.0.1.2"),)]


def test_programmed_follows_applied_at_the_gateways_address():
    snap = snapshot(gw("a"), gw("b", "2024-02-01T00:00:00Z"))
    applied = Applied(addressed=(("127.0.1.1", 80),),
                      failed_at=(("127.0.1.2", 80, "address not available"),))
    st_ = {g.name: g for g in translate(snap, applied=applied, address_pool=POOL).statuses.gateways}
    lis_a = {c.type.value: c for c in st_["a"].listeners[0].conditions}
    lis_b = {c.type.value: c for c in st_["b"].listeners[0].conditions}
    assert lis_a["Programmed"].status == "True"
    assert lis_b["Programmed"].status == "False"
    assert lis_b["Programmed"].message == "address not available"


def test_unassigned_gateway_is_accepted_but_not_programmed_or_served():
    snap = snapshot(gw("a", static=[("IPAddress", "10.0.0.1")]))
    out = translate(snap, address_pool=POOL)
    assert out.config.ports == ()
    (status,) = out.statuses.gateways
    accepted, programmed = status.conditions
    assert (accepted.status, accepted.reason) == ("True", Reason.ACCEPTED)
    assert (programmed.status, programmed.reason) == ("False", Reason.ADDRESS_NOT_USABLE)
    assert status.addresses == ()
    lis = {c.type.value: c for c in status.listeners[0].conditions}
    assert (lis["Programmed"].status, lis["Programmed"].reason) == ("False", Reason.PENDING)


def test_hostname_address_with_a_pool_is_not_accepted():
    out = translate(snapshot(gw("a", static=[("Hostname", "gw.example.com")])),
                    address_pool=POOL)
    accepted, programmed = out.statuses.gateways[0].conditions
    assert (accepted.status, accepted.reason) == ("False", Reason.UNSUPPORTED_ADDRESS)
    assert programmed.status == "False"
    # Without a pool a Hostname address is not acted on, as before.
    accepted, _ = translate(snapshot(gw("a", static=[("Hostname", "gw.example.com")]))
                            ).statuses.gateways[0].conditions
    assert accepted.status == "True"


def test_stamp_writes_the_models_own_address_over_a_static_list():
    from rauta.model.status import stamp
    snap = snapshot(gw("a"))
    static = [{"type": "IPAddress", "value": "192.0.2.1"}]
    pooled = translate(snap, address_pool=POOL).statuses.gateways[0]
    shared = translate(snap).statuses.gateways[0]
    kw: dict[str, Any] = {"controller_name": "rauta.io/gateway-controller",
                          "now": "2024-01-01T00:00:00Z", "addresses": static}
    assert stamp(pooled, None, **kw)["addresses"] == [{"type": "IPAddress",
                                                       "value": "127.0.1.1"}]
    assert stamp(shared, None, **kw)["addresses"] == static
