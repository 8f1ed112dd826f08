"""Unit tests of rauta.observe.ringbuf.RingReader on a fake ring (bytearrays laid out
like the kernel's mapping: consumer page; producer page + the data area twice)."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from rauta.observe.ringbuf import BUSY, DISCARD, RingReader

PAGE = 4096
SIZE = 4096
DT = np.dtype([("a", "<u4"), ("b", "<u4"), ("c", "<u8")])  # 16-byte fixed records


class FakeRing:
    def __init__(self) -> None:
        self.cons = bytearray(PAGE)
        self.prod = bytearray(PAGE + 2 * SIZE)
        self.pos = 0

    def write(self, payload: bytes, flags: int = 0) -> None:
        rec = struct.pack("<II", len(payload) | flags, 0) + payload
        rec += bytes(-len(rec) % 8)
        for i, b in enumerate(rec):
            off = (self.pos + i) % SIZE
            self.prod[PAGE + off] = b
            self.prod[PAGE + SIZE + off] = b  # the double mapping
        self.pos += len(rec)
        struct.pack_into("<Q", self.prod, 0, self.pos)

    def set_busy_at(self, pos: int) -> None:
        off = pos % SIZE
        v = struct.unpack_from("<I", self.prod, PAGE + off)[0] | BUSY
        struct.pack_into("<I", self.prod, PAGE + off, v)
        struct.pack_into("<I", self.prod, PAGE + SIZE + off, v)


def reader(r: FakeRing) -> RingReader:
    return RingReader(r.cons, r.prod, SIZE, PAGE, (16, DT))


def fixed(i: int) -> bytes:
    return struct.pack("<IIQ", 1, i, i * 10)


def consumed(r: FakeRing) -> int:
    return struct.unpack_from("<Q", r.cons, 0)[0]


def test_runs_of_fixed_records_come_back_as_arrays_others_as_bytes() -> None:
    r = FakeRing()
    for i in range(3):
        r.write(fixed(i))
    r.write(b"other-record")
    r.write(fixed(3))
    b = reader(r).read()
    assert [a["b"].tolist() for a in b.arrays] == [[0, 1, 2], [3]]
    assert b.others == [b"other-record"]
    assert consumed(r) == r.pos


def test_busy_record_stops_the_read_and_discarded_ones_are_skipped() -> None:
    r = FakeRing()
    r.write(fixed(0))
    r.write(fixed(1), DISCARD)
    busy_at = r.pos
    r.write(fixed(2))
    r.set_busy_at(busy_at)
    rd = reader(r)
    b = rd.read()
    assert b.count == 1 and b.arrays[0]["b"].tolist() == [0]
    assert consumed(r) == busy_at
    assert rd.pending() == r.pos - busy_at


@given(st.lists(st.one_of(st.integers(0, 1000), st.binary(min_size=1, max_size=40).filter(lambda b: len(b) != 16)),
                max_size=200), st.integers(0, 40))
def test_every_record_read_once_in_order_across_wraps(items: list[int | bytes], reads: int) -> None:
    r = FakeRing()
    rd = reader(r)
    seen: list[int | bytes] = []
    for it in items:
        if r.pos - consumed(r) > SIZE - 64:
            b = rd.read()
            seen += [x for a in b.arrays for x in a["b"].tolist()] + b.others  # type: ignore[operator]
        r.write(fixed(it) if isinstance(it, int) else it)
        if it == reads:
            b = rd.read()
            seen += [x for a in b.arrays for x in a["b"].tolist()] + b.others  # type: ignore[operator]
    b = rd.read()
    seen += [x for a in b.arrays for x in a["b"].tolist()] + b.others  # type: ignore[operator]
    assert sorted(map(repr, seen)) == sorted(map(repr, items))
    assert consumed(r) == r.pos
