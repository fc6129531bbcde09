"""Pure rate-limit arithmetic: token bucket, fixed window, sharded decisions, folding of queued use.

Every function takes the time (``now``, seconds) and any randomness
(``phase`` in [0, 1), a ``random.Random``) explicitly, so the arithmetic is
tested with a controllable clock and no database.  ``component.py`` reads the
shard documents, calls these, and writes what they return.

The formulas (``max = capacity`` else ``rate``):

* missing state starts full: ``value = max``; ``ts = now`` (token bucket) or
  ``start`` else ``now - floor_ms(phase * period)`` (fixed window, random phase);
* token bucket: ``r = rate / period``; ``value = min(prev + (now - ts) * r, max) - count``;
  ``ts = now``; if ``value < 0``: ``retry_after = -value / r``;
* fixed window: ``w = floor((now - ts) / period)``; ``value = min(prev + rate * w, max) - count``;
  ``ts = ts + w * period``; if ``value < 0``: ``retry_after = ts + period * ceil(-value / rate) - now``;
* decision: ``value < 0`` and (not ``reserve`` or ``-value > max_reserved``) is a refusal and
  writes nothing; otherwise the call succeeds (with ``retry_after`` when it reserved) and the
  new ``{value, ts}`` is written.
"""


import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from components.rate_limiter.shared import FixedWindow, TokenBucket

Config = TokenBucket | FixedWindow


class RateLimitRequestError(ValueError):
    """A request that can never succeed or is malformed (count above what the limit can ever give)."""


@dataclass(frozen=True)
class State:
    """What is stored per (name, key, shard): the value and its timestamp (window start for fixed windows)."""

    value: float
    ts: float


@dataclass(frozen=True)
class Calculated:
    """The state after refilling to ``now`` and taking ``count``; ``retry_after`` when it went below 0."""

    value: float
    ts: float
    retry_after: float | None
    window_start: float | None = None


@dataclass(frozen=True)
class Decision:
    """The outcome of one ``limit``/``check``: ``writes`` maps shard -> new state (empty when refused)."""

    ok: bool
    retry_after: float | None
    remaining: float
    writes: dict[int, State] = field(default_factory=dict)
    shards_used: tuple[int, ...] = ()


def floor_ms(seconds: float) -> float:
    """Round down to a whole millisecond (the reference's ``floor(random * period)`` in ms)."""
    return math.floor(seconds * 1000) / 1000


def initial_state(config: Config, now: float, phase: float = 0.0) -> State:
    """The state of a key never seen: full, at ``now`` or at the window start."""
    if isinstance(config, FixedWindow):
        start = config.start if config.start is not None else now - floor_ms(phase * config.period)
        return State(config.max, start)
    return State(config.max, now)


def calculate_rate_limit(state: State | None, config: Config, now: float, count: float = 0.0,
                         phase: float = 0.0) -> Calculated:
    """Refill ``state`` to ``now`` and take ``count`` (the reference's ``calculateRateLimit``)."""
    st = state if state is not None else initial_state(config, now, phase)
    if isinstance(config, TokenBucket):
        per_second = config.rate / config.period
        value = min(st.value + (now - st.ts) * per_second, config.max) - count
        retry = -value / per_second if value < 0 else None
        return Calculated(value, now, retry)
    windows = math.floor((now - st.ts) / config.period)
    value = min(st.value + config.rate * windows, config.max) - count
    ts = st.ts + windows * config.period
    retry = ts + config.period * math.ceil(-value / config.rate) - now if value < 0 else None
    return Calculated(value, ts, retry, ts)


def shard_config(config: Config) -> Config:
    """The limit of one shard: rate, capacity and max_reserved divided by the shard count."""
    n = config.shard_count
    if n == 1:
        return config
    update: dict[str, object] = {"rate": config.rate / n, "capacity": config.max / n, "shards": None}
    if config.max_reserved is not None:
        update["max_reserved"] = config.max_reserved / n
    return config.model_copy(update=update)


def max_count(config: Config, reserve: bool) -> float | None:
    """The largest count one request may ask for (None: unbounded, a reservation without max_reserved).

    One request uses one shard, or two when there are 3 or more shards.  (The
    reference allows ``capacity`` for 2 shards although a request then uses
    one shard holding half; we refuse that at once instead of failing forever.)
    """
    n = config.shard_count
    usable = 1.0 if n == 1 else (0.5 if n == 2 else 2.0 / n)
    if not reserve:
        return config.max * usable
    if config.max_reserved is None:
        return None
    return (config.max + config.max_reserved) * usable


def validate_request(name: str, config: Config, count: float, reserve: bool) -> None:
    """Refuse a count that is negative, not finite, or larger than the limit can ever give."""
    if not math.isfinite(count) or count < 0:
        raise RateLimitRequestError(f"Rate limit {name!r}: count must be a finite number >= 0, not {count!r}")
    biggest = max_count(config, reserve)
    if biggest is not None and count > biggest:
        what = "capacity + max_reserved" if reserve else "capacity"
        total = config.max + (config.max_reserved or 0) if reserve else config.max
        detail = f"{what} {total:g}"
        if config.shard_count > 1:
            detail += f" over {config.shard_count} shards, of which one request uses at most 2"
        raise RateLimitRequestError(
            f"Rate limit {name!r} count {count:g} exceeds {biggest:g} ({detail}); it could never succeed"
        )


def allowed(value: float, config: Config, reserve: bool) -> bool:
    """Whether a post-consumption ``value`` is acceptable."""
    if value >= 0:
        return True
    if not reserve:
        return False
    return config.max_reserved is None or -value <= config.max_reserved


def pick_shards(rng: random.Random, shards: int) -> tuple[int, int | None]:
    """A random shard and, when there are 3 or more, a second distinct one (power of two choices)."""
    first = min(int(rng.random() * shards), shards - 1)
    if shards < 3:
        return first, None
    second = min(int(rng.random() * (shards - 1)), shards - 2)
    return first, second if second < first else second + 1


def evaluate(config: Config, reads: Sequence[tuple[int, State | None]], now: float, count: float,
             reserve: bool, phases: Sequence[float] = (0.0, 0.0)) -> Decision:
    """Decide a request over one shard or two (power of two choices, then splitting across both).

    ``config`` is the whole limit (it is divided per shard here); ``reads`` are
    the shards read, with their stored state or None.
    """
    cfg = shard_config(config)
    if len(reads) == 1:
        (s, st), = reads
        c = calculate_rate_limit(st, cfg, now, count, phases[0])
        if allowed(c.value, cfg, reserve):
            return Decision(True, c.retry_after, c.value, {s: State(c.value, c.ts)}, (s,))
        return Decision(False, c.retry_after, c.value, {}, (s,))
    if len(reads) != 2:
        raise ValueError("evaluate reads one shard or two")
    (s1, st1), (s2, st2) = reads
    c1 = calculate_rate_limit(st1, cfg, now, count, phases[0])
    c2 = calculate_rate_limit(st2, cfg, now, count, phases[1])
    ok1, ok2 = allowed(c1.value, cfg, reserve), allowed(c2.value, cfg, reserve)
    if ok1 and (not ok2 or c1.value >= c2.value):
        return Decision(True, c1.retry_after, c1.value, {s1: State(c1.value, c1.ts)}, (s1,))
    if ok2:
        return Decision(True, c2.retry_after, c2.value, {s2: State(c2.value, c2.ts)}, (s2,))
    # Neither alone: split the count so that both shards end with the same value.
    r1 = calculate_rate_limit(st1, cfg, now, 0.0, phases[0]).value
    r2 = calculate_rate_limit(st2, cfg, now, 0.0, phases[1]).value
    target = (r1 + r2 - count) / 2
    d1 = calculate_rate_limit(st1, cfg, now, r1 - target, phases[0])
    d2 = calculate_rate_limit(st2, cfg, now, r2 - target, phases[1])
    retries = [r for r in (d1.retry_after, d2.retry_after) if r is not None]
    retry = max(retries) if retries else None
    remaining = min(d1.value, d2.value)
    if allowed(d1.value, cfg, reserve) and allowed(d2.value, cfg, reserve):
        return Decision(True, retry, remaining, {s1: State(d1.value, d1.ts), s2: State(d2.value, d2.ts)}, (s1, s2))
    return Decision(False, retry, remaining, {}, (s1, s2))


def sample_value(config: Config, reads: Sequence[tuple[int, State | None]]) -> tuple[int, Calculated]:
    """``get_value``: project each sampled shard (missing = full at ts 0) to the latest ts; the fullest wins."""
    cfg = shard_config(config)
    states = [(s, st if st is not None else State(cfg.max, 0.0)) for s, st in reads]
    latest = max(st.ts for _, st in states)
    best: tuple[int, Calculated] | None = None
    for s, st in states:
        c = calculate_rate_limit(st, cfg, latest, 0.0)
        if best is None or c.value > best[1].value:
            best = (s, c)
    assert best is not None
    return best


def fold(state: State | None, config: Config, pending: Sequence[tuple[float, float]],
         phase: float = 0.0) -> State | None:
    """Apply queued consumption ``(ts, count)`` in time order; the single-writer step of lazy limits.

    Consumption is forced (it was already granted), so the value may go below
    0: the debt is repaid before later requests succeed.  A queued entry older
    than the state is applied at the state's time, never earlier (which could
    only refill less, never more).
    """
    cur = state
    for ts, count in sorted(pending):
        at = ts if cur is None else max(ts, cur.ts)
        c = calculate_rate_limit(cur, config, at, count, phase)
        cur = State(c.value, c.ts)
    return cur
