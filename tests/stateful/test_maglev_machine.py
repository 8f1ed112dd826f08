"""Maglev tables under churn: a state machine adds, removes, drains and reweights backends.

Setup: M = 8191 (prime) and at most 40 live backends, so M >= 100·N always holds (the
paper's regime), drawn from a fixed universe of 64 endpoint keys. Each example starts in
one of two modes: ``uniform`` (every live backend has the same weight: the paper's exact
algorithm) or weighted (weights 1..20, changed by ``reweight_backend``). Weight-0
("drained") backends are passed to ``build`` too and must never own a slot.

Invariants, checked after every step:
- every slot holds a live backend (present, weight > 0) and ``backends`` is exactly the
  sorted live keys;
- shares: every backend's slot count is within ONE slot of its ideal ``M·w/W``. That is
  the real guarantee (largest-remainder quotas; with equal weights the paper's
  floor/ceil(M/N)), and it implies the "within 1% of the weighted ideal" requirement for
  every backend whose ideal is >= 100 slots, which with M >= 100·N covers every backend of
  an equal-weight table. A backend whose ideal is below 100 slots (a small weight among
  large ones) cannot be within 1% on a slot grid at all, so one slot is the tolerance
  there; both bounds are asserted;
- the table depends only on the live set: reaching a live set seen before (re-adding a
  removed backend with the same weight, draining and undraining, ...) gives the identical
  table, and any shuffle of the input gives the identical table.

Disruption (``remove_backend``; minimum = slots the removed backend owned, moved = slots
whose owner changed):
- equal weights (the paper's setting): moved <= 2·minimum. The paper reports ~11% moved for
  1 of 10 (1.1x); at M = 8191, N <= 40, 1000 random removals from this universe peaked at
  1.64x.
- unequal weights: moved - minimum <= M/N (the extra moves stay under one average share).
  "2x the minimum" cannot hold here: Maglev's extra moves come from cascades near the end
  of the fill and do not shrink with the removed backend's share, so removing a weight-1
  backend that owns 7 slots can move 50. Measured at M = 8191, N <= 40, weights up to
  3, 10 or 100: (moved - minimum) / (M/N) peaked at 0.78 over 3000 removals.
The universe is checked to have pairwise distinct skips at M = 8191: two backends sharing a
skip have permutations that are shifts of each other, and such a pair can trade hundreds of
slots when an unrelated backend leaves (2x was exceeded only in that case in our sampling;
chance of a shared skip in a table is about N²/2M).
"""

from __future__ import annotations

import random

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from rauta.model.maglev import MaglevTable, build, offset_skip

M = 8191
MAX_LIVE = 40  # M >= 100 * MAX_LIVE
UNIVERSE = [f"10.0.{i // 8}.{i % 8 + 1}:8080" for i in range(64)]
INDEX = {key: i for i, key in enumerate(UNIVERSE)}
WEIGHTS = st.integers(1, 20)


def test_universe_keys_have_distinct_skips() -> None:
    """The precondition documented above for the 2x disruption bound."""
    skips = [offset_skip(key, M)[1] for key in UNIVERSE]
    assert len(set(skips)) == len(skips)
    assert len(set(UNIVERSE)) == len(UNIVERSE)


def owners(table: MaglevTable) -> np.ndarray:
    """Slot -> universe index of its owner (so tables with different backends compare)."""
    ids = np.array([INDEX[key] for key in table.backends], dtype=np.int64)
    return ids[np.asarray(table.table, dtype=np.int64)]


class MaglevMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.weights: dict[str, int] = {}  # every backend passed to build; 0 = drained
        self.uniform = True
        self.w0 = 1
        self.table = build([], M)
        self.seen: dict[frozenset[tuple[str, int]], MaglevTable] = {}
        self.removed: list[tuple[str, int, frozenset[tuple[str, int]], MaglevTable]] = []

    # --- helpers --------------------------------------------------------------------------

    def live(self) -> dict[str, int]:
        return {k: w for k, w in self.weights.items() if w > 0}

    def live_set(self) -> frozenset[tuple[str, int]]:
        return frozenset(self.live().items())

    def rebuild(self) -> None:
        table = build(list(self.weights.items()), M)
        state = self.live_set()
        if state in self.seen:
            assert table == self.seen[state], "same live set, different table"
        else:
            self.seen[state] = table
        self.table = table

    def new_weight(self, data: st.DataObject) -> int:
        return self.w0 if self.uniform else data.draw(WEIGHTS, label="weight")

    # --- rules ----------------------------------------------------------------------------

    @initialize(
        uniform=st.booleans(),
        w0=st.integers(1, 3),
        keys=st.lists(st.sampled_from(UNIVERSE), min_size=1, max_size=MAX_LIVE, unique=True),
        data=st.data(),
    )
    def start(self, uniform: bool, w0: int, keys: list[str], data: st.DataObject) -> None:
        self.uniform, self.w0 = uniform, w0
        for key in keys:
            self.weights[key] = self.new_weight(data)
        self.rebuild()

    @precondition(lambda self: len(self.live()) < MAX_LIVE and len(self.weights) < len(UNIVERSE))
    @rule(data=st.data(), drained=st.booleans())
    def add_backend(self, data: st.DataObject, drained: bool) -> None:
        key = data.draw(st.sampled_from([k for k in UNIVERSE if k not in self.weights]))
        before = self.table
        self.weights[key] = 0 if drained else self.new_weight(data)
        self.rebuild()
        if drained:  # a weight-0 backend is invisible
            assert self.table == before

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data(), drain=st.booleans())
    def remove_backend(self, data: st.DataObject, drain: bool) -> None:
        live = self.live()
        key = data.draw(st.sampled_from(sorted(live)), label="removed")
        before, before_state = self.table, self.live_set()
        minimum = before.slot_counts()[key]
        equal_weights = len(set(live.values())) == 1
        n = len(live)
        if drain:
            self.weights[key] = 0
        else:
            del self.weights[key]
        self.rebuild()
        self.removed.append((key, live[key], before_state, before))
        if n == 1:
            assert len(self.table) == 0
            return
        moved = int(np.count_nonzero(owners(before) != owners(self.table)))
        assert moved >= minimum
        if equal_weights:
            assert moved <= 2 * minimum, (moved, minimum, n)
        else:
            assert moved - minimum <= M / n, (moved, minimum, n)

    @precondition(lambda self: bool(self.removed) and len(self.live()) < MAX_LIVE)
    @rule()
    def readd_removed(self) -> None:
        key, weight, before_state, before = self.removed.pop()
        if self.weights.get(key, 0) > 0:
            return  # added back by another rule already
        # uniform mode: reweight_backend may have changed the common weight since
        self.weights[key] = self.w0 if self.uniform else weight
        self.rebuild()
        if self.live_set() == before_state:
            assert self.table == before, "re-adding a removed backend must restore its table"

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data())
    def reweight_backend(self, data: st.DataObject) -> None:
        """Weighted mode: give one backend a new weight. Uniform mode: give every live
        backend the same new weight, which must keep every slot (only ratios matter)."""
        if self.uniform:
            before = list(self.table.table)
            self.w0 = data.draw(st.integers(1, 5), label="common weight")
            for key, w in self.weights.items():
                if w:
                    self.weights[key] = self.w0
            self.rebuild()
            assert list(self.table.table) == before
            return
        key = data.draw(st.sampled_from(sorted(self.live())), label="reweighted")
        old = self.weights[key]
        new = data.draw(st.integers(1, 19), label="new weight")
        self.weights[key] = new if new < old else new + 1  # 1..20, never the old weight
        self.rebuild()

    @rule(rnd=st.randoms(use_true_random=False))
    def shuffled_input_gives_same_table(self, rnd: random.Random) -> None:
        entries = list(self.weights.items())
        rnd.shuffle(entries)
        assert build(entries, M) == self.table

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def slots_belong_to_live_backends_in_weighted_shares(self) -> None:
        live = self.live()
        table = self.table
        assert table.backends == tuple(sorted(live))
        if not live:
            assert len(table) == 0
            return
        assert len(table) == M
        slots = np.asarray(table.table, dtype=np.int64)
        assert 0 <= int(slots.min()) and int(slots.max()) < len(table.backends)
        counts = np.bincount(slots, minlength=len(table.backends))
        total = sum(live.values())
        for key, count in zip(table.backends, counts.tolist(), strict=True):
            ideal = M * live[key] / total
            assert abs(count - ideal) < 1, (key, count, ideal)
            if ideal >= 100:
                assert abs(count - ideal) <= 0.01 * ideal, (key, count, ideal)
        if len(set(live.values())) == 1:
            assert int(counts.max()) - int(counts.min()) <= 1


# Keep the profile's max_examples (200 under HYPOTHESIS_PROFILE=ci); shorter runs per example
# keep the whole machine around 20 s on two cores.
MaglevMachine.TestCase.settings = settings(stateful_step_count=25)
TestMaglev = MaglevMachine.TestCase
