"""e2e: the XDP observer on both ends of a veth pair, driven by scapy-crafted frames.

The observer (one program, shared maps) is attached to the ingress of both veth ends:
requests are sent from the client namespace (seen at the server end), responses from
the server namespace on the reversed 4-tuple (seen at the client end). Frames carry a
foreign destination MAC, so the namespaces' stacks drop them after XDP and never answer.
Every event is checked field by field against what was sent; the frames the other side
received are counted with AF_PACKET; in-kernel histograms must count exactly the pairs.
Skips only when BPF is really unavailable (the reason is printed).
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from tests.e2e import xdpnet

pytestmark = pytest.mark.root

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
FOREIGN = "02:00:5e:00:00:01"
_ports = itertools.count(20000)


def fnv(b: bytes) -> int:
    h = 2166136261
    for x in b:
        h = ((h ^ x) * 16777619) % 2**32
    return h


def _skip_reason() -> str | None:
    r = xdpnet.unavailable()
    if r:
        return r
    from rauta.observe.kernel import bpf_available

    return bpf_available()


class Bed:
    def __init__(self, transport: str = "ring") -> None:
        from rauta.observe.kernel import KernelObserver

        self.net = xdpnet.VethPair.create()
        try:
            self.obs = KernelObserver(transport=transport)  # type: ignore[arg-type]
            n = self.net
            self.obs.attach(n.server_if, n.server_ns)
            self.obs.attach(n.client_if, n.client_ns)
            self.tx_c = n.raw_socket(n.client_ns, n.client_if)
            self.tx_s = n.raw_socket(n.server_ns, n.server_if)
            self.rx_s = n.raw_socket(n.server_ns, n.server_if)
            self.rx_c = n.raw_socket(n.client_ns, n.client_if)
        except BaseException:
            self.net.close()
            raise
        self.sent = 0

    def close(self) -> None:
        for s in (self.tx_c, self.tx_s, self.rx_s, self.rx_c):
            s.close()
        self.obs.close()
        self.net.close()

    def l3(self, v6: bool, reverse: bool) -> IP | IPv6:
        n = self.net
        if v6:
            return IPv6(src=n.server_v6, dst=n.client_v6) if reverse else IPv6(src=n.client_v6, dst=n.server_v6)
        return IP(src=n.server_v4, dst=n.client_v4) if reverse else IP(src=n.client_v4, dst=n.server_v4)

    def request(self, payload: bytes, sport: int, seq: int = 1000, v6: bool = False,
                options: list | None = None, vlan: bool = False) -> None:
        eth = Ether(src=self.net.client_mac, dst=FOREIGN)
        if vlan:
            eth = eth / Dot1Q(vlan=7)
        frame = eth / self.l3(v6, False) / TCP(sport=sport, dport=8080, seq=seq, flags="PA",
                                                options=options or []) / Raw(payload)
        self.tx_c.send(bytes(frame))
        self.sent += 1

    def response(self, payload: bytes, sport: int, v6: bool = False) -> None:
        frame = (Ether(src=self.net.server_mac, dst=FOREIGN) / self.l3(v6, True)
                 / TCP(sport=8080, dport=sport, seq=77, flags="PA") / Raw(payload))
        self.tx_s.send(bytes(frame))
        self.sent += 1

    def received(self) -> int:
        time.sleep(0.05)
        return xdpnet.drain_received(self.rx_s, FOREIGN_B) + xdpnet.drain_received(self.rx_c, FOREIGN_B)

    def events(self, wait_s: float = 0.3) -> list:
        out: list = []
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            out += http_only(self.obs.poll(20))
        return out


FOREIGN_B = bytes.fromhex(FOREIGN.replace(":", ""))


def http_only(evs: list) -> list:  # type: ignore[type-arg]
    """The HTTP events: connect events from unrelated traffic on this host can arrive too
    (the tracepoints are global and nothing is watched here)."""
    return [e for e in evs if hasattr(e, "method")]


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    reason = _skip_reason()
    if reason:
        print(f"\n[observer-xdp] skipping: {reason}", file=sys.stderr)
        pytest.skip(reason)
    b = Bed()
    try:
        yield b
    finally:
        b.close()


def hist_totals(obs) -> dict[tuple[int, int], int]:  # type: ignore[no-untyped-def]
    return {k: sum(v) for k, v in obs.histograms().items()}


def diff(after: dict, before: dict) -> dict:  # type: ignore[type-arg]
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


def test_methods_paths_statuses_field_by_field(bed: Bed) -> None:
    bed.received()  # drain
    c0, h0 = bed.obs.counters(), hist_totals(bed.obs)
    sent0 = bed.sent
    long_path = b"/long/" + b"p" * 300
    expect = {}
    statuses = itertools.cycle([200, 404, 503])
    for m in METHODS:
        for path in (b"/s?q=" + m.encode(), long_path):
            sport = next(_ports)
            st_ = next(statuses)
            req = m.encode() + b" " + path + b" HTTP/1.1\r\nHost: h-" + m.lower().encode() + b".test\r\n\r\n"
            t0 = time.monotonic_ns()
            bed.request(req, sport, seq=sport * 3)
            time.sleep(0.002)
            bed.response(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % st_, sport)
            expect[sport] = (m, path, st_, t0)
    evs = [e for e in bed.events() if e.client.port in expect]
    assert sorted(e.client.port for e in evs) == sorted(expect)
    for e in evs:
        m, path, status, t0 = expect[e.client.port]
        seen = path[:256]
        assert e.source == "xdp" and e.leg == "downstream"
        assert e.method == m
        assert e.path == seen.decode()
        assert e.path_hash == fnv(seen)
        assert e.path_truncated == (len(path) > 256)
        assert e.status == status
        assert (e.client.ip, e.server.ip, e.server.port) == (bed.net.client_v4, bed.net.server_v4, 8080)
        assert e.tcp_seq == e.client.port * 3
        assert t0 <= e.start_ns < e.end_ns <= time.monotonic_ns()
        assert e.host == f"h-{m.lower()}.test"  # within the 512 copied bytes even here
    n = len(expect)
    c = diff(bed.obs.counters(), c0)
    assert c["requests"] == n and c["responses"] == n and c["paired"] == n
    assert c["truncated"] == len(METHODS)
    assert c["tcp"] == 2 * n
    assert c.get("ring_drops", 0) == 0 and c.get("unpaired", 0) == 0
    assert bed.received() == bed.sent - sent0  # packets sent == packets received
    h = diff(hist_totals(bed.obs), h0)
    want: dict[tuple[int, int], int] = {}
    for _m, _p, s, _t in expect.values():
        want[(0, s // 100)] = want.get((0, s // 100), 0) + 1
    assert h == want


def test_retransmitted_request_counted_once(bed: Bed) -> None:
    c0 = bed.obs.counters()
    sport = next(_ports)
    req = b"GET /retry HTTP/1.1\r\nHost: r\r\n\r\n"
    bed.request(req, sport, seq=4242)
    bed.request(req, sport, seq=4242)
    bed.response(b"HTTP/1.1 200 OK\r\n\r\n", sport)
    bed.response(b"HTTP/1.1 200 OK\r\n\r\n", sport)  # a retransmitted response: unpaired
    evs = [e for e in bed.events() if e.client.port == sport]
    assert len(evs) == 1 and evs[0].tcp_seq == 4242
    c = diff(bed.obs.counters(), c0)
    assert c["requests"] == 1 and c["retransmits"] == 1 and c["paired"] == 1 and c["unpaired"] == 1


def test_ipv6_with_tcp_options_and_vlan(bed: Bed) -> None:
    opts = [("MSS", 1400), ("SAckOK", b""), ("Timestamp", (1, 2)), ("NOP", None), ("WScale", 7)]
    s6, sv = next(_ports), next(_ports)
    bed.request(b"PATCH /v6/thing HTTP/1.1\r\nHost: six\r\n\r\n", s6, v6=True, options=opts)
    bed.response(b"HTTP/1.1 404 Not Found\r\n\r\n", s6, v6=True)
    bed.request(b"GET /vlan HTTP/1.1\r\n\r\n", sv, options=opts, vlan=True)
    evs = {e.client.port: e for e in bed.events() if e.client.port in (s6, sv)}
    e = evs[s6]
    assert (e.method, e.path, e.status, e.host) == ("PATCH", "/v6/thing", 404, "six")
    assert (e.client.ip, e.server.ip) == (bed.net.client_v6, bed.net.server_v6)
    assert e.path_hash == fnv(b"/v6/thing")
    assert sv not in evs  # the VLAN request was stored but never answered
    bed.response(b"HTTP/1.1 200 OK\r\n\r\n", sv)  # answered untagged on the reversed tuple
    (ev,) = [e for e in bed.events() if e.client.port == sv]
    assert (ev.path, ev.status) == ("/vlan", 200)


def test_non_http_and_truncated_payloads_give_no_event(bed: Bed) -> None:
    c0 = bed.obs.counters()
    ports = [next(_ports) for _ in range(5)]
    bed.request(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40), ports[0])  # TLS hello
    bed.request(b"HELLO / THERE FRIENDS\r\n", ports[1])
    bed.request(b"GET /no-version-here", ports[2])  # cut inside the request line
    bed.request(b"GET /bad\x01path HTTP/1.1\r\n\r\n", ports[3])
    bed.request(b"GET /x HTTQ/1.1\r\n\r\n\r\n", ports[4])
    for p in ports:
        bed.response(b"HTTP/1.1 200 OK\r\n\r\n", p)
    assert [e for e in bed.events() if e.client.port in ports] == []
    c = diff(bed.obs.counters(), c0)
    assert c.get("requests", 0) == 0 and c["unpaired"] == 5
    assert c["non_http"] == 4 and c["incomplete"] == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(min_size=16, max_size=1400))
def test_random_payloads_never_yield_events(bed: Bed, payload: bytes) -> None:
    sport = 30000 + (fnv(payload) % 20000)
    c0 = bed.obs.counters()
    bed.request(payload, sport, seq=fnv(payload))
    bed.response(payload, sport)
    time.sleep(0.001)
    c = diff(bed.obs.counters(), c0)
    is_req = any(payload.startswith(m.encode() + b" ") for m in METHODS)
    is_resp = payload.startswith(b"HTTP/1.")
    if not (is_req or is_resp):
        assert c.get("requests", 0) == 0 and c.get("responses", 0) == 0
        assert [e for e in http_only(bed.obs.poll(0)) if e.client.port == sport] == []


def test_watched_filter_and_flow_route(bed: Bed) -> None:
    from rauta.observe.events import Endpoint

    n = bed.net
    server = Endpoint(n.server_v4, 8080)
    h0 = hist_totals(bed.obs)
    bed.obs.watch({Endpoint(n.server_v4, 9999): 3})  # something else: 8080 is filtered
    try:
        c0 = bed.obs.counters()
        p = next(_ports)
        bed.request(b"GET /f HTTP/1.1\r\n\r\n", p)
        bed.response(b"HTTP/1.1 200 OK\r\n\r\n", p)
        assert [e for e in bed.events() if e.client.port == p] == []
        c = diff(bed.obs.counters(), c0)
        assert c["filtered"] == 2 and c.get("requests", 0) == 0
        bed.obs.watch({server: 5})
        p1, p2 = next(_ports), next(_ports)
        bed.obs.set_flow_route(Endpoint(n.client_v4, p2), server, 77)
        for p in (p1, p2):
            bed.request(b"GET /w HTTP/1.1\r\n\r\n", p)
            bed.response(b"HTTP/1.1 503 U\r\n\r\n", p)
        evs = {e.client.port: e for e in bed.events() if e.client.port in (p1, p2)}
        assert set(evs) == {p1, p2} and all(e.leg == "upstream" for e in evs.values())
        bed.obs.clear_flow_route(Endpoint(n.client_v4, p2), server)
    finally:
        bed.obs.watch({})
    h = diff(hist_totals(bed.obs), h0)
    assert h == {(5 | 0x80000000, 5): 1, (77, 5): 1}


def test_perf_transport_pairs_too() -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    b = Bed("perf")
    try:
        p = next(_ports)
        b.request(b"DELETE /perf HTTP/1.1\r\n\r\n", p)
        b.response(b"HTTP/1.0 200 OK\r\n\r\n", p)
        evs = [e for e in b.events() if e.client.port == p]
        assert [(e.method, e.path, e.status) for e in evs] == [("DELETE", "/perf", 200)]
        assert b.obs.counters()["perf_lost"] == 0
    finally:
        b.close()


def test_native_mode_pairs_too() -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from rauta.observe.kernel import KernelObserver

    net = xdpnet.VethPair.create()
    try:
        with KernelObserver(xdp_mode="native") as obs:
            obs.attach(net.server_if, net.server_ns)
            obs.attach(net.client_if, net.client_ns)
            assert "xdp " in xdpnet.ip("-n", net.server_ns, "-d", "link", "show", net.server_if).stdout
            tx_c = net.raw_socket(net.client_ns, net.client_if)
            tx_s = net.raw_socket(net.server_ns, net.server_if)
            req = (Ether(src=net.client_mac, dst=FOREIGN) / IP(src=net.client_v4, dst=net.server_v4)
                   / TCP(sport=23456, dport=80, seq=9, flags="PA") / Raw(b"HEAD /n HTTP/1.1\r\n\r\n"))
            resp = (Ether(src=net.server_mac, dst=FOREIGN) / IP(src=net.server_v4, dst=net.client_v4)
                    / TCP(sport=80, dport=23456, flags="PA") / Raw(b"HTTP/1.1 204 No Content\r\n\r\n"))
            tx_c.send(bytes(req))
            time.sleep(0.01)
            tx_s.send(bytes(resp))
            evs: list = []
            deadline = time.monotonic() + 1
            while not evs and time.monotonic() < deadline:
                evs = http_only(obs.poll(50))
            assert [(e.method, e.path, e.status) for e in evs] == [("HEAD", "/n", 204)]
            tx_c.close()
            tx_s.close()
    finally:
        net.close()
