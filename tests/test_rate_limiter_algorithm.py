"""The rate limiter's pure arithmetic (components/rate_limiter/algorithm.py) with an explicit clock.

Every formula of the reference is checked on exact numbers, then Hypothesis
checks the properties over arbitrary call sequences: the upper bound is never
exceeded (also sharded), refill is monotone, ``retry_after`` is when the
request succeeds, reservations stay within ``max_reserved``, splitting across
two shards consumes exactly the count.
"""

import math
import random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from components.rate_limiter import HOUR, MINUTE, SECOND, fixed_window, token_bucket
from components.rate_limiter import algorithm as alg
from components.rate_limiter.algorithm import State, calculate_rate_limit, evaluate

# --- token bucket ------------------------------------------------------------------------------------------------


def test_token_bucket_missing_state_starts_full_at_now() -> None:
    c = calculate_rate_limit(None, token_bucket(10, MINUTE, capacity=20), now=1000.0, count=3)
    assert (c.value, c.ts, c.retry_after) == (17.0, 1000.0, None)


def test_token_bucket_refills_at_rate_over_period() -> None:
    cfg = token_bucket(10, MINUTE, capacity=20)  # r = 1/6 token per second
    c = calculate_rate_limit(State(1.0, 100.0), cfg, now=130.0, count=2)
    assert c.value == pytest.approx(1 + 30 / 6 - 2) and c.ts == 130.0 and c.retry_after is None


def test_token_bucket_refill_is_capped_at_capacity_then_count_taken() -> None:
    cfg = token_bucket(10, MINUTE, capacity=4)
    c = calculate_rate_limit(State(3.0, 0.0), cfg, now=10_000.0, count=1)
    assert c.value == 3.0  # min(3 + lots, 4) - 1


def test_capacity_defaults_to_rate() -> None:
    assert calculate_rate_limit(None, token_bucket(7, HOUR), now=5.0).value == 7.0


def test_token_bucket_retry_after_is_minus_value_over_rate() -> None:
    cfg = token_bucket(2, SECOND, capacity=2)  # r = 2/s
    c = calculate_rate_limit(State(0.5, 10.0), cfg, now=10.0, count=2)
    assert c.value == -1.5 and c.retry_after == 0.75


# --- fixed window ------------------------------------------------------------------------------------------------


def test_fixed_window_missing_state_with_start_uses_it() -> None:
    cfg = fixed_window(5, 10.0, start=0.0)
    c = calculate_rate_limit(None, cfg, now=37.0, count=1)
    # starts full at ts=start; 3 whole windows have passed, but the value is capped at max
    assert (c.value, c.ts, c.window_start) == (4.0, 30.0, 30.0)


def test_fixed_window_missing_state_without_start_gets_a_random_phase_in_whole_ms() -> None:
    cfg = fixed_window(5, 10.0)
    st0 = alg.initial_state(cfg, now=100.0, phase=0.123456)
    assert st0 == State(5.0, 100.0 - 1.234)  # floor(0.123456 * 10 s) in ms
    assert alg.initial_state(cfg, now=100.0, phase=0.0).ts == 100.0


def test_fixed_window_adds_rate_per_whole_window_and_moves_ts_to_the_window_start() -> None:
    cfg = fixed_window(3, 10.0, capacity=10)
    c = calculate_rate_limit(State(1.0, 100.0), cfg, now=125.0, count=2)
    assert (c.value, c.ts) == (1 + 3 * 2 - 2, 120.0)
    same = calculate_rate_limit(State(1.0, 100.0), cfg, now=109.999, count=0)
    assert (same.value, same.ts) == (1.0, 100.0)  # no whole window yet


def test_fixed_window_retry_after_is_the_start_of_the_window_that_covers_the_debt() -> None:
    cfg = fixed_window(3, 10.0)
    c = calculate_rate_limit(State(0.0, 100.0), cfg, now=104.0, count=4)
    # value -4; ceil(4/3) = 2 windows: 100 + 20 - 104
    assert c.value == -4.0 and c.retry_after == 16.0


# --- decisions ---------------------------------------------------------------------------------------------------


def test_refusal_without_reserve_writes_nothing_and_says_when() -> None:
    d = evaluate(token_bucket(1, SECOND), [(0, State(0.0, 5.0))], now=5.0, count=1, reserve=False)
    assert not d.ok and d.writes == {} and d.retry_after == 1.0


def test_reserve_without_max_reserved_succeeds_with_retry_after_and_writes_the_debt() -> None:
    d = evaluate(token_bucket(1, SECOND), [(0, State(0.0, 5.0))], now=5.0, count=3, reserve=True)
    assert d.ok and d.retry_after == 3.0 and d.writes == {0: State(-3.0, 5.0)}


def test_reserve_beyond_max_reserved_is_refused() -> None:
    cfg = token_bucket(1, SECOND, max_reserved=2)
    assert evaluate(cfg, [(0, State(0.0, 5.0))], 5.0, 2, True).ok
    d = evaluate(cfg, [(0, State(0.0, 5.0))], 5.0, 2.5, True)
    assert not d.ok and d.writes == {} and d.retry_after == 2.5


def test_success_without_debt_has_no_retry_after_and_reports_remaining() -> None:
    d = evaluate(token_bucket(10, MINUTE), [(3, None)], now=1.0, count=4, reserve=False)
    assert d.ok and d.retry_after is None and d.remaining == 6.0 and d.writes == {3: State(6.0, 1.0)}


# --- request validation --------------------------------------------------------------------------------------------


def test_count_above_capacity_is_an_error_naming_the_limit() -> None:
    with pytest.raises(alg.RateLimitRequestError, match=r"Rate limit 'send' count 11 exceeds 10"):
        alg.validate_request("send", token_bucket(10, MINUTE), 11, reserve=False)
    alg.validate_request("send", token_bucket(10, MINUTE), 10, reserve=False)


def test_sharded_count_limit_is_capacity_over_half_the_shards() -> None:
    cfg = token_bucket(100, MINUTE, shards=10)  # one request may use 2 shards of 10 each
    alg.validate_request("s", cfg, 20, False)
    with pytest.raises(alg.RateLimitRequestError, match="exceeds 20 .*10 shards"):
        alg.validate_request("s", cfg, 21, False)


def test_two_shards_use_one_shard_so_half_the_capacity() -> None:
    with pytest.raises(alg.RateLimitRequestError, match="exceeds 5"):
        alg.validate_request("s", token_bucket(10, MINUTE, shards=2), 6, False)


def test_reserve_limits_the_count_to_capacity_plus_max_reserved_only_when_set() -> None:
    alg.validate_request("r", token_bucket(10, MINUTE), 1e9, True)  # unbounded reservation
    cfg = token_bucket(10, MINUTE, max_reserved=5)
    alg.validate_request("r", cfg, 15, True)
    with pytest.raises(alg.RateLimitRequestError, match="capacity \\+ max_reserved 15"):
        alg.validate_request("r", cfg, 15.5, True)


@pytest.mark.parametrize("count", [-1, math.inf, math.nan])
def test_negative_or_non_finite_counts_are_refused(count: float) -> None:
    with pytest.raises(alg.RateLimitRequestError, match="finite number >= 0"):
        alg.validate_request("x", token_bucket(10, MINUTE), count, False)


def test_config_errors_are_clear() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="shards"):
        token_bucket(10, MINUTE, shards=0)
    with pytest.raises(ValidationError, match="period"):
        token_bucket(10, 0)
    with pytest.raises(ValidationError, match="cannot also be sharded"):
        token_bucket(10, MINUTE, shards=4, lazy=True)


# --- sharding ----------------------------------------------------------------------------------------------------


def test_shard_config_divides_rate_capacity_and_max_reserved() -> None:
    cfg = alg.shard_config(token_bucket(100, MINUTE, capacity=200, max_reserved=40, shards=4))
    assert (cfg.rate, cfg.max, cfg.max_reserved, cfg.shard_count) == (25.0, 50.0, 10.0, 1)


def test_pick_shards_is_two_distinct_shards_only_from_three_up() -> None:
    rng = random.Random(1)
    assert all(alg.pick_shards(rng, 2)[1] is None for _ in range(50))
    seen = set()
    for _ in range(500):
        a, b = alg.pick_shards(rng, 5)
        assert b is not None and a != b and 0 <= a < 5 and 0 <= b < 5
        seen.add((a, b))
    assert len(seen) == 20  # every ordered pair occurs


def test_power_of_two_choices_takes_the_shard_with_more_left() -> None:
    cfg = token_bucket(30, HOUR, shards=3)  # 10 per shard
    d = evaluate(cfg, [(0, State(4.0, 0.0)), (1, State(7.0, 0.0))], now=0.0, count=2, reserve=False)
    assert d.ok and d.writes == {1: State(5.0, 0.0)} and d.remaining == 5.0


def test_when_only_one_shard_can_serve_it_is_used() -> None:
    cfg = token_bucket(30, HOUR, shards=3)
    d = evaluate(cfg, [(0, State(1.0, 0.0)), (2, State(3.0, 0.0))], now=0.0, count=2, reserve=False)
    assert d.ok and d.writes == {2: State(1.0, 0.0)}


def test_neither_alone_splits_so_both_end_equal() -> None:
    cfg = token_bucket(30, HOUR, shards=3)
    d = evaluate(cfg, [(0, State(2.0, 0.0)), (1, State(4.0, 0.0))], now=0.0, count=5, reserve=False)
    # (2 + 4 - 5) / 2 = 0.5 left in each
    assert d.ok and d.writes == {0: State(0.5, 0.0), 1: State(0.5, 0.0)} and d.shards_used == (0, 1)


def test_split_that_still_fails_returns_the_larger_retry_after_and_writes_nothing() -> None:
    cfg = token_bucket(30, HOUR, shards=3)  # 10 per hour per shard: 1/360 per s
    d = evaluate(cfg, [(0, State(1.0, 0.0)), (1, State(2.0, 0.0))], now=0.0, count=5, reserve=False)
    assert not d.ok and d.writes == {}
    assert d.retry_after == pytest.approx(1.0 * 360)  # both end at (1 + 2 - 5)/2 = -1


def test_sample_value_projects_to_the_latest_ts_and_treats_missing_as_full() -> None:
    cfg = token_bucket(20, 100.0, shards=2)  # per shard 10 per 100 s
    shard, c = alg.sample_value(cfg, [(0, State(1.0, 50.0)), (1, State(2.0, 10.0))])
    assert shard == 1 and c.value == pytest.approx(2 + 40 / 10) and c.ts == 50.0
    shard, c = alg.sample_value(cfg, [(0, State(1.0, 50.0)), (1, None)])
    assert shard == 1 and c.value == 10.0


# --- lazy folding ------------------------------------------------------------------------------------------------


def test_fold_applies_queued_consumption_in_time_order_and_may_go_into_debt() -> None:
    cfg = token_bucket(1, SECOND, capacity=3)
    st0 = State(3.0, 0.0)
    out = alg.fold(st0, cfg, [(2.0, 3.0), (1.0, 2.0)])
    # at 1: 3 - 2 = 1; at 2: min(1 + 1, 3) - 3 = -1
    assert out == State(-1.0, 2.0)


def test_fold_never_applies_an_entry_before_the_state() -> None:
    cfg = token_bucket(1, SECOND, capacity=3)
    assert alg.fold(State(0.0, 10.0), cfg, [(5.0, 1.0)]) == State(-1.0, 10.0)


# --- properties ----------------------------------------------------------------------------------------------------

configs = st.one_of(
    st.builds(lambda r, p, c: token_bucket(r, p, capacity=c),
              st.integers(1, 50), st.sampled_from([0.5, 1.0, 10.0, 60.0]), st.none() | st.integers(1, 80)),
    st.builds(lambda r, p, c, s: fixed_window(r, p, capacity=c, start=s),
              st.integers(1, 50), st.sampled_from([0.5, 1.0, 10.0, 60.0]), st.none() | st.integers(1, 80),
              st.none() | st.just(0.0)),
)
steps = st.lists(st.tuples(st.floats(0, 30, allow_nan=False), st.floats(0, 1)), min_size=1, max_size=60)


def _bound(cfg: alg.Config, span: float) -> float:
    if isinstance(cfg, alg.TokenBucket):
        return cfg.max + cfg.rate * span / cfg.period
    return cfg.max + cfg.rate * (math.floor(span / cfg.period) + 1)


@settings(max_examples=300, deadline=None)
@given(cfg=configs, calls=steps, phase=st.floats(0, 0.999))
def test_never_exceeds_the_upper_bound_over_any_interval(cfg: alg.Config, calls: list, phase: float) -> None:
    state, now, granted = None, 1000.0, []
    for dt, frac in calls:
        now += dt
        count = frac * alg.max_count(cfg, False)
        d = evaluate(cfg, [(0, state)], now, count, False, [phase])
        if d.ok:
            state = d.writes[0]
            granted.append((now, count))
    for i in range(len(granted)):
        for j in range(i, len(granted)):
            total = sum(c for _, c in granted[i:j + 1])
            assert total <= _bound(cfg, granted[j][0] - granted[i][0]) + 1e-6


@settings(max_examples=200, deadline=None)
@given(rate=st.integers(3, 60), shards=st.integers(1, 8), calls=steps, seed=st.integers(0, 2**32))
def test_sharded_limits_never_exceed_the_upper_bound(rate: int, shards: int, calls: list, seed: int) -> None:
    cfg = token_bucket(rate * shards, MINUTE, shards=shards)
    rng = random.Random(seed)
    store: dict[int, State] = {}
    start = now = 0.0
    granted = 0.0
    for dt, frac in calls:
        now += dt
        count = frac * alg.max_count(cfg, False)
        a, b = alg.pick_shards(rng, shards)
        reads = [(a, store.get(a))] + ([(b, store.get(b))] if b is not None and a in store else [])
        d = evaluate(cfg, reads, now, count, False)
        if d.ok:
            store.update(d.writes)
            granted += count
        for s in d.writes.values():
            assert s.value >= -1e-9  # without reserve no shard goes negative
    assert granted <= cfg.max + cfg.rate * (now - start) / cfg.period + 1e-6


@settings(max_examples=300, deadline=None)
@given(cfg=configs, value=st.floats(-50, 80), ts=st.floats(0, 100), t1=st.floats(0, 500), t2=st.floats(0, 500))
def test_refill_is_monotone_in_time(cfg: alg.Config, value: float, ts: float, t1: float, t2: float) -> None:
    lo, hi = sorted((ts + t1, ts + t2))
    state = State(value, ts)
    assert calculate_rate_limit(state, cfg, lo).value <= calculate_rate_limit(state, cfg, hi).value


@settings(max_examples=300, deadline=None)
@given(cfg=configs, value=st.floats(-20, 80), age=st.floats(0, 100), frac=st.floats(0.01, 1))
def test_retry_after_is_exactly_when_the_request_succeeds(cfg: alg.Config, value: float, age: float,
                                                          frac: float) -> None:
    now = 1000.0
    state = State(min(value, cfg.max), now - age)
    count = frac * cfg.max
    c = calculate_rate_limit(state, cfg, now, count)
    assume(c.retry_after is not None)
    assert c.retry_after > 0
    later = calculate_rate_limit(state, cfg, now + c.retry_after + 1e-6, count)
    assert later.value > -1e-6  # succeeds (up to float rounding) right at now + retry_after
    if c.retry_after > 1e-3:
        earlier = calculate_rate_limit(state, cfg, now + c.retry_after - 1e-3, count)
        assert earlier.value < 0


@settings(max_examples=200, deadline=None)
@given(max_reserved=st.integers(0, 30), calls=steps)
def test_reservations_never_go_below_max_reserved(max_reserved: int, calls: list) -> None:
    cfg = token_bucket(10, MINUTE, max_reserved=max_reserved)
    state, now = None, 0.0
    for dt, frac in calls:
        now += dt
        d = evaluate(cfg, [(0, state)], now, frac * (cfg.max + max_reserved), True)
        if d.ok:
            state = d.writes[0]
            assert state.value >= -max_reserved - 1e-9
            assert (d.retry_after is not None) == (state.value < 0)


@settings(max_examples=300, deadline=None)
@given(v1=st.floats(0, 10), v2=st.floats(0, 10), frac=st.floats(0, 1), reserve=st.booleans())
def test_splitting_consumes_exactly_the_count(v1: float, v2: float, frac: float, reserve: bool) -> None:
    cfg = token_bucket(30, HOUR, shards=3)
    count = frac * 20
    d = evaluate(cfg, [(0, State(v1, 0.0)), (1, State(v2, 0.0))], 0.0, count, reserve)
    if d.ok:
        before = {0: v1, 1: v2}
        used = sum(before[s] - d.writes[s].value for s in d.writes)
        assert used == pytest.approx(count, abs=1e-9)
        if len(d.writes) == 2:
            assert d.writes[0].value == pytest.approx(d.writes[1].value)
    else:
        assert not reserve and d.writes == {}  # without max_reserved a reservation always succeeds
