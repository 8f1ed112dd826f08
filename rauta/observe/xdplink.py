"""XDP attach through a BPF link (libbpf ``bpf_link_create`` via ctypes) and netns entry.

Role: the two system calls the kernel observer needs beyond bcc: attaching an XDP
program fd to an interface as a *link* (so the kernel detaches it when the process
dies, even on SIGKILL; bcc's netlink attach would stay behind), and entering a network
namespace for just that attach (``ip netns exec`` remounts /sys and hides tracefs, so
the loader stays in the root namespace; BPF objects are not namespaced).

Rules:
- ``setns`` affects the calling thread only; ``in_netns`` always switches back, even
  when the body raises.
- A link is detached by closing its fd (``os.close``); nothing here pins links.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
from collections.abc import Iterator

BPF_XDP = 37
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
CLONE_NEWNET = 0x40000000

MODES = {"generic": XDP_FLAGS_SKB_MODE, "native": XDP_FLAGS_DRV_MODE}


class _LinkCreateOpts(ctypes.Structure):
    # struct bpf_link_create_opts { size_t sz; __u32 flags; union {...}; }: the union
    # is left zero (libbpf accepts a larger sz when the extra bytes are zero).
    _fields_ = [("sz", ctypes.c_size_t), ("flags", ctypes.c_uint32), ("_pad", ctypes.c_uint32),
                ("_union", ctypes.c_uint8 * 64)]


_libbpf: ctypes.CDLL | None = None
_libc = ctypes.CDLL(None, use_errno=True)


def libbpf() -> ctypes.CDLL:
    global _libbpf
    if _libbpf is None:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        lib.bpf_link_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                        ctypes.POINTER(_LinkCreateOpts)]
        lib.bpf_link_create.restype = ctypes.c_int
        _libbpf = lib
    return _libbpf


def netns_path(netns: str) -> str:
    """A namespace name (``ip netns``) or a path (``/proc/PID/ns/net``)."""
    return netns if "/" in netns else f"/run/netns/{netns}"


@contextlib.contextmanager
def in_netns(netns: str | None) -> Iterator[None]:
    """Run the body (this thread) inside ``netns``; ``None`` means stay."""
    if netns is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(netns_path(netns), os.O_RDONLY)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"setns({netns}): {os.strerror(e)}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"setns back: {os.strerror(e)}")
    finally:
        os.close(own)


def attach_xdp(prog_fd: int, iface: str, netns: str | None = None, mode: str = "generic") -> int:
    """Attach an XDP program to ``iface`` (inside ``netns``) as a link; returns its fd."""
    if mode not in MODES:
        raise ValueError(f"xdp mode must be one of {sorted(MODES)}, not {mode!r}")
    lib = libbpf()
    opts = _LinkCreateOpts()
    opts.sz = ctypes.sizeof(opts)
    opts.flags = MODES[mode]
    with in_netns(netns):
        ifindex = socket.if_nametoindex(iface)
        fd = lib.bpf_link_create(prog_fd, ifindex, BPF_XDP, ctypes.byref(opts))
    if fd < 0:
        err = -fd if fd < -1 else ctypes.get_errno()
        raise OSError(err, f"bpf_link_create(xdp, {iface}, {mode}): {os.strerror(err)}")
    return int(fd)
