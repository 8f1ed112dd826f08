"""Unit tests of rauta.observe.decode: kernel record layouts → HttpEvent/ConnectEvent.

Records are built here with ``struct`` from the C layout in bpf/observer.c (written out
independently of decode's numpy dtype), then decoded; the FNV-1a oracle is local.
The last tests run the loaded program on hand-built frames (BPF_PROG_TEST_RUN; root and
bcc, else skipped with the reason): a kept-alive connection's flow entry is reused, FIN/RST
frees a done one, and the counters stay exact.
"""

from __future__ import annotations

import math
import struct

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from rauta.observe import decode
from rauta.observe.events import ConnectEvent, Endpoint, HttpEvent

HTTP = struct.Struct("<IIQQ16s16sHHIIHBBHHHH512s")  # struct http_ev
CONN = struct.Struct("<IIQQ16s16sHHB3x")  # struct conn_ev


def fnv(b: bytes) -> int:
    h = 2166136261
    for x in b:
        h = ((h ^ x) * 16777619) % 2**32
    return h


def v4m(ip: str) -> bytes:
    return bytes(10) + b"\xff\xff" + bytes(int(x) for x in ip.split("."))


def http_rec(head: bytes, method: int, path_off: int, path_len: int, flags: int = 0,
             status: int = 200, saddr: bytes = v4m("10.0.0.1"), daddr: bytes = v4m("10.0.0.2"),
             start: int = 100, end: int = 300, seq: int = 7, route: int = 0) -> bytes:
    path = head[path_off:path_off + path_len]
    return HTTP.pack(1, route, start, end, saddr, daddr, 40000, 80, seq, fnv(path), status,
                     method, flags, path_off, path_len, len(head), 0, head)


def test_layout_sizes_match_the_c_structs() -> None:
    assert HTTP.size == decode.HTTP_SIZE == 592
    assert CONN.size == decode.CONN_SIZE == 64


def test_http_record_decodes_field_by_field() -> None:
    head = b"POST /a/b?c=1 HTTP/1.1\r\nHost: shop.example\r\nX: y\r\n\r\n"
    ev = decode.decode_records([http_rec(head, 2, 5, 8, flags=decode.F_WATCHED, status=503)])
    assert ev == [HttpEvent(source="xdp", leg="upstream", client=Endpoint("10.0.0.1", 40000),
                            server=Endpoint("10.0.0.2", 80), method="POST", path="/a/b?c=1",
                            path_hash=fnv(b"/a/b?c=1"), path_truncated=False, status=503,
                            start_ns=100, end_ns=300, tcp_seq=7, host="shop.example")]


def test_unwatched_server_is_downstream_and_truncation_flag_decodes() -> None:
    path = b"/" + b"x" * 255
    head = b"GET " + path
    (ev,) = decode.decode_records([http_rec(head, 1, 4, 256, flags=decode.F_TRUNCATED)])
    assert isinstance(ev, HttpEvent)
    assert ev.leg == "downstream" and ev.path_truncated and ev.path == path.decode()
    assert ev.host == ""


def test_ipv6_addresses_decode_compressed() -> None:
    a = bytes.fromhex("fd000001000000000000000000000001")
    head = b"GET / HTTP/1.1\r\n\r\n"
    (ev,) = decode.decode_records([http_rec(head, 1, 4, 1, saddr=a, daddr=a)])
    assert isinstance(ev, HttpEvent)
    assert ev.client.ip == "fd00:1::1"


def test_connect_record_outcomes() -> None:
    for code, name in enumerate(("established", "refused", "timeout", "failed")):
        raw = CONN.pack(2, 0, 10, 35, v4m("10.1.1.1"), v4m("10.1.1.2"), 5555, 443, code)
        (ev,) = decode.decode_records([raw])
        assert ev == ConnectEvent(Endpoint("10.1.1.1", 5555), Endpoint("10.1.1.2", 443), name, 10, 35)


def test_unknown_and_short_records_are_ignored() -> None:
    assert decode.decode_records([b"\x09\0\0\0" + bytes(60), b"\x01\0\0\0"]) == []


def test_batch_array_decodes_like_single_records() -> None:
    recs = [http_rec(b"GET /%d HTTP/1.1\r\n\r\n" % i, 1, 4, len(b"/%d" % i), end=1000 + i)
            for i in range(5)]
    arr = np.frombuffer(b"".join(recs), dtype=decode.HTTP_DTYPE)
    assert decode.http_events(arr) == decode.decode_records(recs)


@given(st.binary(max_size=600))
def test_parse_host_never_raises_and_finds_complete_host_lines(tail: bytes) -> None:
    h = decode.parse_host(b"GET / HTTP/1.1\r\nHost: a.example\r\n" + tail)
    assert h == "a.example" or tail.lower().count(b"host") == 0 or h
    assert decode.parse_host(b"GET / HTTP/1.1\r\nHost: a.exa") == ""  # cut: not trusted


def test_keys_pack_like_the_c_structs() -> None:
    c, s = Endpoint("10.0.0.1", 1234), Endpoint("fd00::2", 80)
    k = decode.flow_key(c, s)
    assert k == v4m("10.0.0.1") + bytes.fromhex("fd000000000000000000000000000002") + struct.pack("<HH", 1234, 80)
    assert decode.watch_key(s)[16:] == struct.pack("<HH", 80, 0)
    assert decode.unpack_ip(decode.pack_ip("192.0.2.7")) == "192.0.2.7"


@given(st.integers(min_value=0, max_value=2**40))
def test_bucket_of_agrees_with_bounds(ns: int) -> None:
    b = decode.bucket_of(ns)
    bounds = decode.bucket_bounds()
    assert len(bounds) == decode.NBUCKETS and math.isinf(bounds[-1])
    us = ns // 1000
    assert us < bounds[b] * 1e6 + 1e-9
    if b > 0:
        assert us >= bounds[b - 1] * 1e6 - 1e-9


# ---- the program's flow entries, run through BPF_PROG_TEST_RUN (root + bcc) ----

def _bpf_reason() -> str | None:
    from rauta.observe.kernel import bpf_available

    return bpf_available()


def _frame(payload: bytes, *, reply: bool = False, seq: int = 1, flags: int = 0x18,
           sport: int = 40100) -> bytes:
    """Ethernet/IPv4/TCP, client 10.0.0.1:sport -> server 10.0.0.2:8080 (``reply``: back).
    Checksums are zero: XDP does not check them."""
    c, s = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    src, dst, sp, dp = (s, c, 8080, sport) if reply else (c, s, sport, 8080)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    tcp = struct.pack("!HHIIBBHHH", sp, dp, seq, 0, 5 << 4, flags, 65535, 0, 0)
    return bytes(6) + bytes([2, 0, 0, 0, 0, 1]) + b"\x08\x00" + ip + tcp + payload


def _run(prog_fd: int, frame: bytes) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(frame, len(frame))
    out = ctypes.create_string_buffer(len(frame) + 256)
    attr = ctypes.create_string_buffer(struct.pack("<IIIIQQII", prog_fd, 0, len(frame), len(out),
                                                   ctypes.addressof(buf), ctypes.addressof(out),
                                                   1, 0) + bytes(40))
    assert libc.syscall(321, 10, attr, 80) == 0, ctypes.get_errno()  # BPF_PROG_TEST_RUN
    assert struct.unpack_from("<I", attr.raw, 4)[0] == 2  # XDP_PASS


FIN_ACK, RST, PSH_ACK = 0x11, 0x04, 0x18


def _flows(obs) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    """(client port, end_ns) of every flow entry."""
    return sorted((k.sport, v.end_ns) for k, v in obs._bpf[b"flows"].items())


def test_kept_alive_connection_reuses_one_flow_entry_and_fin_frees_it() -> None:
    import pytest

    reason = _bpf_reason()
    if reason:
        pytest.skip(f"BPF unavailable: {reason}")
    from rauta.observe.kernel import KernelObserver

    with KernelObserver(transport="ring", ring_mib=1) as obs:
        fd = obs._prog.fd
        c0 = obs.counters()
        _run(fd, _frame(b"GET /a HTTP/1.1\r\nHost: k\r\n\r\n", seq=10))
        assert [e for _p, e in _flows(obs)] == [0]  # pending
        _run(fd, _frame(b"HTTP/1.1 200 OK\r\n\r\n", reply=True))
        ((port, end),) = _flows(obs)
        assert port == 40100 and end > 0  # done, kept for the connection's next request
        _run(fd, _frame(b"POST /b HTTP/1.1\r\nHost: k\r\n\r\n", seq=50))
        assert [e for _p, e in _flows(obs)] == [0]  # the same entry, pending again
        _run(fd, _frame(b"HTTP/1.1 404 Not Found\r\n\r\n", reply=True))
        _run(fd, _frame(b"HTTP/1.1 404 Not Found\r\n\r\n", reply=True))  # again: unpaired
        _run(fd, _frame(b"GET /b HTTP/1.1\r\n\r\n", seq=50))  # seq of a done request: new
        _run(fd, _frame(b"", reply=True, flags=RST))  # an RST leaves a pending entry alone
        assert [e for _p, e in _flows(obs)] == [0]
        _run(fd, _frame(b"HTTP/1.1 204 No Content\r\n\r\n", reply=True))
        _run(fd, _frame(b"", flags=FIN_ACK, seq=99))  # the client's FIN: done entry freed
        assert _flows(obs) == []
        evs = [e for e in obs.poll(0) if isinstance(e, HttpEvent)]
        assert [(e.method, e.path, e.status, e.tcp_seq) for e in evs] == [
            ("GET", "/a", 200, 10), ("POST", "/b", 404, 50), ("GET", "/b", 204, 50)]
        c = {k: v - c0.get(k, 0) for k, v in obs.counters().items()}
        assert (c["requests"], c["paired"], c["unpaired"]) == (3, 3, 1)
        assert (c["retransmits"], c["overwritten"], c["map_full"]) == (0, 0, 0)
        assert c["packets"] == 9 and c["tcp"] == 9


def test_response_with_fin_frees_its_entry_and_retransmit_of_pending_is_counted() -> None:
    import pytest

    reason = _bpf_reason()
    if reason:
        pytest.skip(f"BPF unavailable: {reason}")
    from rauta.observe.kernel import KernelObserver

    with KernelObserver(transport="ring", ring_mib=1) as obs:
        fd = obs._prog.fd
        c0 = obs.counters()
        req = _frame(b"GET /c HTTP/1.0\r\n\r\n", seq=7, sport=40200)
        _run(fd, req)
        _run(fd, req)  # retransmitted while pending
        _run(fd, _frame(b"GET /d HTTP/1.0\r\n\r\n", seq=8, sport=40200))  # overwrites /c
        _run(fd, _frame(b"HTTP/1.0 200 OK\r\n\r\n", reply=True, sport=40200, flags=FIN_ACK | 0x08))
        assert _flows(obs) == []
        evs = [e for e in obs.poll(0) if isinstance(e, HttpEvent)]
        assert [(e.path, e.status) for e in evs] == [("/d", 200)]
        c = {k: v - c0.get(k, 0) for k, v in obs.counters().items()}
        assert (c["requests"], c["retransmits"], c["overwritten"], c["paired"]) == (2, 1, 1, 1)
