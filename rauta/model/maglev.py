"""Maglev consistent hashing (Eisenbud et al., NSDI 2016): endpoint choice for a flow.

Role: turn a set of weighted backend keys (``Endpoint.key``, "addr:port") into a lookup
table of prime size M, so that a flow hash picks a backend with near-perfect balance and
little disruption when the set changes. The router builds one table per endpoint set
(``cached``) and calls ``MaglevTable.lookup_key`` per request.

Rules:
- Pure and deterministic: the same backends and M give the same table in every process,
  on every machine. Hashes are xxHash with the fixed seeds below, never Python's ``hash()``.
- Backends are sorted by key, so input order never matters; backend index i in ``table``
  refers to ``MaglevTable.backends[i]``.
- Weight-0 backends are left out entirely. Weights are ints in ``0..MAX_WEIGHT``; duplicate
  keys are an error.
- No live backend gives an empty table; ``lookup`` on it raises ``NoBackendsError``.
- M must be a prime in ``(N, MAX_M]``; M < 100·N still works but warns
  (``MaglevSizeWarning``), since the paper needs M > 100·N to keep imbalance under 1%.

Algorithm (paper, section 3.4): backend i has ``offset = h1(key) mod M`` and
``skip = h2(key) mod (M - 1) + 1``; its preference list is ``(offset + j·skip) mod M`` for
j = 0, 1, 2, ... Backends take turns; on its turn a backend walks its list from its own
cursor to the first empty slot and claims it; this stops when all M slots are full.

Weights: the turn order is the only thing weights change.
- Quotas: backend i gets exactly ``q_i`` slots, where q is the largest-remainder
  (Hamilton) apportionment of M by weight: ``floor(M·w_i/W)`` plus one slot for the
  ``M - sum(floor)`` largest remainders, ties to the lower index. So every backend is
  within one slot of its ideal share ``M·w_i/W``.
- Turn order: backend i's j-th turn (j = 0 .. q_i - 1) happens at virtual time
  ``(j + 1/2) / w_i``; turns run in time order, ties to the lower index (a smooth weighted
  round robin: weight 2 takes two evenly spaced turns while weight 1 takes one).
- With equal weights every backend's j-th turn shares one time, the order is plain
  round robin, the first ``M mod N`` backends get the extra slot, and the table is the
  paper's exactly (scaling all weights by a constant changes nothing either).

Speed (see bench/bench_maglev.py): the fill has two implementations that build the
identical table (tests/unit/model/test_maglev_accel.py compares them):
- the C accelerator ``rauta.model._maglev_fill`` (``_maglev_fill.c``, built by
  ``pip install`` where a C compiler exists; optional): the paper's loop, run with the
  GIL released; ``build`` uses it when it is importable (``ACCELERATED``);
- the pure-Python fallback, in two phases with identical results. Phase 1 is the paper's
  loop with per-backend cursors and an incremental ``c += skip; if c >= M: c -= M`` walk.
  Once only K slots are left, the walks are long (the average walk is M/k probes with k
  slots free), so phase 2 instead ranks the K free slots along each remaining backend's
  permutation once (numpy, by step distance ``(slot - cursor)·skip⁻¹ mod M``) and each
  turn takes the first still-free slot of that ranking, which is exactly the slot the
  walk would reach.
"""

from __future__ import annotations

import functools
import warnings
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import xxhash

__all__ = [
    "ACCELERATED",
    "DEFAULT_M",
    "LOOKUP_SEED",
    "MAX_M",
    "MAX_WEIGHT",
    "OFFSET_SEED",
    "SKIP_SEED",
    "MaglevSizeWarning",
    "MaglevTable",
    "NoBackendsError",
    "build",
    "cached",
    "is_prime",
    "key_hash",
    "offset_skip",
]

DEFAULT_M = 65537
"""The production table size from the paper (and Envoy's default); a prime."""

MAX_M = 2**31 - 1
"""Largest accepted table size (a prime); keeps phase-2 products inside int64."""

MAX_WEIGHT = 2**31 - 1
"""Largest accepted weight (Kubernetes and Gateway API weights are int32)."""

OFFSET_SEED = 0x4D41474C45564F46  # b"MAGLEVOF": h1 = xxh64(key, OFFSET_SEED)
SKIP_SEED = 0x4D41474C45565346  # b"MAGLEVSF": h2 = xxh64(key, SKIP_SEED)
LOOKUP_SEED = 0x4D41474C45564C4B  # b"MAGLEVLK": key_hash = xxh3_64(data, LOOKUP_SEED)

try:  # the optional C accelerator (see "Speed" above)
    from rauta.model import _maglev_fill as _accel  # type: ignore[attr-defined]
except ImportError:  # no compiler at install time: the pure-Python fill builds the same
    _accel = None
ACCELERATED: bool = _accel is not None
"""True when ``build`` fills tables with the C accelerator."""

_PHASE2_BUDGET = 40_000  # (backends left) x (free slots) ranked at once in phase 2
_PHASE2_MIN_FREE = 200


class MaglevSizeWarning(UserWarning):
    """M < 100·N: the table works, but balance may be off by more than 1%."""


class NoBackendsError(LookupError):
    """Lookup on a table built from no live (weight > 0) backend."""


def key_hash(data: bytes) -> int:
    """The 64-bit flow hash used for lookups: ``xxh3_64(data, seed=LOOKUP_SEED)``."""
    return xxhash.xxh3_64_intdigest(data, seed=LOOKUP_SEED)


def offset_skip(key: str, m: int) -> tuple[int, int]:
    """Backend ``key``'s permutation parameters for table size ``m``: (offset, skip)."""
    data = key.encode("utf-8")
    offset = xxhash.xxh64_intdigest(data, seed=OFFSET_SEED) % m
    skip = xxhash.xxh64_intdigest(data, seed=SKIP_SEED) % (m - 1) + 1
    return offset, skip


def is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin, exact for every n < 3,317,044,064,679,887,385,961,981."""
    if n < 2:
        return False
    small = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)
    for p in small:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in small:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


class MaglevTable:
    """An immutable Maglev lookup table.

    ``backends`` are the live keys sorted; ``weights`` are theirs, in the same order;
    ``table[s]`` is the index into ``backends`` of the owner of slot s (a read-only
    memoryview of length ``m``, or of length 0 when there is no backend).
    """

    __slots__ = ("_m", "_backends", "_weights", "_table", "_hash")

    _m: int
    _backends: tuple[str, ...]
    _weights: tuple[int, ...]
    _table: array[int]
    _hash: int

    def __init__(
        self, m: int, backends: tuple[str, ...], weights: tuple[int, ...], table: array[int]
    ) -> None:
        """Internal: use ``build`` or ``cached``. Takes ownership of ``table``."""
        if len(backends) != len(weights) or len(table) != (m if backends else 0):
            raise ValueError("inconsistent MaglevTable parts")
        object.__setattr__(self, "_m", m)
        object.__setattr__(self, "_backends", backends)
        object.__setattr__(self, "_weights", weights)
        object.__setattr__(self, "_table", table)
        object.__setattr__(self, "_hash", hash((m, backends, weights, table.tobytes())))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("MaglevTable is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("MaglevTable is immutable")

    @property
    def m(self) -> int:
        """The table size (a prime)."""
        return self._m

    @property
    def backends(self) -> tuple[str, ...]:
        """Live backend keys (weight > 0), sorted."""
        return self._backends

    @property
    def weights(self) -> tuple[int, ...]:
        """Weights of ``backends``, in the same order."""
        return self._weights

    @property
    def table(self) -> memoryview:
        """Slot -> backend index, read-only."""
        return memoryview(self._table).toreadonly()

    def __len__(self) -> int:
        return len(self._table)

    def lookup(self, h: int) -> str:
        """The backend key owning slot ``h mod m``; ``h`` is a flow hash (``key_hash``)."""
        if not self._backends:
            raise NoBackendsError("Maglev table has no live backends to look up")
        return self._backends[self._table[h % self._m]]

    def lookup_key(self, data: bytes) -> str:
        """The backend key for the flow bytes ``data``: ``lookup(key_hash(data))``."""
        if not self._backends:
            raise NoBackendsError("Maglev table has no live backends to look up")
        return self._backends[self._table[key_hash(data) % self._m]]

    def slot_counts(self) -> dict[str, int]:
        """Slots owned by each live backend, in key order (a tiny weight may own 0)."""
        counts = Counter(self._table)
        return {key: counts.get(i, 0) for i, key in enumerate(self._backends)}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MaglevTable):
            return NotImplemented
        return (
            self._hash == other._hash
            and self._m == other._m
            and self._backends == other._backends
            and self._weights == other._weights
            and self._table == other._table
        )

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"MaglevTable(m={self._m}, backends={len(self._backends)})"


def _normalize(backends: Iterable[tuple[str, int]]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Validate, drop weight-0 entries and sort by key."""
    seen: set[str] = set()
    live: list[tuple[str, int]] = []
    for entry in backends:
        if not isinstance(entry, tuple) or len(entry) != 2:
            raise ValueError(f"a backend must be a (key, weight) pair, got {entry!r}")
        key, weight = entry
        if not isinstance(key, str):
            raise ValueError(f"backend key must be a str, got {key!r}")
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise ValueError(f"weight of backend {key!r} must be an int, got {weight!r}")
        if not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"weight of backend {key!r} must be in 0..{MAX_WEIGHT}, got {weight}")
        if key in seen:
            raise ValueError(f"duplicate backend key {key!r}")
        seen.add(key)
        if weight:
            live.append((key, weight))
    live.sort()
    return tuple(k for k, _ in live), tuple(w for _, w in live)


def _check_m(m: int, n: int) -> None:
    if isinstance(m, bool) or not isinstance(m, int):
        raise ValueError(f"Maglev table size must be an int, got {m!r}")
    if not 2 <= m <= MAX_M or not is_prime(m):
        raise ValueError(f"Maglev table size must be a prime in 2..{MAX_M}, got {m}")
    if n >= m:
        raise ValueError(f"Maglev table size {m} must exceed the number of backends ({n})")
    if m < 100 * n:
        warnings.warn(
            f"Maglev table size {m} < 100 x {n} backends: balance may be off by more than 1%",
            MaglevSizeWarning,
            stacklevel=3,
        )


def _quotas(weights: Sequence[int], m: int) -> list[int]:
    """Largest-remainder apportionment of m slots by weight (ties to the lower index)."""
    total = sum(weights)
    quotas = [m * w // total for w in weights]
    left = m - sum(quotas)
    if left:
        by_rem = sorted(range(len(weights)), key=lambda i: (-(m * weights[i] % total), i))
        for i in by_rem[:left]:
            quotas[i] += 1
    return quotas


def _turn_order_array(weights: Sequence[int], m: int) -> Any:
    """Backend index of each of the m turns, as an int64 numpy array (see the module
    docstring, "Weights")."""
    n = len(weights)
    if all(w == weights[0] for w in weights):
        return np.resize(np.arange(n, dtype=np.int64), m)  # plain round robin
    quotas = np.array(_quotas(weights, m), dtype=np.int64)
    owner = np.repeat(np.arange(n, dtype=np.int64), quotas)
    starts = np.cumsum(quotas) - quotas
    j = np.arange(m, dtype=np.int64) - np.repeat(starts, quotas)
    w = np.array([float(x) for x in weights], dtype=np.float64)
    times = (2 * j + 1).astype(np.float64) / (2.0 * w[owner])
    # owner is ascending, so a stable sort breaks equal times by the lower index.
    return owner[np.argsort(times, kind="stable")]


def _turn_order(weights: Sequence[int], m: int) -> list[int]:
    """Backend index of each of the m turns, as a list."""
    order: list[int] = _turn_order_array(weights, m).tolist()
    return order


def _populate(offsets: list[int], skips: list[int], order: list[int], m: int) -> list[int]:
    """Run the turns in ``order``; slot -> backend index."""
    nxt = offsets[:]  # cursor: the next slot each backend will probe
    slots: list[int | None] = [None] * m
    n = len(offsets)
    free = min(m, max(_PHASE2_MIN_FREE, _PHASE2_BUDGET // n))
    cut = m - free

    # Phase 1: the paper's loop.
    for i in order[:cut]:
        c = nxt[i]
        s = skips[i]
        while slots[c] is not None:
            c += s
            if c >= m:
                c -= m
        slots[c] = i
        c += s
        if c >= m:
            c -= m
        nxt[i] = c

    # Phase 2: rank the remaining free slots along each remaining backend's permutation.
    if free:
        rest = order[cut:]
        todo = sorted(set(rest))
        empty: list[int] = []
        find = slots.index
        e = -1
        for _ in range(free):
            e = find(None, e + 1)
            empty.append(e)
        ea = np.array(empty, dtype=np.int64)
        cur = np.array([nxt[i] for i in todo], dtype=np.int64)
        inv = np.array([pow(skips[i], -1, m) for i in todo], dtype=np.int64)
        steps = ((ea[None, :] - cur[:, None]) * inv[:, None]) % m
        ranked: list[list[int]] = ea[np.argsort(steps, axis=1)].tolist()
        prefs = dict(zip(todo, ranked, strict=True))
        pos = dict.fromkeys(todo, 0)
        for i in rest:
            pref = prefs[i]
            p = pos[i]
            e = pref[p]
            while slots[e] is not None:
                p += 1
                e = pref[p]
            slots[e] = i
            pos[i] = p + 1
    return slots  # type: ignore[return-value]  # every slot is filled


def build(backends: Iterable[tuple[str, int]], m: int = DEFAULT_M, *,
          accelerated: bool | None = None) -> MaglevTable:
    """Build the Maglev table of ``(key, weight)`` pairs for a prime table size ``m``.

    Raises ValueError on a bad pair, a duplicate key, a negative or non-int weight, a
    non-prime ``m`` or ``m <= N``; warns ``MaglevSizeWarning`` when ``m < 100·N``. With no
    live backend the table is empty and every lookup raises ``NoBackendsError``.
    ``accelerated``: None uses the C fill when it is there; False forces the pure-Python
    fill; True requires the C fill (RuntimeError without it). Both give the same table.
    """
    if accelerated and _accel is None:
        raise RuntimeError("the Maglev C accelerator (rauta.model._maglev_fill) is not built")
    use_c = _accel is not None and accelerated is not False
    keys, weights = _normalize(backends)
    n = len(keys)
    _check_m(m, n)
    if not n:
        return MaglevTable(m, (), (), array("B"))
    offsets: list[int] = []
    skips: list[int] = []
    for key in keys:
        offset, skip = offset_skip(key, m)
        offsets.append(offset)
        skips.append(skip)
    code = "B" if n <= 0x100 else "H" if n <= 0x10000 else "L"
    if use_c:
        raw = _accel.fill(np.array(offsets, dtype=np.int64).tobytes(),
                          np.array(skips, dtype=np.int64).tobytes(),
                          _turn_order_array(weights, m).tobytes(), m)
        dtype = {"B": np.uint8, "H": np.uint16, "L": np.uint64}[code]
        table = array(code)
        table.frombytes(np.frombuffer(raw, dtype=np.uint32).astype(dtype).tobytes())
        return MaglevTable(m, keys, weights, table)
    slots = _populate(offsets, skips, _turn_order(weights, m), m)
    return MaglevTable(m, keys, weights, array(code, slots))


@functools.lru_cache(maxsize=1024)
def cached(backends: tuple[tuple[str, int], ...], m: int = DEFAULT_M) -> MaglevTable:
    """``build``, memoized on the exact ``backends`` tuple and ``m`` (1024 entries, LRU)."""
    return build(backends, m)
