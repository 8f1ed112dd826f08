"""e2e: the observer's connect tracepoints on real TCP connects between namespaces, and
the XDP link's clean-up when its loader is SIGKILLed.

A closed watched port gives a ConnectEvent 'refused' within 1 s; a SYN to an on-link
address nobody owns (the neighbour never answers) with a short client timeout gives
'timeout'; a listener gives 'established' with a plausible connect time; connects to
unwatched endpoints give nothing while the watch set is non-empty. Skips only when BPF
is really unavailable (the reason is printed).
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import xdpnet

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]
_ports = itertools.count(41000)


def _skip_reason() -> str | None:
    r = xdpnet.unavailable()
    if r:
        return r
    from rauta.observe.kernel import bpf_available

    return bpf_available()


class Bed:
    def __init__(self) -> None:
        from rauta.observe.events import Endpoint
        from rauta.observe.kernel import KernelObserver

        self.net = xdpnet.VethPair.create()
        try:
            self.obs = KernelObserver()
        except BaseException:
            self.net.close()
            raise
        n = self.net
        self.closed4 = Endpoint(n.server_v4, 7001)
        self.closed6 = Endpoint(n.server_v6, 7001)
        self.open4 = Endpoint(n.server_v4, 7002)
        self.nohost = Endpoint(n.server_v4.rsplit(".", 1)[0] + ".99", 7003)
        self.unwatched = Endpoint(n.server_v4, 7004)
        self.obs.watch({self.closed4: 1, self.closed6: 2, self.open4: 3, self.nohost: 4})
        self.listener = n.socket_in(n.server_ns)
        self.listener.bind((n.server_v4, 7002))
        self.listener.listen(16)

    def close(self) -> None:
        self.listener.close()
        self.obs.close()
        self.net.close()

    def connect(self, server, timeout: float = 2.0, v6: bool = False) -> tuple[int, str]:  # type: ignore[no-untyped-def]
        """Connect from the client namespace from a fixed port; returns (port, result)."""
        n = self.net
        fam = socket.AF_INET6 if v6 else socket.AF_INET
        s = n.socket_in(n.client_ns, fam)
        port = next(_ports)
        s.bind((n.client_v6 if v6 else n.client_v4, port))
        s.settimeout(timeout)
        try:
            s.connect((server.ip, server.port))
            res = "ok"
        except ConnectionRefusedError:
            res = "refused"
        except TimeoutError:
            res = "timeout"
        finally:
            s.close()
        return port, res

    def wait_connect(self, port: int, wait_s: float = 1.0) -> list:  # type: ignore[type-arg]
        out: list = []
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            out += [e for e in self.obs.poll(20) if getattr(e, "outcome", None) and e.client.port == port]
            if out:
                break
        return out


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    reason = _skip_reason()
    if reason:
        print(f"\n[observer-kernel] skipping: {reason}", file=sys.stderr)
        pytest.skip(reason)
    b = Bed()
    try:
        yield b
    finally:
        b.close()


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_closed_port_is_refused_within_a_second(bed: Bed, v6: bool) -> None:
    target = bed.closed6 if v6 else bed.closed4
    t0 = time.monotonic_ns()
    port, res = bed.connect(target, v6=v6)
    assert res == "refused"
    evs = bed.wait_connect(port, 1.0)
    assert time.monotonic_ns() - t0 < 1_000_000_000
    assert len(evs) == 1
    e = evs[0]
    assert e.outcome == "refused"
    assert (e.server.ip, e.server.port) == (target.ip, target.port)
    assert e.client.ip == (bed.net.client_v6 if v6 else bed.net.client_v4)
    assert t0 <= e.start_ns <= e.end_ns and e.duration_ns < 100_000_000


def test_unanswered_syn_is_a_timeout(bed: Bed) -> None:
    port, res = bed.connect(bed.nohost, timeout=0.4)
    assert res == "timeout"
    (e,) = bed.wait_connect(port, 1.0)
    assert e.outcome == "timeout"
    assert (e.server.ip, e.server.port) == (bed.nohost.ip, bed.nohost.port)
    assert 300_000_000 <= e.duration_ns < 2_000_000_000


def test_successful_connect_is_established_with_its_connect_time(bed: Bed) -> None:
    port, res = bed.connect(bed.open4)
    assert res == "ok"
    (e,) = bed.wait_connect(port, 1.0)
    assert e.outcome == "established"
    assert 0 < e.duration_ns < 200_000_000
    c, _ = bed.listener.accept()
    c.close()


def test_unwatched_endpoint_gives_nothing(bed: Bed) -> None:
    c0 = bed.obs.counters()
    port, res = bed.connect(bed.unwatched)
    assert res == "refused"
    assert bed.wait_connect(port, 0.5) == []
    port2, _ = bed.connect(bed.closed4)  # the watched one still reports
    assert [e.outcome for e in bed.wait_connect(port2, 1.0)] == ["refused"]
    assert bed.obs.counters()["connects"] - c0["connects"] == 1


LOADER = """
import sys, time
from rauta.observe.kernel import KernelObserver
o = KernelObserver()
o.attach(sys.argv[1], sys.argv[2])
print("READY", flush=True)
time.sleep(120)
"""


def test_sigkill_of_the_loader_leaves_no_xdp_program() -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    with xdpnet.VethPair.create() as n:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        p = subprocess.Popen([sys.executable, "-c", LOADER, n.server_if, n.server_ns],
                             stdout=subprocess.PIPE, env=env, text=True)
        try:
            line = p.stdout.readline() if p.stdout else ""
            assert line.strip() == "READY"
            assert n.xdp_attached(n.server_ns, n.server_if)
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)
            deadline = time.monotonic() + 3
            while n.xdp_attached(n.server_ns, n.server_if) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not n.xdp_attached(n.server_ns, n.server_if)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(10)
