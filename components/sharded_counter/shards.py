"""Pure arithmetic of the sharded counter: shard choice, sampling, sums, rebalancing.

Nothing here touches a database; ``component.py`` feeds it the shard values it
read.  Two number modes:

* **float mode** (the reference's): values are ``int | float``; sums of floats
  are taken with :func:`math.fsum`, so the exact count is the correctly rounded
  sum of the shard values (the reference adds them left to right and drifts).
* **integer mode**: every count must be an ``int``; sums and rebalancing stay
  exact integers (a rebalanced total is split as ``total // n`` plus one unit
  on the first ``total % n`` shards), so nothing ever drifts.
"""


import math
import random
from collections.abc import Iterable, Sequence

DEFAULT_SHARDS = 16
"""Shards per key when neither the key nor the counter names a number (as in the reference)."""

Number = int | float


def check_shards(shards: object) -> int:
    """A shard count must be a positive int."""
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ValueError(f"a shard count must be a positive int, not {shards!r}")
    return shards


def check_count(count: object, integer: bool) -> Number:
    """A count must be a finite number; in integer mode an ``int`` (never a bool)."""
    if isinstance(count, bool) or not isinstance(count, (int, float)):
        raise ValueError(f"a counter count must be a number, not {count!r}")
    if integer and not isinstance(count, int):
        raise ValueError(f"this counter is in integer mode: count {count!r} is not an int")
    if isinstance(count, float) and not math.isfinite(count):
        raise ValueError(f"a counter count must be finite, not {count!r}")
    return count


def pick_shard(rng: random.Random, shards: int) -> int:
    """``floor(random * shards)``: a uniformly random shard index."""
    return min(int(rng.random() * shards), shards - 1)


def sample_shards(rng: random.Random, shards: int, read_from_shards: int) -> list[int]:
    """``min(max(1, read_from_shards), shards)`` distinct shard indices (partial Fisher–Yates)."""
    k = min(max(1, read_from_shards), shards)
    pool = list(range(shards))
    for i in range(k):
        j = i + int(rng.random() * (shards - i))
        j = min(j, shards - 1)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:k]


def exact_sum(values: Iterable[Number]) -> Number:
    """The sum of shard values: an exact ``int`` when all are ints, else the correctly rounded float."""
    vals = list(values)
    if all(isinstance(v, int) for v in vals):
        return sum(vals)
    return math.fsum(vals)


def estimate(values: Sequence[Number], shards: int, integer: bool) -> Number:
    """Scale the sum of ``len(values)`` sampled shards up to ``shards`` shards.

    Divides by the number of shards actually read (the reference divides by the
    requested number, which under-counts when more shards are requested than
    exist).  Integer mode rounds to the nearest int.
    """
    if not values:
        raise ValueError("estimate needs at least one sampled shard")
    total = exact_sum(values)
    if len(values) == shards:
        return total
    est = total * shards / len(values)
    return round(est) if integer else est


def rebalanced(total: Number, shards: int, integer: bool) -> list[Number]:
    """The values of shards ``0..shards-1`` after a rebalance of ``total``.

    Integer mode splits exactly (``sum(result) == total``); float mode gives
    every shard ``total / shards`` like the reference (ints that divide evenly
    stay ints).
    """
    check_shards(shards)
    if isinstance(total, int):
        q, r = divmod(total, shards)
        if integer or r == 0:
            return [q + (1 if i < r else 0) for i in range(shards)]
    if integer:
        raise ValueError(f"integer mode cannot rebalance a non-integer total {total!r}")
    return [total / shards] * shards
