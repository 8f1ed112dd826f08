"""A batch reader of a BPF ring buffer through its mmap'ed pages (no per-event callback).

Role: the observer's ring transport. The kernel's BPF_MAP_TYPE_RINGBUF is mapped as a
writable consumer page (offset 0) and a read-only producer page followed by the data
area mapped twice (offset one page), so a record never wraps. ``RingReader.read``
walks the committed records from the consumer position to the producer position; runs
of fixed-size HTTP records become one numpy structured array each (one
``np.ndarray`` view per run, copied out), other records are returned as bytes. Then the
consumer position is published, which frees the space for the kernel.

Rules:
- Record header: u32 length with bit 31 BUSY (not yet committed: stop there) and bit 30
  DISCARD (skip), u32 page offset; the payload follows, the whole rounded up to 8 bytes.
- The reader owns nothing but the two buffers it is given; ``open_ring`` makes them
  from a map fd. A fake pair of buffers (tests) works the same.
- Positions are u64 and only grow; the data area offset is ``pos & (size - 1)``.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field

import numpy as np

BUSY = 1 << 31
DISCARD = 1 << 30
HDR = 8

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


def _round8(n: int) -> int:
    return (n + 7) & ~7


@dataclass
class Batch:
    """What one read returned: arrays of fixed-size records and the other records."""

    arrays: list[np.ndarray] = field(default_factory=list)
    others: list[bytes] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(a) for a in self.arrays) + len(self.others)


class RingReader:
    """Reads committed records; ``fixed`` is (record size, numpy dtype) for batching."""

    def __init__(
        self,
        consumer: mmap.mmap | bytearray,
        producer: mmap.mmap | bytearray,
        data_size: int,
        page_size: int,
        fixed: tuple[int, np.dtype] | None = None,
    ) -> None:
        if data_size & (data_size - 1):
            raise ValueError("ring size must be a power of two")
        self._cons = consumer
        self._prod = producer
        self._size = data_size
        self._mask = data_size - 1
        self._page = page_size
        self._data = memoryview(producer)[page_size : page_size + 2 * data_size]
        self._fixed = fixed
        if fixed is not None:
            self._fixed_step = _round8(fixed[0] + HDR)
            self._rec_dtype = np.dtype([("hdr", "<u4"), ("pgoff", "<u4"), ("rec", fixed[1])])

    def pending(self) -> int:
        """Bytes between the consumer and producer positions."""
        return int(_U64.unpack_from(self._prod, 0)[0] - _U64.unpack_from(self._cons, 0)[0])

    def read(self, max_records: int = 1 << 20) -> Batch:
        cons = _U64.unpack_from(self._cons, 0)[0]
        prod = _U64.unpack_from(self._prod, 0)[0]
        out = Batch()
        data = self._data
        got = 0
        while cons < prod and got < max_records:
            off = cons & self._mask
            hdr = _U32.unpack_from(data, off)[0]
            if hdr & BUSY:
                break
            ln = hdr & ~(BUSY | DISCARD)
            step = _round8(ln + HDR)
            if not hdr & DISCARD and self._fixed is not None and ln == self._fixed[0]:
                fstep = self._fixed_step
                n = min((prod - cons) // fstep, (2 * self._size - off) // fstep, max_records - got)
                hdrs = np.ndarray((n,), dtype="<u4", buffer=data, offset=off, strides=(fstep,))
                bad = np.flatnonzero(hdrs != ln)
                k = int(bad[0]) if len(bad) else n
                if k:
                    view = np.ndarray((k,), dtype=self._rec_dtype, buffer=data, offset=off, strides=(fstep,))
                    out.arrays.append(view["rec"].copy())
                    cons += k * fstep
                    got += k
                    continue
            if not hdr & DISCARD:
                out.others.append(bytes(data[off + HDR : off + HDR + ln]))
                got += 1
            cons += step
        _U64.pack_into(self._cons, 0, cons)
        return out

    def close(self) -> None:
        """Release the view of the data pages (the mappings can then be closed)."""
        self._data.release()


def open_ring(
    map_fd: int, data_size: int, fixed: tuple[int, np.dtype] | None = None
) -> tuple[RingReader, mmap.mmap, mmap.mmap]:
    """Map a BPF ring buffer map (fd) and return a reader plus the two mappings."""
    page = mmap.PAGESIZE
    cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
    prod = mmap.mmap(map_fd, page + 2 * data_size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
    return RingReader(cons, prod, data_size, page, fixed), cons, prod
