"""Two network namespaces joined by one veth pair, for the XDP observer's e2e tests.

Role: the test bed of tests/e2e/test_observer_*.py and bench/bench_observer.py. A
``VethPair`` makes namespaces ``<tag>c`` (client) and ``<tag>s`` (server) with veth ends
``<tag>C`` / ``<tag>S`` (unique per process and instance), IPv4 10.<a>.<b>.1/.2 and
IPv6 fd00:<a>:<b>::1/::2 (no DAD), all links up. Sockets made inside ``in_ns(...)``
stay in that namespace afterwards, so one test process can send raw frames (AF_PACKET)
or make TCP connections from either side and count what the other side received.

``HostNs`` is one namespace joined to the root namespace by a veth pair (``<tag>h`` in
the root namespace, 10.<a>.<b>.1, and ``<tag>n`` inside, .2), for a process in the root
namespace (the rauta proxy) between namespaces.

Rules:
- Must not import rauta: it judges the observer, it does not use it.
- Everything is removed in ``close()`` (and by the context manager, even on failure);
  deleting the namespaces removes the veth pair.
- Needs root and iproute2; ``unavailable()`` gives the reason when not.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
_libc = ctypes.CDLL(None, use_errno=True)
_seq = itertools.count()


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(["ip", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=20)
    if check and p.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {p.stderr.strip()}")
    return p


def unavailable() -> str | None:
    if shutil.which("ip") is None:
        return "iproute2 'ip' missing"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return None


@contextlib.contextmanager
def in_ns(name: str) -> Iterator[None]:
    """This thread inside namespace ``name`` for the body."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    tgt = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(tgt, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(tgt)
        os.close(own)


@dataclass
class VethPair:
    tag: str = ""
    client_ns: str = ""
    server_ns: str = ""
    client_if: str = ""
    server_if: str = ""
    client_v4: str = ""
    server_v4: str = ""
    client_v6: str = ""
    server_v6: str = ""
    client_mac: str = ""
    server_mac: str = ""
    _made: list[str] = field(default_factory=list)

    @classmethod
    def create(cls) -> VethPair:
        n = next(_seq)
        a, b = os.getpid() % 200 + 20, n % 250 + 1
        tag = f"xo{os.getpid() % 100000}{n}"
        v = cls(tag=tag, client_ns=tag + "c", server_ns=tag + "s", client_if=tag + "C",
                server_if=tag + "S", client_v4=f"10.{a}.{b}.1", server_v4=f"10.{a}.{b}.2",
                client_v6=f"fd00:{a:x}:{b:x}::1", server_v6=f"fd00:{a:x}:{b:x}::2")
        try:
            v._setup()
        except BaseException:
            v.close()
            raise
        return v

    def _setup(self) -> None:
        for ns in (self.client_ns, self.server_ns):
            ip("netns", "add", ns)
            self._made.append(ns)
        ip("link", "add", self.client_if, "netns", self.client_ns, "type", "veth", "peer", "name",
           self.server_if, "netns", self.server_ns)
        for ns, ifc, v4, v6 in ((self.client_ns, self.client_if, self.client_v4, self.client_v6),
                                (self.server_ns, self.server_if, self.server_v4, self.server_v6)):
            ip("-n", ns, "addr", "add", f"{v4}/24", "dev", ifc)
            ip("-n", ns, "addr", "add", f"{v6}/64", "dev", ifc, "nodad")
            ip("-n", ns, "link", "set", ifc, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        self.client_mac = self.mac(self.client_ns, self.client_if)
        self.server_mac = self.mac(self.server_ns, self.server_if)

    @staticmethod
    def mac(ns: str, ifc: str) -> str:
        out = ip("-n", ns, "-o", "link", "show", ifc).stdout
        return out.split("link/ether", 1)[1].split()[0]

    def xdp_attached(self, ns: str, ifc: str) -> bool:
        """Whether any XDP program is on the interface (``ip -d link show``)."""
        out = ip("-n", ns, "-d", "link", "show", ifc).stdout
        return " xdp" in out or "prog/xdp" in out

    def raw_socket(self, ns: str, ifc: str) -> socket.socket:
        """An AF_PACKET socket bound to ``ifc`` in ``ns`` (send frames, or receive all)."""
        with in_ns(ns):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.bind((ifc, 0))
        return s

    def socket_in(self, ns: str, family: int = socket.AF_INET,
                  kind: int = socket.SOCK_STREAM) -> socket.socket:
        with in_ns(ns):
            return socket.socket(family, kind)

    def close(self) -> None:
        for ns in reversed(self._made):
            ip("netns", "del", ns, check=False)
        self._made.clear()

    def __enter__(self) -> VethPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class HostNs:
    ns: str = ""
    host_if: str = ""
    ns_if: str = ""
    host_v4: str = ""
    ns_v4: str = ""
    _made: list[str] = field(default_factory=list)

    @classmethod
    def create(cls) -> HostNs:
        n = next(_seq)
        a, b = os.getpid() % 200 + 20, n % 250 + 1
        tag = f"xh{os.getpid() % 100000}{n}"
        v = cls(ns=tag + "s", host_if=tag + "h", ns_if=tag + "n",
                host_v4=f"10.{a}.{b}.1", ns_v4=f"10.{a}.{b}.2")
        try:
            ip("netns", "add", v.ns)
            v._made.append(v.ns)
            ip("link", "add", v.host_if, "type", "veth", "peer", "name", v.ns_if, "netns", v.ns)
            ip("addr", "add", f"{v.host_v4}/24", "dev", v.host_if)
            ip("link", "set", v.host_if, "up")
            ip("-n", v.ns, "addr", "add", f"{v.ns_v4}/24", "dev", v.ns_if)
            ip("-n", v.ns, "link", "set", v.ns_if, "up")
            ip("-n", v.ns, "link", "set", "lo", "up")
        except BaseException:
            v.close()
            raise
        return v

    def close(self) -> None:
        ip("link", "del", self.host_if, check=False)  # gone with the namespace anyway
        for ns in reversed(self._made):
            ip("netns", "del", ns, check=False)
        self._made.clear()

    def __enter__(self) -> HostNs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def xdp_on(ifc: str, ns: str | None = None) -> bool:
    """Whether any XDP program is on ``ifc`` (in ``ns``; None: the root namespace)."""
    out = ip(*(["-n", ns] if ns else []), "-d", "link", "show", ifc).stdout
    return " xdp" in out or "prog/xdp" in out


def drain_received(s: socket.socket, match: bytes = b"") -> int:
    """Frames waiting on an AF_PACKET socket that came in (not outgoing) and contain
    ``match``; non-blocking."""
    s.setblocking(False)
    n = 0
    while True:
        try:
            data, addr = s.recvfrom(70000)
        except BlockingIOError:
            return n
        if addr[2] != PACKET_OUTGOING and match in data:
            n += 1
