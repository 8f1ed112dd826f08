"""Maglev tables (rauta.model.maglev) against a literal transcription of the NSDI'16 paper.

The references below are deliberately naive: full permutation lists, ``entry[c] >= 0``
checks and ``Fraction`` turn times, straight from the paper's Pseudocode 1 and the module
docstring's weighting rule. The module's two-phase fill must agree with them exactly.
"""

from __future__ import annotations

import hashlib
import random
import struct
import subprocess
import sys
import warnings
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from rauta.model import maglev
from rauta.model.config import Endpoint
from rauta.model.maglev import (
    DEFAULT_M,
    LOOKUP_SEED,
    OFFSET_SEED,
    SKIP_SEED,
    MaglevSizeWarning,
    MaglevTable,
    NoBackendsError,
    build,
    cached,
    key_hash,
    offset_skip,
)

# Small tables (M < 100·N) are legitimate for exactness checks; they only warn.
pytestmark = pytest.mark.filterwarnings("ignore::rauta.model.maglev.MaglevSizeWarning")


# --- naive references --------------------------------------------------------------------


def _permutation(key: str, m: int) -> list[int]:
    data = key.encode("utf-8")
    offset = xxhash.xxh64_intdigest(data, seed=OFFSET_SEED) % m
    skip = xxhash.xxh64_intdigest(data, seed=SKIP_SEED) % (m - 1) + 1
    return [(offset + j * skip) % m for j in range(m)]


def naive_maglev(keys: list[str], m: int) -> list[int]:
    """Pseudocode 1 of the paper, line by line (backends sorted by key)."""
    names = sorted(keys)
    n_backends = len(names)
    permutation = [_permutation(name, m) for name in names]
    next_ = [0] * n_backends
    entry = [-1] * m
    n = 0
    while True:
        for i in range(n_backends):
            c = permutation[i][next_[i]]
            while entry[c] >= 0:
                next_[i] = next_[i] + 1
                c = permutation[i][next_[i]]
            entry[c] = i
            next_[i] = next_[i] + 1
            n = n + 1
            if n == m:
                return entry


def naive_weighted(backends: list[tuple[str, int]], m: int) -> list[int]:
    """The documented weighted rule, with exact fractions: largest-remainder quotas, then
    turns ordered by the time (j + 1/2) / w (ties to the lower index), each turn walking
    its backend's permutation to the first empty slot."""
    live = sorted((k, w) for k, w in backends if w > 0)
    weights = [w for _, w in live]
    total = sum(weights)
    ideal = [Fraction(m * w, total) for w in weights]
    quotas = [int(x) for x in ideal]  # floor
    by_remainder = sorted(range(len(live)), key=lambda i: (-(ideal[i] - quotas[i]), i))
    for i in by_remainder[: m - sum(quotas)]:
        quotas[i] += 1
    turns = sorted(
        (Fraction(2 * j + 1, 2 * weights[i]), i) for i in range(len(live)) for j in range(quotas[i])
    )
    permutation = [_permutation(k, m) for k, _ in live]
    next_ = [0] * len(live)
    entry = [-1] * m
    for _, i in turns:
        c = permutation[i][next_[i]]
        while entry[c] >= 0:
            next_[i] += 1
            c = permutation[i][next_[i]]
        entry[c] = i
        next_[i] += 1
    assert min(entry) >= 0
    return entry


def keys_of(n: int) -> list[str]:
    """n distinct endpoint keys "10.x.y.z:8080"."""
    return [
        Endpoint(address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", port=8080).key
        for i in range(n)
    ]


def unweighted(keys: list[str]) -> list[tuple[str, int]]:
    return [(k, 1) for k in keys]


def table_sha256(table: MaglevTable) -> str:
    """sha256 of the table as little-endian uint16 slot values (a platform-neutral form)."""
    return hashlib.sha256(struct.pack(f"<{len(table)}H", *table.table)).hexdigest()


def moved_slots(old: MaglevTable, new: MaglevTable) -> int:
    return sum(
        old.backends[a] != new.backends[b] for a, b in zip(old.table, new.table, strict=True)
    )


# --- exactness against the paper --------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "m"),
    [
        (1, 251),
        (2, 251),
        (5, 251),
        (13, 251),
        (50, 251),
        (250, 251),
        (3, 1009),
        (37, 1009),
        (200, 1009),
        (1, 65537),
        (3, 65537),
        (7, 65537),
        (10, 65537),
    ],
)
def test_build_equals_naive_paper_pseudocode(n: int, m: int) -> None:
    keys = keys_of(n)
    assert list(build(unweighted(keys), m).table) == naive_maglev(keys, m)


def test_build_equals_naive_paper_pseudocode_for_large_n_with_phase_one_and_two() -> None:
    # N = 300 at M = 65537 runs both fill phases with many backends in phase 2.
    keys = keys_of(300)
    assert list(build(unweighted(keys), 65537).table) == naive_maglev(keys, 65537)


@given(
    keys=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=30, unique=True),
    m=st.sampled_from([31, 251, 1009, 4099]),
)
def test_build_equals_naive_paper_pseudocode_for_arbitrary_keys(keys: list[str], m: int) -> None:
    if len(keys) >= m:
        keys = keys[: m - 1]
    assert list(build(unweighted(keys), m).table) == naive_maglev(keys, m)


@pytest.mark.parametrize(
    ("weights", "m"),
    [
        ((1, 2), 251),
        ((1, 2, 3), 251),
        ((1, 2, 4, 3, 6), 1009),
        ((5, 1, 1, 1), 1009),
        ((100, 1, 7), 4099),
        ((1, 1000000), 251),
        ((2, 3, 2, 3, 2), 65537),
    ],
)
def test_weighted_build_equals_naive_weighted_reference(weights: tuple[int, ...], m: int) -> None:
    backends = list(zip(keys_of(len(weights)), weights, strict=True))
    assert list(build(backends, m).table) == naive_weighted(backends, m)


@given(
    weights=st.lists(st.integers(0, 12), min_size=1, max_size=25),
    m=st.sampled_from([251, 1009, 4099]),
)
def test_weighted_build_equals_naive_weighted_reference_for_random_weights(
    weights: list[int], m: int
) -> None:
    backends = list(zip(keys_of(len(weights)), weights, strict=True))
    table = build(backends, m)
    if not any(weights):
        assert len(table) == 0
        return
    assert list(table.table) == naive_weighted(backends, m)


def test_naive_weighted_reference_with_equal_weights_is_the_paper() -> None:
    """Guards the weighted reference itself: equal weights must reduce to Pseudocode 1."""
    keys = keys_of(7)
    assert naive_weighted([(k, 3) for k in keys], 251) == naive_maglev(keys, 251)


@pytest.mark.parametrize("w", [2, 3, 1000])
def test_equal_weights_give_the_unweighted_paper_table(w: int) -> None:
    keys = keys_of(9)
    assert list(build([(k, w) for k in keys], 1009).table) == naive_maglev(keys, 1009)


# --- golden tables ------------------------------------------------------------------------
# Produced once with this module (after the tests above showed it equals the naive
# reference) by:
#   t = build([(k, 1) for k in keys], m); list(t.table)[:32]; table_sha256(t)
# A change here means every deployed table would change: flows would move.

GOLDEN_5_251_KEYS = [Endpoint(address=f"10.0.0.{i}", port=8080).key for i in range(1, 6)]
GOLDEN_5_251_HEAD = [0, 1, 0, 3, 4, 4, 3, 2, 1, 1, 4, 0, 3, 1, 0, 4,
                     2, 2, 2, 3, 4, 3, 1, 1, 1, 4, 3, 2, 2, 3, 4, 0]  # fmt: skip
GOLDEN_5_251_SHA = "66ca476820ac9bf12b25e5341a341852f5f821f09e71f73e202366347f28f975"

GOLDEN_3_65537_KEYS = [
    Endpoint(address="2001:db8::1", port=443).key,  # "[2001:db8::1]:443"
    Endpoint(address="10.1.2.3", port=80).key,
    Endpoint(address="192.168.0.7", port=8443).key,
]
GOLDEN_3_65537_HEAD = [1, 2, 2, 2, 0, 0, 1, 2, 1, 0, 2, 1, 2, 0, 1, 0,
                       2, 2, 0, 1, 1, 2, 2, 1, 0, 1, 2, 2, 1, 0, 2, 2]  # fmt: skip
GOLDEN_3_65537_SHA = "bd4be33d877a1d2592fe533a8b1af40aa761841d8c333dfb1994c3a8fd842359"

GOLDEN_WEIGHTED = [("a:1", 1), ("b:1", 2), ("c:1", 3), ("d:1", 0)]  # M = 251
GOLDEN_WEIGHTED_HEAD = [2, 2, 1, 2, 2, 2, 1, 1, 2, 2, 1, 1, 1, 2, 1, 1,
                        1, 1, 2, 2, 2, 2, 1, 2, 2, 2, 1, 1, 2, 2, 1, 1]  # fmt: skip
GOLDEN_WEIGHTED_SHA = "ebfcb9a3da42a2ebf41d4b0504e102b6d00dbb00dcf903f2be327184c4f43028"


def test_golden_table_five_backends_m251() -> None:
    table = build(unweighted(GOLDEN_5_251_KEYS), 251)
    assert table.backends == tuple(GOLDEN_5_251_KEYS)
    assert list(table.table[:32]) == GOLDEN_5_251_HEAD
    assert table_sha256(table) == GOLDEN_5_251_SHA
    assert table.slot_counts() == dict.fromkeys(GOLDEN_5_251_KEYS, 50) | {GOLDEN_5_251_KEYS[0]: 51}


def test_golden_table_three_backends_m65537() -> None:
    table = build(unweighted(GOLDEN_3_65537_KEYS), 65537)
    assert table.backends == ("10.1.2.3:80", "192.168.0.7:8443", "[2001:db8::1]:443")
    assert list(table.table[:32]) == GOLDEN_3_65537_HEAD
    assert table_sha256(table) == GOLDEN_3_65537_SHA


def test_golden_weighted_table_m251() -> None:
    table = build(GOLDEN_WEIGHTED, 251)
    assert table.backends == ("a:1", "b:1", "c:1")
    assert list(table.table[:32]) == GOLDEN_WEIGHTED_HEAD
    assert table_sha256(table) == GOLDEN_WEIGHTED_SHA
    assert table.slot_counts() == {"a:1": 42, "b:1": 84, "c:1": 125}


# --- hashes are pinned and process-independent --------------------------------------------


def test_hash_seeds_and_values_are_pinned() -> None:
    assert (OFFSET_SEED, SKIP_SEED, LOOKUP_SEED) == (
        0x4D41474C45564F46,
        0x4D41474C45565346,
        0x4D41474C45564C4B,
    )
    assert key_hash(b"abc") == 13752067327660253955
    assert key_hash(b"") == 4281469761201971520
    assert key_hash(b"abc") == xxhash.xxh3_64_intdigest(b"abc", seed=LOOKUP_SEED)
    assert offset_skip("10.0.0.1:8080", 65537) == (35915, 39334)


def test_tables_and_lookups_are_identical_in_another_process() -> None:
    code = (
        "import warnings, hashlib, struct\n"
        "from rauta.model.maglev import build, key_hash\n"
        "t = build([(f'10.0.0.{i}:80', 1 + i % 3) for i in range(20)], 4099)\n"
        "print(hashlib.sha256(struct.pack(f'<{len(t)}H', *t.table)).hexdigest())\n"
        "print(key_hash(b'flow-1'), t.lookup_key(b'flow-1'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        cwd=str(Path(__file__).resolve().parents[3]),
    ).stdout.split("\n")
    here = build([(f"10.0.0.{i}:80", 1 + i % 3) for i in range(20)], 4099)
    assert out[0] == table_sha256(here)
    assert out[1] == f"{key_hash(b'flow-1')} {here.lookup_key(b'flow-1')}"


# --- balance and weights --------------------------------------------------------------------


@pytest.mark.parametrize("n", [10, 100, 1000])
def test_equal_weights_balance_is_floor_or_ceil_of_m_over_n(n: int) -> None:
    counts = build(unweighted(keys_of(n)), DEFAULT_M).slot_counts()
    assert set(counts.values()) <= {DEFAULT_M // n, -(-DEFAULT_M // n)}
    ratio = max(counts.values()) / min(counts.values())
    assert ratio <= (DEFAULT_M // n + 1) / (DEFAULT_M // n)
    if n <= DEFAULT_M // 100:  # the paper's M > 100·N regime: under 1% imbalance
        assert ratio < 1.01


def test_weight_two_gets_twice_the_slots_of_weight_one() -> None:
    table = build([("one:80", 1), ("two:80", 2)], DEFAULT_M)
    counts = table.slot_counts()
    assert counts == {"one:80": 21846, "two:80": 43691}  # 65537/3 = 21845.67 each third
    assert abs(counts["two:80"] / counts["one:80"] - 2) < 0.001


@pytest.mark.parametrize("seed", range(5))
def test_every_backend_is_within_one_slot_of_its_weighted_ideal(seed: int) -> None:
    rng = random.Random(seed)
    backends = [(k, rng.choice([0, 1, 2, 3, 5, 10, 100])) for k in keys_of(rng.randint(1, 60))]
    if not any(w for _, w in backends):
        backends[0] = (backends[0][0], 1)
    table = build(backends, 8191)
    total = sum(w for _, w in backends)
    counts = table.slot_counts()
    assert sum(counts.values()) == 8191
    for key, w in backends:
        if w:
            assert abs(counts[key] - Fraction(8191 * w, total)) < 1
        else:
            assert key not in counts


def test_tiny_weight_may_own_no_slot_but_stays_listed() -> None:
    table = build([("big:80", 1_000_000), ("tiny:80", 1)], 251)
    assert table.backends == ("big:80", "tiny:80")
    assert table.slot_counts() == {"big:80": 251, "tiny:80": 0}


def test_weight_zero_backends_are_excluded() -> None:
    assert build([("a:1", 1), ("b:1", 0), ("c:1", 1)], 251) == build([("a:1", 1), ("c:1", 1)], 251)
    assert build([("a:1", 1), ("b:1", 0)], 251).backends == ("a:1",)


def test_scaling_all_weights_keeps_the_table() -> None:
    base = [("a:1", 1), ("b:1", 2), ("c:1", 5)]
    scaled = [(k, 7 * w) for k, w in base]
    assert list(build(base, 1009).table) == list(build(scaled, 1009).table)


# --- disruption -----------------------------------------------------------------------------


def test_removing_one_of_ten_moves_under_twice_its_slots() -> None:
    keys = keys_of(10)
    before = build(unweighted(keys), DEFAULT_M)
    after = build(unweighted(keys[:3] + keys[4:]), DEFAULT_M)
    minimum = before.slot_counts()[keys[3]]
    moved = moved_slots(before, after)
    assert minimum <= moved <= 2 * minimum
    # every slot of a surviving backend that moved went to another survivor
    assert keys[3] not in after.backends


def test_readding_a_backend_restores_the_identical_table() -> None:
    keys = keys_of(12)
    before = build(unweighted(keys), 4099)
    build(unweighted(keys[1:]), 4099)
    assert build(unweighted(keys[1:] + keys[:1]), 4099) == before


# --- input handling ---------------------------------------------------------------------------


def test_input_order_does_not_matter() -> None:
    backends = [(k, 1 + i % 4) for i, k in enumerate(keys_of(30))]
    expected = build(backends, 4099)
    rng = random.Random(7)
    for _ in range(5):
        shuffled = backends[:]
        rng.shuffle(shuffled)
        assert build(shuffled, 4099) == expected
        assert build(iter(shuffled), 4099) == expected  # any iterable
    assert expected.backends == tuple(sorted(k for k, _ in backends))


@pytest.mark.parametrize("m", [0, 1, 4, 255, 65536, 65535, 2**31 + 11, -7])
def test_non_prime_or_out_of_range_table_size_is_rejected(m: int) -> None:
    with pytest.raises(ValueError, match="prime"):
        build([("a:1", 1)], m)


@pytest.mark.parametrize("m", [65537.0, True, "65537", None])
def test_non_int_table_size_is_rejected(m: object) -> None:
    with pytest.raises(ValueError, match="int"):
        build([("a:1", 1)], m)  # type: ignore[arg-type]


def test_table_size_must_exceed_backend_count() -> None:
    with pytest.raises(ValueError, match="exceed"):
        build(unweighted(keys_of(3)), 3)
    with pytest.raises(ValueError, match="exceed"):
        build(unweighted(keys_of(5)), 5)
    assert len(build(unweighted(keys_of(2)), 3)) == 3  # M > N is enough to build


def test_small_table_warns_and_large_table_does_not() -> None:
    with pytest.warns(MaglevSizeWarning, match="100"):
        build(unweighted(keys_of(3)), 251)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build(unweighted(keys_of(2)), 251)
        build(unweighted(keys_of(655)), DEFAULT_M)


def test_duplicate_keys_are_rejected_even_with_other_weights() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        build([("a:1", 1), ("a:1", 1)], 251)
    with pytest.raises(ValueError, match="duplicate"):
        build([("a:1", 1), ("b:1", 1), ("a:1", 0)], 251)


@pytest.mark.parametrize(
    "bad",
    [
        ("a:1", -1),
        ("a:1", 1.0),
        ("a:1", True),
        ("a:1", "1"),
        ("a:1", 2**31),
        (1, 1),
        ("a:1",),
        ["a:1", 1],
    ],
)
def test_bad_backend_entries_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError):
        build([bad], 251)  # type: ignore[list-item]


@pytest.mark.parametrize("backends", [[], [("a:1", 0)], [("a:1", 0), ("b:1", 0)]])
def test_no_live_backend_gives_an_empty_table_whose_lookups_raise(
    backends: list[tuple[str, int]],
) -> None:
    table = build(backends, DEFAULT_M)
    assert table.backends == ()
    assert len(table) == 0 and len(table.table) == 0
    assert table.m == DEFAULT_M
    assert table.slot_counts() == {}
    with pytest.raises(NoBackendsError, match="no live backends"):
        table.lookup(12345)
    with pytest.raises(LookupError):
        table.lookup_key(b"flow")


def test_empty_backends_still_validate_table_size() -> None:
    with pytest.raises(ValueError, match="prime"):
        build([], 100)


# --- lookups and the table object -----------------------------------------------------------


def test_lookup_uses_hash_modulo_m() -> None:
    table = build(unweighted(keys_of(7)), 251)
    for h in (0, 1, 250, 251, 252, 2**64 - 1, 10**30, -1):
        assert table.lookup(h) == table.backends[table.table[h % 251]]
    for data in (b"", b"abc", b"10.0.0.1:5555->10.9.9.9:80"):
        assert table.lookup_key(data) == table.lookup(key_hash(data))


def test_lookups_spread_flows_over_backends() -> None:
    table = build(unweighted(keys_of(4)), DEFAULT_M)
    hits = Counter(table.lookup_key(f"flow-{i}".encode()) for i in range(20000))
    assert set(hits) == set(table.backends)
    assert max(hits.values()) / min(hits.values()) < 1.15


def test_table_is_immutable() -> None:
    table = build(unweighted(keys_of(3)), 251)
    view = table.table
    assert view.readonly
    with pytest.raises(TypeError):
        view[0] = 1
    with pytest.raises(AttributeError):
        table.m = 7  # type: ignore[misc]
    with pytest.raises(AttributeError):
        table._table = None  # type: ignore[assignment]
    assert len(table) == 251 == len(view)


def test_equal_tables_compare_and_hash_equal() -> None:
    a = build([("a:1", 1), ("b:1", 2)], 251)
    b = build([("b:1", 2), ("a:1", 1)], 251)
    assert a == b and hash(a) == hash(b)
    assert a != build([("a:1", 1), ("b:1", 3)], 251)
    assert a != build([("a:1", 1), ("b:1", 2)], 1009)
    assert a.weights == (1, 2)
    assert "m=251" in repr(a)


def test_table_index_width_follows_backend_count() -> None:
    assert build(unweighted(keys_of(300)), 65537).table.itemsize == 2
    assert build(unweighted(keys_of(3)), 251).table.itemsize == 1


def test_cached_returns_the_same_table_object() -> None:
    backends = (("10.0.0.1:80", 1), ("10.0.0.2:80", 1))
    first = cached(backends)
    assert cached(backends) is first
    assert first == build(backends)
    assert cached(backends, 251) == build(backends, 251)
    assert maglev.cached.cache_info().maxsize == 1024


def test_is_prime_agrees_with_trial_division() -> None:
    def slow(n: int) -> bool:
        return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))

    assert [n for n in range(3000) if maglev.is_prime(n)] == [n for n in range(3000) if slow(n)]
    assert maglev.is_prime(65537) and maglev.is_prime(655373) and maglev.is_prime(2**31 - 1)
    assert not maglev.is_prime(3215031751)  # strong pseudoprime to bases 2, 3, 5, 7
