"""Unit tests of rauta.observe.xdplink that need no BPF: argument checks and netns paths."""

from __future__ import annotations

import errno

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
    monkeypatch.setattr(xdplink, "_nsid_names", lambda ns: {})  # iproute2 names no ids
    monkeypatch.setattr(xdplink.shutil, "which", lambda _n: "/usr/bin/ip")
    assert xdplink.veth_peer("hostA") == ("inB", "back")
    assert xdplink.veth_peer("inB", "back") == ("hostA", None)
    assert xdplink.veth_peer("pair1") == ("pair2", None)
    assert xdplink.veth_peer("lo") is None
    assert xdplink.veth_peer("missing") is None


def test_veth_peer_with_a_twin_pair_elsewhere_follows_the_netnsid(monkeypatch) -> None:
    """Two namespace pairs made alike give their veths the same ifindex numbers; the
    peer namespace id tells them apart (a twin was picked before: a test flake)."""
    from rauta.observe import xdplink

    links = {
        "a1": [_veth("vA1", 2, 2, netnsid=0)],
        "b1": [_veth("vB1", 2, 2, netnsid=0)],
        "a2": [_veth("vA2", 2, 2, netnsid=0)],
        "b2": [_veth("vB2", 2, 2, netnsid=0)],
    }
    ids = {"a1": {0: "b1"}, "b1": {0: "a1"}, "a2": {0: "b2"}, "b2": {0: "a2"}}
    monkeypatch.setattr(xdplink, "_links", lambda ns: links.get(ns, []))
    monkeypatch.setattr(xdplink, "named_netns", lambda: ["a1", "a2", "b1", "b2"])
    monkeypatch.setattr(xdplink, "_nsid_names", lambda ns: ids.get(ns or "", {}))
    monkeypatch.setattr(xdplink.shutil, "which", lambda _n: "/usr/bin/ip")
    assert xdplink.veth_peer("vB2", "b2") == ("vA2", "a2")
    assert xdplink.veth_peer("vA1", "a1") == ("vB1", "b1")


def test_nsid_names_from_iproute2() -> None:
    """The real ``ip netns list-id`` of two namespaces made here (root only)."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("needs root to make network namespaces")
    from rauta.observe import xdplink

    a, b = f"rtnsid{os.getpid()}a", f"rtnsid{os.getpid()}b"
    try:
        subprocess.run(["ip", "netns", "add", a], check=True)
        subprocess.run(["ip", "netns", "add", b], check=True)
        subprocess.run(["ip", "link", "add", "v0", "netns", a, "type", "veth", "peer",
                        "name", "v1", "netns", b], check=True)
        assert xdplink.veth_peer("v0", a) == ("v1", b)
        assert b in xdplink._nsid_names(a).values()
    finally:
        subprocess.run(["ip", "netns", "del", a], check=False)
        subprocess.run(["ip", "netns", "del", b], check=False)


class _FakeLib:
    """``bpf_link_create`` answering -EBUSY ``busy`` times, then a link fd."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.calls = 0

    def bpf_link_create(self, *_args: object) -> int:
        self.calls += 1
        return -errno.EBUSY if self.calls <= self.busy else 42


def _fake_attach(monkeypatch, lib: _FakeLib) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(xdplink, "libbpf", lambda: lib)
    monkeypatch.setattr(xdplink.socket, "if_nametoindex", lambda _i: 7)
    monkeypatch.setattr(xdplink.time, "sleep", lambda _s: None)


def test_attach_retries_a_link_still_being_released(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    lib = _FakeLib(busy=3)
    _fake_attach(monkeypatch, lib)
    assert xdplink.attach_xdp(5, "veth0") == 42
    assert lib.calls == 4


def test_attach_still_busy_names_the_cause(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    lib = _FakeLib(busy=10**9)
    _fake_attach(monkeypatch, lib)
    with pytest.raises(OSError) as exc:
        xdplink.attach_xdp(5, "veth0", busy_wait=0.0)
    assert exc.value.errno == errno.EBUSY
    assert "another XDP program is attached to veth0" in str(exc.value)
    assert lib.calls == 1
