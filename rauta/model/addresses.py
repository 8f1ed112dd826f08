"""Per-Gateway addresses: which local IP each Gateway is served on.

Role: part of the graph stage. ``allocate(gateways, pool)`` gives every Gateway (key
``namespace/name``) an ``Allocation``: the address its listeners bind to, or the problem
that keeps it from getting one. ``Graph`` calls it; the CLI checks ``--address-pool``
with ``parse_pool``.

Rules:
- Pure and deterministic: the answer depends only on the Gateways and the pool, never on
  input order (every replica computes the same answer). Gateways are taken in age order:
  creationTimestamp, then namespace, then name (the order ``graph.age_key`` uses).
- No pool: every Gateway gets ``""``, the proxy's own listen host (one shared address,
  the default of ``rauta serve``); ``spec.addresses`` of type IPAddress/Hostname is then
  not acted on, as before.
- With a pool (an IPv4 or IPv6 CIDR, parsed strictly by ``ipaddress``), only its host
  addresses are handed out (``.hosts()``: no network or broadcast address in IPv4
  prefixes shorter than /31, no Subnet-Router anycast address in IPv6).
- Phase 1, in age order:
  - a Gateway with a ``spec.addresses`` entry of a type other than IPAddress (Hostname
    included: rauta binds IPs) gets ``UnsupportedAddress`` (an Accepted reason: "the
    Gateway could not be accepted because an address that was provided is a type which
    is not supported by the implementation") and no address;
  - rauta serves a Gateway on exactly one address, and the spec says every address it
    assigns MUST carry all the listeners; so more than one IPAddress entry gets
    ``AddressNotUsable`` (a Programmed reason), never a silent pick of one of them;
  - one IPAddress entry with a value claims it when it is a valid IP, a host address of
    the pool, and not claimed by an older Gateway; otherwise ``AddressNotUsable`` ("a
    provided static address can't be used", "the address is already in use"), with a
    message naming the address and why; it never falls back to a pool address the user
    did not ask for;
  - one IPAddress entry with no value (GatewayAddressEmpty: "assign me an address of this
    type") is treated like no entry;
  - a Gateway without a static value keeps the first IPAddress of its current
    ``status.addresses`` when that is still a free host address of the pool (sticky:
    an address never moves while it stays valid).
- Phase 2, in age order: every Gateway still without an address takes the lowest free
  host address of the pool; when none is left it gets ``AddressNotAssigned`` (the spec's
  reason for "yet to assign addresses").
- Addresses are compared in canonical form (``str(ipaddress.ip_address(v))``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from rauta.model.conditions import Reason
from rauta.model.resources import Gateway

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


class Allocation(BaseModel):
    """The address a Gateway is served on ("" = the listen host), or why it has none."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str = ""
    problem: tuple[Reason, str] | None = None


def parse_pool(pool: str) -> IPNetwork:
    """The pool as a network; ``ValueError`` (naming the value) when it is not a CIDR."""
    try:
        return ipaddress.ip_network(pool, strict=True)
    except ValueError as exc:
        raise ValueError(f"--address-pool {pool!r} is not a network in CIDR notation "
                         f"(e.g. 127.0.1.0/24): {exc}") from None


def _key(gw: Gateway) -> str:
    return f"{gw.metadata.namespace}/{gw.metadata.name}"


def _ip(value: str) -> IPAddr | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def is_host(ip: IPAddr, net: IPNetwork) -> bool:
    """Is ``ip`` one of ``net.hosts()`` (without enumerating them)?"""
    if ip.version != net.version or ip not in net:
        return False
    if isinstance(net, ipaddress.IPv4Network):
        return net.prefixlen >= 31 or ip not in (net.network_address, net.broadcast_address)
    return net.prefixlen >= 127 or ip != net.network_address


def _free(net: IPNetwork, claimed: dict[str, str]) -> Iterable[str]:
    """Free host addresses of ``net``, lowest first (lazy: stops after len(claimed)+1)."""
    for ip in net.hosts():
        text = str(ip)
        if text not in claimed:
            yield text


def _static(gw: Gateway, net: IPNetwork, claimed: dict[str, str]
            ) -> tuple[str, tuple[Reason, str] | None]:
    """Phase 1 for a Gateway with spec.addresses: its claimed address ("" when it asked
    for none in particular), or its problem."""
    other = sorted({a.type for a in gw.spec.addresses if a.type != "IPAddress"})
    if other:
        return "", (Reason.UNSUPPORTED_ADDRESS,
                    "spec.addresses of type " + ", ".join(other) + " cannot be used with "
                    f"the address pool {net}: rauta binds IP addresses (use type IPAddress)")
    entries = gw.spec.addresses
    if len(entries) > 1:
        asked = ", ".join(repr(a.value) if a.value else "(any)" for a in entries)
        return "", (Reason.ADDRESS_NOT_USABLE,
                    f"spec.addresses asks for {len(entries)} addresses ({asked}); rauta "
                    "serves a Gateway on exactly one address: keep one entry")
    value = entries[0].value.strip()
    if not value:
        return "", None  # "any IPAddress": allocated like a Gateway without spec.addresses
    ip = _ip(value)
    if ip is None:
        why = f"{value!r} is not an IP address"
    elif not is_host(ip, net):
        why = f"{ip} is outside the address pool {net}"
    elif str(ip) in claimed:
        why = f"{ip} is already used by Gateway {claimed[str(ip)]}"
    else:
        return str(ip), None
    return "", (Reason.ADDRESS_NOT_USABLE, f"spec.addresses[0]: {why}")


def _from_status(gw: Gateway, net: IPNetwork, claimed: dict[str, str]) -> str:
    """The address in the Gateway's current status, if it may keep it; else ""."""
    entry = next((a for a in gw.status.addresses if a.type == "IPAddress"), None)
    ip = _ip(entry.value) if entry is not None else None
    if ip is None or not is_host(ip, net) or str(ip) in claimed:
        return ""
    return str(ip)


def allocate(gateways: Iterable[Gateway], pool: str | None) -> dict[str, Allocation]:
    """Every Gateway's address ("ns/name" → Allocation); see the module rules.

    ``ValueError`` when ``pool`` is not a CIDR (callers check it first with
    ``parse_pool``).
    """
    ordered = sorted(gateways, key=lambda g: (g.metadata.creation_timestamp,
                                              g.metadata.namespace, g.metadata.name))
    if pool is None:
        return {_key(gw): Allocation() for gw in ordered}
    net = parse_pool(pool)
    claimed: dict[str, str] = {}  # address -> "ns/name" of its Gateway
    out: dict[str, Allocation] = {}
    for gw in ordered:  # phase 1: static addresses and addresses already in status
        key = _key(gw)
        address = ""
        if gw.spec.addresses:
            address, problem = _static(gw, net, claimed)
            if problem is not None:
                out[key] = Allocation(problem=problem)
                continue
        if not address:
            address = _from_status(gw, net, claimed)
        if address:
            claimed[address] = key
            out[key] = Allocation(address=address)
    for gw in ordered:  # phase 2: the rest take the lowest free address
        key = _key(gw)
        if key in out:
            continue
        address = next(iter(_free(net, claimed)), "")
        if not address:
            out[key] = Allocation(problem=(
                Reason.ADDRESS_NOT_ASSIGNED,
                f"the address pool {net} has no free address left "
                f"({len(claimed)} assigned)"))
            continue
        claimed[address] = key
        out[key] = Allocation(address=address)
    return out
