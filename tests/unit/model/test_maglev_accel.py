"""The Maglev fill's C accelerator against the pure-Python fill (rauta.model.maglev).

Both must build the identical table, byte for byte, for any backend set, weights and
table size; the accelerator must exist wherever a C compiler does (``pip install -e .``
builds it), and it must refuse malformed input instead of reading out of bounds.
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rauta.model import maglev

PRIMES = [251, 257, 1009, 4099, 65537]

needs_accel = pytest.mark.skipif(
    not maglev.ACCELERATED,
    reason="the C accelerator rauta.model._maglev_fill is not built (no C compiler at "
           "install time; `pip install -e .` builds it)")


def test_accelerator_is_built_where_a_compiler_exists() -> None:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here: the pure-Python fill is the only one")
    assert maglev.ACCELERATED, ("a C compiler exists but rauta.model._maglev_fill is not "
                                "importable: re-run `pip install -e .`")


def _both(backends: list[tuple[str, int]], m: int) -> tuple[maglev.MaglevTable, ...]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", maglev.MaglevSizeWarning)
        return (maglev.build(backends, m, accelerated=True),
                maglev.build(backends, m, accelerated=False))


def _same(fast: maglev.MaglevTable, pure: maglev.MaglevTable) -> None:
    assert fast.backends == pure.backends and fast.weights == pure.weights
    assert fast.table.format == pure.table.format
    assert fast.table.tobytes() == pure.table.tobytes()
    assert fast == pure and hash(fast) == hash(pure)


@needs_accel
@settings(max_examples=150, deadline=None)
@given(keys=st.sets(st.text(min_size=1, max_size=12), min_size=1, max_size=60),
       m=st.sampled_from(PRIMES), data=st.data())
def test_accelerated_equals_pure_for_random_sets(keys: set[str], m: int,
                                                 data: st.DataObject) -> None:
    keys_sorted = sorted(keys)
    if len(keys_sorted) >= m:
        keys_sorted = keys_sorted[: m - 1]
    weights = data.draw(st.lists(st.integers(0, 7), min_size=len(keys_sorted),
                                 max_size=len(keys_sorted)))
    backends = list(zip(keys_sorted, weights, strict=True))
    if not any(weights):
        backends[0] = (backends[0][0], 1)
    _same(*_both(backends, m))


@needs_accel
@pytest.mark.parametrize("n,weighted", [(1, False), (300, False), (1000, False),
                                        (1000, True), (257, False)])
def test_accelerated_equals_pure_at_production_size(n: int, weighted: bool) -> None:
    keys = [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:8080" for i in range(n)]
    backends = [(k, 1 + i % 4 if weighted else 3) for i, k in enumerate(keys)]
    _same(*_both(backends, maglev.DEFAULT_M))


@needs_accel
def test_index_width_beyond_65536_backends_matches() -> None:
    # More than 0x10000 backends: the pure path uses array("L"); so must the fast one.
    n, m = 70_001, 70_003
    assert maglev.is_prime(m)
    backends = [(f"b{i}", 1) for i in range(n)]
    fast, pure = _both(backends, m)
    assert fast.table.format == "L"
    _same(fast, pure)


def test_forcing_the_accelerator_without_it_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maglev, "_accel", None)
    with pytest.raises(RuntimeError, match="not built"):
        maglev.build([("a", 1)], 251, accelerated=True)
    assert maglev.build([("a", 1), ("b", 1)], 251).backends == ("a", "b")  # pure fallback


@needs_accel
@pytest.mark.parametrize("case", ["short_order", "bad_offset", "bad_skip", "bad_turn",
                                  "mismatched", "empty"])
def test_the_c_fill_refuses_malformed_input(case: str) -> None:
    fill = maglev._accel.fill  # type: ignore[union-attr]
    m = 7
    off = np.array([0, 3], dtype=np.int64)
    skip = np.array([1, 2], dtype=np.int64)
    order = np.resize(np.arange(2, dtype=np.int64), m)
    if case == "short_order":
        order = order[:-1]
    elif case == "bad_offset":
        off[1] = m
    elif case == "bad_skip":
        skip[0] = 0
    elif case == "bad_turn":
        order[3] = 2
    elif case == "mismatched":
        skip = skip[:1]
    elif case == "empty":
        off, skip = off[:0], skip[:0]
    with pytest.raises(ValueError, match="maglev fill"):
        fill(off.tobytes(), skip.tobytes(), order.tobytes(), m)


@needs_accel
def test_the_c_fill_matches_a_hand_checked_table() -> None:
    # Two backends, m = 7: offsets 0 and 3, skips 1 and 2, round robin.
    # b0: 0; b1: 3; b0: 1; b1: 5; b0: 2; b1: 0 taken, 2 taken, 4 -> 4; b0: 3, 4, 5 taken, 6.
    out = maglev._accel.fill(  # type: ignore[union-attr]
        np.array([0, 3], dtype=np.int64).tobytes(), np.array([1, 2], dtype=np.int64).tobytes(),
        np.resize(np.arange(2, dtype=np.int64), 7).tobytes(), 7)
    assert np.frombuffer(out, dtype=np.uint32).tolist() == [0, 0, 0, 1, 1, 1, 0]
