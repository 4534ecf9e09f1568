"""Routing benchmark: this core (weighted rendezvous over xxh3) beside a ketama ring
(`uhashring`, the scheme nginx and HAProxy offer) and plain `hash % N`, in one run.

Prints, over the same domains: balance (max/mean load, with what uniform random assignment
gives), keys moved divided by the minimum that must move for each kind of pool change, share
error with mixed weights, and lookup microseconds (with and without this core's memo).

    python bench/routing_bench.py                 # 200,000 domains, about two minutes
    python bench/routing_bench.py --domains 20000 # a quicker, noisier run
    python bench/routing_bench.py --only lookups  # just the timings
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

# Run as a script from the repository root (`make bench`): make the project importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uhashring import HashRing
from xxhash import xxh3_64_intdigest

from routing import ALGORITHM, Backend, RouteTable, canonical_host

Pool = list[tuple[str, int]]  # (name, weight)
TLDS = ["com", "net", "org", "io", "de", "fr", "co.uk", "apps.localhost", "example"]
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "xe", "zu", "an", "el", "or", "ix"]


def make_domains(count: int, seed: int) -> list[str]:
    """``count`` distinct canonical keys of plausible domains, the same for a given seed."""
    rng = random.Random(seed)
    seen: set[str] = set()
    while len(seen) < count:
        word = "".join(rng.choices(SYLLABLES, k=rng.randint(2, 5)))
        if rng.random() < 0.5:
            word += str(rng.randrange(1000))
        host = f"{word}.{rng.choice(TLDS)}"
        if rng.random() < 0.3:
            host = f"{rng.choice(['www', 'api', 'shop', 'blog'])}.{host}"
        seen.add(canonical_host(host.title() if rng.random() < 0.2 else host))
    return sorted(seen)


def equal_pool(n: int, weight: int = 1, start: int = 1) -> Pool:
    return [(f"b{i}", weight) for i in range(start, start + n)]


# -- the three schemes, each: pool -> (key -> backend name) ---------------------------------


def ours(pool: Pool) -> Callable[[str], str]:
    backends = tuple(Backend(name, f"10.0.0.1:{8000 + i}", w) for i, (name, w) in enumerate(pool))
    table = RouteTable(1, ALGORITHM, backends)

    def lookup(key: str) -> str:
        backend = table.backend_for(key)
        assert backend is not None
        return backend.name

    return lookup


def ketama(pool: Pool) -> Callable[[str], str]:
    ring = HashRing(nodes={name: {"weight": w} for name, w in pool}, hash_fn="ketama")
    return ring.get_node


def modulo(pool: Pool) -> Callable[[str], str]:
    # Weights as repeated slots, the way a plain `hash % N` balancer takes them.
    slots = [name for name, w in pool for _ in range(w)]
    n = len(slots)
    return lambda key: slots[xxh3_64_intdigest(key.encode()) % n]


SCHEMES: list[tuple[str, Callable[[Pool], Callable[[str], str]]]] = [
    ("rendezvous (ours)", ours),
    ("ketama (uhashring)", ketama),
    ("hash % N", modulo),
]


_ASSIGNED: dict[tuple, list[str]] = {}


def assign(scheme: Callable[[Pool], Callable[[str], str]], pool: Pool, keys: Sequence[str]):
    """Every key's backend under ``scheme``; remembered, as several figures share a pool."""
    index = (scheme, tuple(pool), len(keys))
    if index not in _ASSIGNED:
        lookup = scheme(pool)
        _ASSIGNED[index] = [lookup(k) for k in keys]
    return _ASSIGNED[index]


# -- figures -----------------------------------------------------------------------------


def max_over_mean(assigned: Sequence[str], pool: Pool) -> float:
    counts = Counter(assigned)
    return max(counts[name] for name, _ in pool) / (len(assigned) / len(pool))


def random_max_over_mean(n: int, keys: int, trials: int, seed: int) -> float:
    rng = random.Random(seed)
    total = 0.0
    for _ in range(trials):
        counts = Counter(rng.randrange(n) for _ in range(keys))
        total += max(counts.values()) / (keys / n)
    return total / trials


def ideal_shares(pool: Pool) -> dict[str, float]:
    total = sum(w for _, w in pool)
    return {name: w / total for name, w in pool}


def minimum_moves(before: Pool, after: Pool, keys: int) -> float:
    """Keys that must move to keep every backend at its weighted share (total variation)."""
    a, b = ideal_shares(before), ideal_shares(after)
    return keys * sum(max(0.0, a[name] - b.get(name, 0.0)) for name in a)


def moved_ratios(scheme, before: Pool, after: Pool, keys: Sequence[str]) -> tuple[float, float]:
    """Keys moved divided by (the minimum for the weighted shares, the minimum for the loads
    the scheme actually reached). The second isolates disruption from balance noise."""
    first, second = assign(scheme, before, keys), assign(scheme, after, keys)
    moved = sum(1 for x, y in zip(first, second, strict=True) if x != y)
    loads_before, loads_after = Counter(first), Counter(second)
    necessary = sum(max(0, c - loads_after[name]) for name, c in loads_before.items())
    return moved / minimum_moves(before, after, len(keys)), moved / necessary


def share_errors(assigned: Sequence[str], pool: Pool) -> tuple[float, float]:
    """(max relative error of a backend's share, max absolute error in percentage points)."""
    counts = Counter(assigned)
    shares = ideal_shares(pool)
    rel = max(abs(counts[n] / len(assigned) - s) / s for n, s in shares.items())
    absolute = max(abs(counts[n] / len(assigned) - s) for n, s in shares.items())
    return rel, absolute * 100


def time_per_call(
    make: Callable[[], Callable[[str], object]], keys: Sequence[str], passes: int = 1
) -> float:
    """Microseconds per call of ``make()`` over ``keys`` (``passes`` times), best of 5 runs:
    the machine may be shared, and the best run is the one least disturbed by others."""
    best = float("inf")
    for _ in range(5):
        lookup = make()
        gc.disable()
        try:
            start = time.perf_counter()
            for _ in range(passes):
                for key in keys:
                    lookup(key)
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        best = min(best, elapsed / (len(keys) * passes) * 1e6)
    return best


NAMES = [name for name, _ in SCHEMES]
WIDTH = max(len(n) for n in NAMES)


def balance(keys: Sequence[str], seed: int) -> None:
    print("\nbalance: max/mean load, equal weights (uniform random assignment for reference)")
    print(f"  {'N':>5}  {'random':>8}  " + "  ".join(f"{n:>{WIDTH}}" for n in NAMES))
    for n in (4, 10, 64, 256):
        pool = equal_pool(n)
        reference = random_max_over_mean(n, len(keys), trials=5, seed=seed)
        row = [max_over_mean(assign(scheme, pool, keys), pool) for _, scheme in SCHEMES]
        print(f"  {n:>5}  {reference:>8.3f}  " + "  ".join(f"{v:>{WIDTH}.3f}" for v in row))


def moves(keys: Sequence[str]) -> None:
    print("\nkeys moved / minimum that must move for the weighted shares (1.000 is ideal)")
    changes: list[tuple[str, Pool, Pool]] = [
        ("N -> N+1 (10 -> 11)", equal_pool(10), equal_pool(11)),
        ("N -> 2N (10 -> 20)", equal_pool(10), equal_pool(20)),
        (
            "remove a middle backend (b5 of 10)",
            equal_pool(10),
            [p for p in equal_pool(10) if p[0] != "b5"],
        ),
        (
            "re-weight one backend (b3: 1 -> 2)",
            equal_pool(10),
            [(n, 2 if n == "b3" else w) for n, w in equal_pool(10)],
        ),
        ("4 big (weight 2) -> 8 small (weight 1)", equal_pool(4, weight=2), equal_pool(8)),
    ]
    label = max(len(c[0]) for c in changes)
    print(f"  {'change':<{label}}  " + "  ".join(f"{n:>{WIDTH}}" for n in NAMES))
    exact = []
    for title, before, after in changes:
        row = [moved_ratios(scheme, before, after, keys) for _, scheme in SCHEMES]
        print(f"  {title:<{label}}  " + "  ".join(f"{v[0]:>{WIDTH}.3f}" for v in row))
        exact.append((title, [v[1] for v in row]))
    print("\nkeys moved / keys that had to move to reach the loads each scheme reached")
    print(f"  {'change':<{label}}  " + "  ".join(f"{n:>{WIDTH}}" for n in NAMES))
    for title, row in exact:
        print(f"  {title:<{label}}  " + "  ".join(f"{v:>{WIDTH}.3f}" for v in row))


def shares(keys: Sequence[str]) -> None:
    mixed = [(f"b{i}", w) for i, w in enumerate([1, 2, 3, 4, 5], start=1)]
    print("\nweighted share error, weights 1, 2, 3, 4, 5: max relative error (max absolute)")
    for name, scheme in SCHEMES:
        rel, absolute = share_errors(assign(scheme, mixed, keys), mixed)
        print(f"  {name:<{WIDTH}}  {rel:6.2%} ({absolute:.2f} percentage points)")


def lookups(keys: Sequence[str]) -> None:
    print("\nlookup microseconds per call, best of 5 runs")
    print("(ours: miss = first lookup of a key in a table, hit = a repeated lookup)")
    header = ["ours miss", "ours hit", "ketama", "hash % N"]
    print(f"  {'N':>6}  " + "  ".join(f"{h:>10}" for h in header))
    for n in (4, 64, 256, 10_000):
        pool = equal_pool(n)
        backends = tuple(Backend(name, "10.0.0.1:80", w) for name, w in pool)
        sample = keys[: max(100, min(10_000, 500_000 // n))]
        miss = time_per_call(lambda b=backends: RouteTable(1, ALGORITHM, b).backend_for, sample)
        warm = RouteTable(1, ALGORITHM, backends)
        hot = keys[:1000]
        for key in hot:
            warm.backend_for(key)
        hit = time_per_call(lambda w=warm: w.backend_for, hot, passes=20)
        # uhashring builds its ring with insort, O(points^2): hours at 1.6 million points.
        ring = "n/a"
        if n <= 256:
            get_node = ketama(pool)
            ring = f"{time_per_call(lambda g=get_node: g, keys[:5_000]):.2f}"
        plain = time_per_call(lambda p=pool: modulo(p), keys[:5_000])
        print(f"  {n:>6}  {miss:>10.2f}  {hit:>10.2f}  {ring:>10}  {plain:>10.2f}")


SECTIONS = {"balance": balance, "moves": moves, "shares": shares, "lookups": lookups}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=200_000, help="number of domains")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated domains")
    parser.add_argument(
        "--only", choices=sorted(SECTIONS), action="append", help="run only these sections"
    )
    args = parser.parse_args(argv)
    if args.domains < 1000:
        parser.error("--domains must be at least 1000")
    started = time.perf_counter()
    keys = make_domains(args.domains, args.seed)
    print(f"routing benchmark: {len(keys):,} domains, algorithm {ALGORITHM}, seed {args.seed}")
    for name, section in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        if name == "balance":
            balance(keys, args.seed)
        else:
            section(keys)
    print(f"\ntotal run time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
