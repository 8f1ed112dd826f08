"""Unit tests of rauta.observe.xdplink that need no BPF: argument checks and netns paths."""

from __future__ import annotations

import pytest

from rauta.observe import xdplink


def test_mode_flags_are_the_uapi_values() -> None:
    assert xdplink.MODES == {"generic": 2, "native": 4}
    assert xdplink.BPF_XDP == 37


def test_unknown_mode_is_rejected_before_any_syscall() -> None:
    with pytest.raises(ValueError, match="xdp mode"):
        xdplink.attach_xdp(-1, "lo", None, "offload")


def test_netns_names_and_paths() -> None:
    assert xdplink.netns_path("blue") == "/run/netns/blue"
    assert xdplink.netns_path("/proc/1/ns/net") == "/proc/1/ns/net"


def test_in_netns_none_stays() -> None:
    with xdplink.in_netns(None):
        pass


def _veth(name: str, index: int, link_index: int | None = None, link: str | None = None,
          netnsid: int | None = None) -> dict:
    d: dict = {"ifname": name, "ifindex": index, "linkinfo": {"info_kind": "veth"}}
    if link_index is not None:
        d["link_index"] = link_index
    if link is not None:
        d["link"] = link
    if netnsid is not None:
        d["link_netnsid"] = netnsid
    return d


def test_veth_peer_in_another_namespace_and_in_the_same(monkeypatch) -> None:
    from rauta.observe import xdplink

    links = {
        None: [{"ifname": "lo", "ifindex": 1}, _veth("hostA", 7, 2, netnsid=0),
               _veth("pair1", 8, link="pair2"), _veth("pair2", 9, link="pair1")],
        "back": [{"ifname": "lo", "ifindex": 1}, _veth("inB", 2, 7, netnsid=0)],
        "other": [_veth("decoy", 2, 99, netnsid=1)],  # same ifindex, does not point back
    }
    monkeypatch.setattr(xdplink, "_links", lambda ns: links.get(ns, []))
    monkeypatch.setattr(xdplink, "named_netns", lambda: ["back", "other"])
    monkeypatch.setattr(xdplink.shutil, "which", lambda _n: "/usr/bin/ip")
    assert xdplink.veth_peer("hostA") == ("inB", "back")
    assert xdplink.veth_peer("inB", "back") == ("hostA", None)
    assert xdplink.veth_peer("pair1") == ("pair2", None)
    assert xdplink.veth_peer("lo") is None
    assert xdplink.veth_peer("missing") is None
