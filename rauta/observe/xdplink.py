"""XDP attach through a BPF link (libbpf ``bpf_link_create`` via ctypes) and netns entry.

Role: the two system calls the kernel observer needs beyond bcc: attaching an XDP
program fd to an interface as a *link* (so the kernel detaches it when the process
dies, even on SIGKILL; bcc's netlink attach would stay behind), and entering a network
namespace for just that attach (``ip netns exec`` remounts /sys and hides tracefs, so
the loader stays in the root namespace; BPF objects are not namespaced).

Rules:
- ``setns`` affects the calling thread only; ``in_netns`` always switches back, even
  when the body raises.
- A link is detached by closing its fd (``os.close``); nothing here pins links. The
  kernel frees a closed link after a grace period, so ``attach_xdp`` retries EBUSY for
  a bounded time before it reports the interface as taken.
- ``veth_peer`` finds the other end of a veth pair with iproute2's JSON output (``ip -j
  -d link show``) in the root namespace and every named one (``/run/netns``): the peer
  is the veth whose ifindex is this end's ``link_index`` and whose ``link_index`` is this
  end's ifindex (a peer in the same namespace is named by ``link`` instead). Where the
  end's namespace can name the peer's by its ``link_netnsid`` (``ip netns list-id``),
  only that namespace is searched: indexes are per namespace, so other pairs of
  namespaces may hold veths with the same two numbers. Nothing is found (``None``) for a non-veth or a peer in an unnamed
  namespace; the caller then attaches the given end only, or the user names both.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def attach_xdp(prog_fd: int, iface: str, netns: str | None = None, mode: str = "generic",
               busy_wait: float = 2.0) -> int:
    """Attach an XDP program to ``iface`` (inside ``netns``) as a link; returns its fd.

    EBUSY (the interface already has an XDP program) is retried for up to ``busy_wait``
    seconds: the kernel releases a closed link after a grace period, so a link of an
    observer that has just exited can still hold the interface for a moment. Still busy
    after that, the error names the likely cause."""
    if mode not in MODES:
        raise ValueError(f"xdp mode must be one of {sorted(MODES)}, not {mode!r}")
    lib = libbpf()
    opts = _LinkCreateOpts()
    opts.sz = ctypes.sizeof(opts)
    opts.flags = MODES[mode]
    deadline = time.monotonic() + busy_wait
    while True:
        with in_netns(netns):
            ifindex = socket.if_nametoindex(iface)
            fd = lib.bpf_link_create(prog_fd, ifindex, BPF_XDP, ctypes.byref(opts))
        if fd >= 0:
            return int(fd)
        err = -fd if fd < -1 else ctypes.get_errno()
        if err != errno.EBUSY or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    why = os.strerror(err)
    if err == errno.EBUSY:
        why += f" (another XDP program is attached to {iface}; still busy after {busy_wait:g} s)"
    raise OSError(err, f"bpf_link_create(xdp, {iface}, {mode}): {why}")


def _links(netns: str | None) -> list[dict[str, Any]]:
    """``ip -j -d link show`` in ``netns`` (None: this namespace); [] when it fails."""
    if netns and "/" in netns:  # a path: `ip -n` takes names only
        cmd = ["nsenter", f"--net={netns}", "ip", "-j", "-d", "link", "show"]
    else:
        cmd = ["ip", "-j", "-d"] + (["-n", netns] if netns else []) + ["link", "show"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                           stdin=subprocess.DEVNULL)
        data = json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else []
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    return [d for d in data if isinstance(d, dict)]


def _nsid_names(netns: str | None) -> dict[int, str]:
    """``ip -j netns list-id`` in ``netns``: the ids that namespace gives the named
    namespaces it knows ({} when that fails or knows none)."""
    if netns and "/" in netns:
        cmd = ["nsenter", f"--net={netns}", "ip", "-j", "netns", "list-id"]
    else:
        cmd = ["ip", "-j"] + (["-n", netns] if netns else []) + ["netns", "list-id"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                           stdin=subprocess.DEVNULL)
        data = json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else []
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}
    return {int(d["nsid"]): str(d["name"]) for d in data
            if isinstance(d, dict) and isinstance(d.get("nsid"), int) and d.get("name")}


def _is_veth(link: dict[str, Any]) -> bool:
    info = link.get("linkinfo")
    return isinstance(info, dict) and info.get("info_kind") == "veth"


def named_netns() -> list[str]:
    """The names under /run/netns (``ip netns``), sorted."""
    d = Path("/run/netns")
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def iface_exists(iface: str, netns: str | None = None) -> str | None:
    """None when ``iface`` exists (in ``netns``), else why not (one line)."""
    if netns is not None and not os.path.exists(netns_path(netns)):
        return f"network namespace {netns!r} not found ({netns_path(netns)})"
    try:
        with in_netns(netns):
            socket.if_nametoindex(iface)
    except OSError as e:
        where = f" in netns {netns}" if netns else ""
        return f"no interface {iface!r}{where} ({e.strerror or e})"
    return None


def veth_peer(iface: str, netns: str | None = None) -> tuple[str, str | None] | None:
    """The (name, netns) of the other end of veth ``iface``, or None (see the module doc)."""
    if shutil.which("ip") is None:
        return None
    me = next((d for d in _links(netns) if d.get("ifname") == iface), None)
    if me is None or not _is_veth(me):
        return None
    if "link_index" not in me:  # the peer is in the same namespace: iproute2 names it
        peer = me.get("link")
        return (str(peer), netns) if isinstance(peer, str) and peer != iface else None
    want, back = me["link_index"], me["ifindex"]
    same_ns = "link_netnsid" not in me
    candidates: list[str | None] = [netns] if same_ns else [None, *named_netns()]
    if not same_ns:
        # Interface indexes are per namespace, so another pair of namespaces can hold a
        # veth with the same two numbers: the peer's namespace id decides where to look.
        ids = _nsid_names(netns)
        if ids:
            named = ids.get(me["link_netnsid"])
            candidates = [named] if named is not None else ([None] if netns else [])
    for ns in candidates:
        if not same_ns and ns == netns:
            continue
        for d in _links(ns):
            if (d.get("ifindex") == want and d.get("link_index") == back and _is_veth(d)
                    and not (ns == netns and d.get("ifname") == iface)):
                return str(d["ifname"]), ns
    return None
