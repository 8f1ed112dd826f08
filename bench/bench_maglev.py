"""Maglev benchmark: build time, lookup cost, balance and disruption at M = 65537.

Run: ``python bench/bench_maglev.py`` (from the repository root). Prints:
- build time for N = 10 / 100 / 1000 equal-weight backends (median of several runs), and
  for N = 1000 with weights 1..4, with the C accelerator (when built) and the pure-Python
  fill side by side; goal: <= 10 ms at N = 1000;
- event-loop stall: an asyncio loop ticks every 1 ms while a worker thread builds N = 1000
  tables back to back (as ``routing.prepare`` does before a config swap); the worst tick
  lateness is what the serving loop would suffer; goal: <= 5 ms;
- lookup cost (``lookup`` with a precomputed hash, and ``lookup_key`` hashing 20 bytes);
- balance: max/min slots per backend;
- disruption when removing 1 of 10 and 1% / 5% / 10% of 1000 backends: slots whose owner
  changed, against the theoretical minimum (slots the removed backends owned). Paper /
  reference simulation: ~11% for 1 of 10; 3.3%, 8.2%, 13.6% of slots for 1/5/10% of 1000.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rauta.model.maglev import (  # noqa: E402
    ACCELERATED,
    DEFAULT_M,
    MaglevTable,
    build,
    key_hash,
)

M = DEFAULT_M
RUNS = 7


def keys(n: int) -> list[str]:
    return [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:8080" for i in range(n)]


def median_ms(backends: list[tuple[str, int]], runs: int = RUNS,
              accelerated: bool | None = None) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        build(backends, M, accelerated=accelerated)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def loop_stall_ms(accelerated: bool, builds: int = 10) -> tuple[float, float]:
    """(worst, p99) lateness in ms of a 1 ms asyncio ticker while another thread builds
    ``builds`` N = 1000 tables back to back."""
    backends = [(k, 1) for k in keys(1000)]
    late: list[float] = []

    async def run() -> None:
        done = threading.Event()

        def worker() -> None:
            for _ in range(builds):
                build(backends, M, accelerated=accelerated)
            done.set()

        loop = asyncio.get_running_loop()
        thread = threading.Thread(target=worker)
        thread.start()
        while not done.is_set():
            t = loop.time()
            await asyncio.sleep(0.001)
            late.append((loop.time() - t - 0.001) * 1000)
        thread.join()

    asyncio.run(run())
    late.sort()
    return late[-1], late[int(len(late) * 0.99)]


def moved(old: MaglevTable, new: MaglevTable) -> int:
    return sum(
        old.backends[a] != new.backends[b] for a, b in zip(old.table, new.table, strict=True)
    )


def disruption(n: int, remove: int, rng: random.Random) -> tuple[int, int]:
    names = keys(n)
    before = build([(k, 1) for k in names], M)
    gone = set(rng.sample(names, remove))
    after = build([(k, 1) for k in names if k not in gone], M)
    counts = before.slot_counts()
    return moved(before, after), sum(counts[k] for k in gone)


def main() -> None:
    warnings.simplefilter("ignore")  # N = 1000 is below the M >= 100·N guideline on purpose
    print(f"Maglev, M = {M}, Python {sys.version.split()[0]}")
    fills = [True, False] if ACCELERATED else [False]
    print(f"C accelerator: {'built' if ACCELERATED else 'NOT built (pure-Python fill only)'}")
    print(f"\nbuild time (median of {RUNS}), {' / '.join('C' if f else 'pure' for f in fills)}")
    weighted = [(k, 1 + i % 4) for i, k in enumerate(keys(1000))]
    cases = [(f"N={n:5d} equal weights", [(k, 1) for k in keys(n)]) for n in (10, 100, 1000)]
    for label, backends in [*cases, ("N= 1000 weights 1..4 ", weighted)]:
        times = " / ".join(f"{median_ms(backends, accelerated=f):6.1f} ms" for f in fills)
        print(f"  {label}   {times}")

    print("\nevent-loop stall while a thread builds 10 tables of N=1000 (1 ms ticker)")
    for f in fills:
        worst, p99 = loop_stall_ms(f)
        print(f"  {'C   ' if f else 'pure'}  worst {worst:6.2f} ms, p99 {p99:6.2f} ms")

    table = build([(k, 1) for k in keys(100)], M)
    hashes = [key_hash(f"flow-{i}".encode()) for i in range(100_000)]
    flows = [f"10.9.{i // 256 % 256}.{i % 256}:{i % 60000}".encode() for i in range(100_000)]
    lookup, lookup_key = table.lookup, table.lookup_key
    start = time.perf_counter()
    for h in hashes:
        lookup(h)
    per_lookup = (time.perf_counter() - start) / len(hashes) * 1e9
    start = time.perf_counter()
    for f in flows:
        lookup_key(f)
    per_lookup_key = (time.perf_counter() - start) / len(flows) * 1e9
    print(f"\nlookup(h) {per_lookup:.0f} ns, lookup_key(20-byte flow) {per_lookup_key:.0f} ns")

    print("\nbalance (max/min slots per backend)")
    for n in (10, 100, 1000):
        counts = build([(k, 1) for k in keys(n)], M).slot_counts().values()
        print(f"  N={n:5d}  {max(counts)}/{min(counts)} = {max(counts) / min(counts):.4f}")

    print("\ndisruption (moved slots / theoretical minimum)")
    rng = random.Random(2016)
    for n, remove in ((10, 1), (1000, 10), (1000, 50), (1000, 100)):
        mv, minimum = disruption(n, remove, rng)
        print(
            f"  remove {remove:3d} of {n:4d}: moved {mv:5d} ({mv / M:6.2%} of slots), "
            f"minimum {minimum:5d} ({minimum / M:6.2%}), ratio {mv / minimum:.2f}"
        )


if __name__ == "__main__":
    main()
