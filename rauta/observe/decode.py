"""Decoding of the XDP/tracepoint records of ``bpf/observer.c`` into observer events.

Role: the pure half of the kernel observer: the byte layouts of the records and map keys
the C program uses (mirrored here field by field), and the functions that turn raw
records into ``events.HttpEvent`` / ``events.ConnectEvent``. No BPF, no IO, so it is
unit-tested on synthetic bytes (tests/unit/observe/test_kernel_decode.py).

Rules:
- Layouts are little-endian (x86-64/arm64 hosts) and must stay byte-identical with the
  structs in ``bpf/observer.c``; sizes are asserted at import.
- Addresses are 16 bytes in the kernel, IPv4 as v4-mapped IPv6; they decode to the
  plain dotted IPv4 string or the compressed IPv6 string (``ipaddress``).
- Paths are decoded as latin-1, so ``fnv1a32(path.encode("latin-1")) == path_hash``.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import struct
from collections.abc import Iterable

import numpy as np

from rauta.observe.events import METHODS, ConnectEvent, Endpoint, HttpEvent

HEAD_MAX = 512
NBUCKETS = 32
REC_HTTP = 1
REC_CONNECT = 2
F_TRUNCATED = 1
F_WATCHED = 2
F_LISTENER = 4
ROUTE_FROM_WATCH = 0x80000000

# Index order of the per-CPU counters array (enum in bpf/observer.c).
COUNTERS = (
    "packets",
    "tcp",
    "requests",
    "responses",
    "non_http",
    "truncated",
    "unpaired",
    "map_full",
    "ring_drops",
    "retransmits",
    "overwritten",
    "paired",
    "filtered",
    "incomplete",
    "connects",
    "connect_failures",
)

OUTCOMES = ("established", "refused", "timeout", "failed")

# struct http_ev
HTTP_DTYPE = np.dtype(
    [
        ("type", "<u4"),
        ("route_id", "<u4"),
        ("start_ns", "<u8"),
        ("end_ns", "<u8"),
        ("saddr", "V16"),
        ("daddr", "V16"),
        ("sport", "<u2"),
        ("dport", "<u2"),
        ("seq", "<u4"),
        ("path_hash", "<u4"),
        ("status", "<u2"),
        ("method", "u1"),
        ("flags", "u1"),
        ("path_off", "<u2"),
        ("path_len", "<u2"),
        ("head_len", "<u2"),
        ("pad", "<u2"),
        ("head", f"V{HEAD_MAX}"),
    ]
)
HTTP_SIZE = HTTP_DTYPE.itemsize

# struct conn_ev
CONN_STRUCT = struct.Struct("<IIQQ16s16sHHB3x")
CONN_SIZE = CONN_STRUCT.size

# struct flow_key / watch_key / watch_val / hist_key
FLOW_KEY = struct.Struct("<16s16sHH")
WATCH_KEY = struct.Struct("<16sHH")
WATCH_VAL = struct.Struct("<II")
HIST_KEY = struct.Struct("<IB3x")

assert HTTP_SIZE == 592, HTTP_SIZE
assert CONN_SIZE == 64, CONN_SIZE
assert FLOW_KEY.size == 36 and WATCH_KEY.size == 20 and HIST_KEY.size == 8


def bucket_bounds() -> tuple[float, ...]:
    """Upper bounds in seconds of the kernel's latency buckets: bucket i holds
    latencies < 2**i microseconds (bucket 0: < 1 us); the last one is +Inf."""
    return tuple(2.0**i * 1e-6 for i in range(NBUCKETS - 1)) + (math.inf,)


def bucket_of(latency_ns: int) -> int:
    """The bucket the kernel puts a latency in (the same arithmetic as hist_add)."""
    us = latency_ns // 1000
    b = us.bit_length() if us else 0
    return min(b, NBUCKETS - 1)


def pack_ip(ip: str) -> bytes:
    """16 bytes: IPv6 as is, IPv4 v4-mapped."""
    a = ipaddress.ip_address(ip)
    if a.version == 4:
        return b"\0" * 10 + b"\xff\xff" + a.packed
    return a.packed


@functools.lru_cache(maxsize=65536)
def unpack_ip(raw: bytes) -> str:
    a = ipaddress.IPv6Address(raw)
    m = a.ipv4_mapped
    return str(m) if m is not None else a.compressed


def flow_key(client: Endpoint, server: Endpoint) -> bytes:
    """The request-direction 4-tuple key of the flows and flow_route maps."""
    return FLOW_KEY.pack(pack_ip(client.ip), pack_ip(server.ip), client.port, server.port)


def watch_key(ep: Endpoint) -> bytes:
    return WATCH_KEY.pack(pack_ip(ep.ip), ep.port, 0)


def watch_val(ident: int, listener: bool = False) -> bytes:
    return WATCH_VAL.pack(ident & 0x7FFFFFFF, F_LISTENER if listener else 0)


def hist_key(route_id: int, cls: int) -> bytes:
    return HIST_KEY.pack(route_id, cls)


def unpack_hist_key(raw: bytes) -> tuple[int, int]:
    route_id, cls = HIST_KEY.unpack(raw)
    return route_id, cls


@functools.lru_cache(maxsize=65536)
def endpoint(raw: bytes, port: int) -> Endpoint:
    """An Endpoint from the kernel's 16 address bytes (cached: the same few recur)."""
    return Endpoint(unpack_ip(raw), port)


@functools.lru_cache(maxsize=4096)
def parse_host(head: bytes) -> str:
    """The Host header's value from a request head, "" when not within ``head``."""
    end = head.find(b"\r\n\r\n")
    lines = (head if end < 0 else head[:end]).split(b"\r\n")
    complete = len(lines) if end >= 0 else len(lines) - 1  # the last piece may be cut
    for line in lines[1:complete]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"host":
            return value.strip().decode("latin-1")
    return ""


def record_type(raw: bytes | memoryview) -> int:
    return int.from_bytes(bytes(raw[:4]), "little")


def http_events(recs: np.ndarray) -> list[HttpEvent]:
    """Decode an array of HTTP_DTYPE records (from the ring reader or bytes)."""
    out: list[HttpEvent] = []
    add = out.append
    n_methods = len(METHODS)
    for sa, da, sp, dp, start, end, seq, ph, status, mid, flags, off, plen, hlen, head_all in zip(
        recs["saddr"].tolist(), recs["daddr"].tolist(), recs["sport"].tolist(),
        recs["dport"].tolist(), recs["start_ns"].tolist(), recs["end_ns"].tolist(),
        recs["seq"].tolist(), recs["path_hash"].tolist(), recs["status"].tolist(),
        recs["method"].tolist(), recs["flags"].tolist(), recs["path_off"].tolist(),
        recs["path_len"].tolist(), recs["head_len"].tolist(), recs["head"].tolist(),
        strict=True,
    ):
        head = head_all[:hlen]
        add(HttpEvent(
            "xdp",
            "upstream" if flags & F_WATCHED else "downstream",
            endpoint(sa, sp),
            endpoint(da, dp),
            METHODS[mid] if mid < n_methods else "",
            head[off : off + plen].decode("latin-1"),
            ph,
            bool(flags & F_TRUNCATED),
            status,
            start,
            end,
            seq,
            parse_host(head),
        ))
    return out


def http_route_ids(recs: np.ndarray) -> list[int]:
    """The in-kernel route ids of the records (flow_route, else watched id | high bit)."""
    return [int(x) for x in recs["route_id"].tolist()]


def connect_event(raw: bytes) -> ConnectEvent:
    _t, _id, start, end, sa, da, sp, dp, outcome = CONN_STRUCT.unpack(raw[:CONN_SIZE])
    return ConnectEvent(
        client=Endpoint(unpack_ip(sa), sp),
        server=Endpoint(unpack_ip(da), dp),
        outcome=OUTCOMES[outcome] if outcome < len(OUTCOMES) else "failed",  # type: ignore[arg-type]
        start_ns=start,
        end_ns=end,
    )


def decode_records(raws: Iterable[bytes]) -> list[HttpEvent | ConnectEvent]:
    """Decode single records of either type, in order (the perf transport's path)."""
    out: list[HttpEvent | ConnectEvent] = []
    for raw in raws:
        t = record_type(raw)
        if t == REC_HTTP and len(raw) >= HTTP_SIZE:
            out.extend(http_events(np.frombuffer(raw, dtype=HTTP_DTYPE, count=1)))
        elif t == REC_CONNECT and len(raw) >= CONN_SIZE:
            out.append(connect_event(raw))
    return out
