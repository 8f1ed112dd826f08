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
