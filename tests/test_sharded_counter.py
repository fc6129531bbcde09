"""The sharded_counter component: its pure arithmetic, then every feature through a real daemon.

The daemon serves tests/apps/counters, which mounts the component twice
(``counter_a`` by registered name, float mode; ``counter_b`` by import path,
integer mode) and calls it from the app mount.
"""

import random
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.sharded_counter import shards as alg
from runtime.errors import ComponentError, ConflictError, ValidationError
from runtime.testing import RunningDaemon

APP = Path(__file__).parent / "apps" / "counters" / "app.py"

# --- pure arithmetic ---------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(total=st.integers(-10**12, 10**12), shards=st.integers(1, 64))
def test_integer_rebalance_is_exact_and_even(total: int, shards: int) -> None:
    values = alg.rebalanced(total, shards, integer=True)
    assert len(values) == shards and sum(values) == total
    assert all(isinstance(v, int) for v in values) and max(values) - min(values) <= 1


def test_float_rebalance_gives_every_shard_total_over_n() -> None:
    assert alg.rebalanced(10, 4, integer=False) == [2.5] * 4
    assert alg.rebalanced(12, 4, integer=False) == [3, 3, 3, 3]
    with pytest.raises(ValueError, match="integer mode"):
        alg.rebalanced(1.5, 2, integer=True)


def test_exact_sum_keeps_ints_exact_and_rounds_floats_correctly() -> None:
    assert alg.exact_sum([2**62, 2**62, -2**62]) == 2**62
    assert alg.exact_sum([0.1] * 10) == 1.0  # left-to-right addition gives 0.9999999999999999
    assert alg.exact_sum([]) == 0


@settings(max_examples=200, deadline=None)
@given(shards=st.integers(1, 40), k=st.integers(-3, 60), seed=st.integers(0, 2**32))
def test_sample_shards_are_distinct_and_in_range(shards: int, k: int, seed: int) -> None:
    picked = alg.sample_shards(random.Random(seed), shards, k)
    assert len(picked) == min(max(1, k), shards) == len(set(picked))
    assert all(0 <= s < shards for s in picked)


def test_sample_shards_is_uniform_enough() -> None:
    rng = random.Random(7)
    hits = [0] * 5
    for _ in range(5000):
        for s in alg.sample_shards(rng, 5, 2):
            hits[s] += 1
    assert all(1700 < h < 2300 for h in hits)  # 2000 expected each


def test_estimate_scales_by_the_shards_actually_read() -> None:
    assert alg.estimate([3, 5], 8, integer=False) == 32.0
    assert alg.estimate([3, 5], 2, integer=False) == 8  # all shards read: exact
    assert alg.estimate([1, 2, 2], 4, integer=True) == 7  # 6.67 rounds
    with pytest.raises(ValueError):
        alg.estimate([], 4, integer=False)


def test_counts_and_shard_numbers_are_checked() -> None:
    with pytest.raises(ValueError, match="integer mode"):
        alg.check_count(1.0, integer=True)
    with pytest.raises(ValueError, match="number"):
        alg.check_count(True, integer=False)
    with pytest.raises(ValueError, match="finite"):
        alg.check_count(float("nan"), integer=False)
    with pytest.raises(ValueError, match="positive int"):
        alg.check_shards(0)


# --- through a real daemon -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:
    return module_daemon_for(APP)


def test_add_inc_dec_subtract_and_count_through_a_for_key_view(client) -> None:
    assert client.mutation("c_ops", which="b", name="ops") == [1, 2, 1, -1, 4]
    assert client.query("c_count", which="b", name="ops") == 4


def test_two_mounts_keep_fully_separate_data(client) -> None:
    client.mutation("c_add", which="a", name="sep", count=3)
    client.mutation("c_add", which="b", name="sep", count=40)
    assert client.query("c_count", which="a", name="sep") == 3
    assert client.query("c_count", which="b", name="sep") == 40
    client.mutation("c_reset", which="a", name="sep")
    assert client.query("c_count", which="a", name="sep") == 0
    assert client.query("c_count", which="b", name="sep") == 40


def test_sticky_shard_within_one_transaction(client) -> None:
    used = client.mutation("c_add_many", which="b", name="sticky", times=6)
    assert len(set(used)) == 1
    assert client.query("c_shards", which="b", name="sticky") == {str(used[0]): 6}


def test_separate_transactions_spread_over_the_keys_shard_count(client) -> None:
    hot = {client.mutation("c_add", which="a", name="hot") for _ in range(40)}
    other = {client.mutation("c_add", which="a", name="cold") for _ in range(40)}
    assert hot <= set(range(4)) and len(hot) >= 3  # "hot" is configured with 4 shards
    assert other <= set(range(8)) and len(other) >= 5  # default_shards=8
    assert client.query("c_count", which="a", name="hot") == 40


def test_explicit_shard_and_component_level_shard_count(client) -> None:
    assert client.mutation("c_add", which="b", name="exp", count=5, shard=11) == 11
    assert client.query("c_shards", which="b", name="exp") == {"11": 5}
    used = {client.mutation("c_add_shards", which="b", name="exp2", count=1, shards=2) for _ in range(20)}
    assert used == {0, 1}


def test_rebalance_spreads_exactly_and_deletes_shards_beyond_the_count(client) -> None:
    client.mutation("c_add", which="b", name="reb", count=30, shard=20)  # beyond the 16 shards
    client.mutation("c_add", which="b", name="reb", count=5, shard=3)
    assert client.query("c_count", which="b", name="reb") == 35  # stale shards still count
    client.mutation("c_rebalance", which="b", name="reb")
    shards = client.query("c_shards", which="b", name="reb")
    assert sorted(int(s) for s in shards) == list(range(16))
    assert sum(shards.values()) == 35 and set(shards.values()) == {2, 3}
    assert all(isinstance(v, int) for v in shards.values())


def test_estimate_count_reads_a_sample_and_scales_it(client) -> None:
    client.mutation("c_add", which="b", name="est", count=32, shard=0)
    client.mutation("c_rebalance", which="b", name="est")  # 2 in each of 16 shards
    assert client.query("c_estimate", which="b", name="est", read_from_shards=1) == 32
    client.mutation("c_add", which="b", name="est", count=16, shard=5)
    assert client.query("c_estimate", which="b", name="est", read_from_shards=100) == 48  # all read: exact
    # 8 of 16 shards: shard 5 (18) is in half of the samples -> (8*2 + 16) * 16/8 = 64, else 8*2 * 2 = 32
    estimates = {client.query("c_estimate", which="b", name="est", read_from_shards=8, salt=i)
                 for i in range(40)}
    assert estimates == {32, 64}


def test_float_mode_accepts_fractions_integer_mode_refuses_them(client) -> None:
    client.mutation("c_add", which="a", name="frac", count=0.25)
    client.mutation("c_add", which="a", name="frac", count=0.5)
    assert client.query("c_count", which="a", name="frac") == 0.75
    with pytest.raises(ValidationError, match="integer mode"):
        client.mutation("c_add", which="b", name="frac", count=0.5)
    assert client.query("c_count", which="b", name="frac") == 0


def test_reset_deletes_every_shard(client) -> None:
    for _ in range(5):
        client.mutation("c_add", which="a", name="gone", count=2)
    client.mutation("c_reset", which="a", name="gone")
    assert client.query("c_count", which="a", name="gone") == 0
    assert client.query("c_shards", which="a", name="gone") == {}


def test_an_add_rolls_back_with_its_caller(client) -> None:
    client.mutation("c_add", which="b", name="rb", count=1)
    with pytest.raises(ComponentError) as info:
        client.mutation("c_add_then_fail", which="b", name="rb")
    assert info.value.data == {"code": "after_add"}
    assert client.query("c_count", which="b", name="rb") == 1


def test_trigger_keeps_counts_in_step_with_inserts_deletes_and_moves(client) -> None:
    a1 = client.mutation("add_post", author="ann", title="one")
    client.mutation("add_post", author="ann", title="two")
    b1 = client.mutation("add_post", author="bob", title="three")
    client.mutation("move_post", post_id=a1, author="bob")
    assert client.mutation("delete_post", post_id=b1) is True
    assert client.mutation("delete_post", post_id=b1) is False
    counts = client.query("post_counts")
    assert counts["total"] == counts["truth_total"] == 2
    assert counts["ann"] == counts["truth_ann"] == 1
    assert counts["bob"] == counts["truth_bob"] == 1


def test_concurrent_increments_never_lose_updates(daemon: RunningDaemon) -> None:
    done: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        with daemon.client() as c:
            for _ in range(10):
                try:
                    c.mutation("c_add", which="a", name="race")
                    done.append(1)
                except ConflictError:
                    pass  # lost every retry: it applied nothing, which the count below checks
                except BaseException as exc:  # reported below
                    errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(done) >= 50
    with daemon.client() as c:
        assert c.query("c_count", which="a", name="race") == len(done)
