"""The rate_limiter component through a real daemon (tests/apps/counters, mounted twice).

Time is the daemon's real clock: limits are either long (an hour, so time
hardly moves during a test) or short (0.1-0.25 s, with at most a few short
sleeps per test).  The exact arithmetic is tested with an explicit clock in
test_rate_limiter_algorithm.py.
"""

import threading
import time
from pathlib import Path

import pytest

from runtime.errors import ComponentError, ConflictError, ValidationError
from runtime.testing import RunningDaemon, wait_for

APP = Path(__file__).parent / "apps" / "counters" / "app.py"


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:
    return module_daemon_for(APP)


def _limit(client, name: str, which: str = "a", **kw):
    return client.mutation("rl_limit", which=which, name=name, **kw)


def test_token_bucket_allows_the_burst_then_refuses_with_retry_after(client) -> None:
    results = [_limit(client, "burst", key="tb") for _ in range(4)]
    assert [r["ok"] for r in results] == [True, True, True, False]
    assert results[0]["remaining"] == 2.0 and results[0]["retry_after"] is None
    # 2 per minute: the missing token takes (almost) 30 s
    assert 29.0 < results[3]["retry_after"] <= 30.0


def test_a_refusal_writes_nothing(client) -> None:
    for _ in range(3):
        _limit(client, "burst", key="nowrite")
    before = client.query("rl_value", which="a", name="burst", key="nowrite")
    assert not _limit(client, "burst", key="nowrite")["ok"]
    after = client.query("rl_value", which="a", name="burst", key="nowrite")
    assert after["ts"] == before["ts"]


def test_check_consumes_nothing(client) -> None:
    for _ in range(5):
        assert client.query("rl_check", which="a", name="burst", key="chk")["ok"]
    assert [_limit(client, "burst", key="chk")["ok"] for _ in range(4)] == [True, True, True, False]
    assert client.query("rl_check", which="a", name="burst", key="chk")["ok"] is False


def test_keys_and_mounts_are_separate(client) -> None:
    assert _limit(client, "slow", key="k1")["ok"]
    assert not _limit(client, "slow", key="k1")["ok"]
    assert _limit(client, "slow", key="k2")["ok"]
    assert _limit(client, "slow", key="k1", which="b")["ok"]  # the other mount has its own data


def test_fixed_window_with_random_phase_reports_its_window_start(client) -> None:
    assert [_limit(client, "window", key="fw")["ok"] for _ in range(4)] == [True, True, True, False]
    value = client.query("rl_value", which="a", name="window", key="fw")
    start = value["config"]["start"]
    assert start is not None and 0 <= time.time() - start < 3600 + 5  # a random phase within the hour
    assert value["value"] == 0.0 and value["ts"] == start


def test_fixed_window_refills_at_the_next_window(client) -> None:
    results = [_limit(client, "window_fast", key="fwf") for _ in range(5)]
    refused = next(r for r in results if not r["ok"])  # 2 per 0.25 s window: 5 quick calls meet a refusal
    assert sum(r["ok"] for r in results[:3]) >= 2
    assert 0 < refused["retry_after"] <= 0.25
    # On a loaded machine the quick calls may span two windows: take the last refusal, with no call after it.
    last = results[-1]
    for _ in range(20):
        if not last["ok"]:
            break
        last = _limit(client, "window_fast", key="fwf")
    assert not last["ok"] and 0 < last["retry_after"] <= 0.25
    time.sleep(last["retry_after"] + 0.02)
    assert _limit(client, "window_fast", key="fwf")["ok"]


def test_token_bucket_refills_continuously(client) -> None:
    assert [_limit(client, "fast", key="tf")["ok"] for _ in range(2)] == [True, True]
    r = _limit(client, "fast", key="tf")
    for _ in range(20):  # on a loaded machine tokens refill between calls: call until one is refused
        if not r["ok"]:
            break
        r = _limit(client, "fast", key="tf")
    assert not r["ok"] and 0 < r["retry_after"] <= 0.1
    time.sleep(r["retry_after"] + 0.02)
    assert _limit(client, "fast", key="tf")["ok"]


def test_reservations_go_into_debt_up_to_max_reserved(client) -> None:
    assert _limit(client, "reserved", key="rv", count=10)["ok"]
    r = _limit(client, "reserved", key="rv", count=15, reserve=True)
    assert r["ok"] and r["remaining"] == pytest.approx(-15, abs=0.01)
    assert 5390 < r["retry_after"] <= 5400  # 15 tokens at 10 per hour
    assert not _limit(client, "reserved", key="rv", count=6, reserve=True)["ok"]  # -21 < -20
    assert not _limit(client, "reserved", key="rv", count=1)["ok"]


def test_throws_raises_a_rate_limited_component_error(client) -> None:
    assert client.mutation("rl_catch", which="a", name="slow") == {"caught": False, "data": None}
    caught = client.mutation("rl_catch", which="a", name="slow")
    assert caught["caught"] is True
    assert caught["data"]["kind"] == "RateLimited" and caught["data"]["name"] == "slow"
    assert 3590 < caught["data"]["retry_after"] <= 3600
    with pytest.raises(ComponentError) as info:
        _limit(client, "slow", throws=True)
    assert info.value.data["kind"] == "RateLimited"


def test_throws_with_a_successful_reservation_still_raises(client) -> None:
    # uncaught: the whole mutation rolls back, the reservation with it
    with pytest.raises(ComponentError) as info:
        _limit(client, "reserved", which="b", key="thr", count=12, reserve=True, throws=True)
    assert info.value.data["retry_after"] == pytest.approx(720, abs=5)
    assert client.query("rl_check", which="b", name="reserved", key="thr", count=10)["ok"]
    # caught inside the mutation: the reservation was made and stays
    caught = client.mutation("rl_catch", which="b", name="reserved", count=12, reserve=True)
    assert caught["caught"] and caught["data"]["retry_after"] == pytest.approx(720, abs=5)
    assert not client.query("rl_check", which="b", name="reserved", count=1)["ok"]


def test_counts_above_capacity_are_refused_with_a_clear_error(client) -> None:
    with pytest.raises(ValidationError, match=r"Rate limit 'burst' count 4 exceeds 3"):
        _limit(client, "burst", count=4)
    with pytest.raises(ValidationError, match=r"exceeds 10 .*4 shards"):
        _limit(client, "sharded", count=11)


def test_consumption_rolls_back_with_a_failing_caller(client) -> None:
    with pytest.raises(ComponentError):
        client.mutation("rl_limit_then_fail", which="b", name="slow")
    assert _limit(client, "slow", which="b")["ok"]  # the token was never spent


def test_reset_starts_the_key_over(client) -> None:
    assert _limit(client, "slow", key="rs")["ok"]
    assert not _limit(client, "slow", key="rs")["ok"]
    assert client.mutation("rl_reset", which="a", name="slow", key="rs") == 1
    assert _limit(client, "slow", key="rs")["ok"]


def test_retry_after_helper(client) -> None:
    assert client.query("rl_retry_after", which="b", name="window") == 0.0
    for _ in range(3):
        _limit(client, "window", which="b")
    assert 0 < client.query("rl_retry_after", which="b", name="window") <= 3600


def test_sharded_limits_never_exceed_the_total(client) -> None:
    oks = [_limit(client, "sharded", key="sh")["ok"] for _ in range(30)]
    assert 12 <= sum(oks) <= 20  # 20 per hour over 4 shards; sampling may refuse a little early
    oks = [_limit(client, "sharded_window", key="sw", count=4)["ok"] for _ in range(14)]
    assert 5 <= sum(oks) <= 10  # 40 per window over 10 shards, 4 at a time


def test_sharded_value_samples_shards(client) -> None:
    for _ in range(4):
        _limit(client, "sharded", key="sv")
    v = client.query("rl_value", which="a", name="sharded", key="sv", sample_shards=4)
    assert 0 <= v["shard"] < 4 and v["value"] <= 5.0  # the fullest of the 4 shards (5 each when full)


def test_lazy_limit_queues_consumption_and_folds_it_later(client) -> None:
    # fold_every is huge: no call folds inline, so enforcement waits for a fold
    assert all(_limit(client, "lazy", key="lz")["ok"] for _ in range(7))
    assert client.query("rl_check", which="a", name="lazy", key="lz")["ok"] is False  # check sees the queue
    assert client.mutation("rl_fold", which="a", name="lazy", key="lz") == 7
    value = client.query("rl_value", which="a", name="lazy", key="lz")
    assert value["value"] == pytest.approx(-2, abs=0.01)  # 5 - 7: the debt is repaid before new grants
    assert not _limit(client, "lazy", key="lz")["ok"]
    assert client.mutation("rl_fold", which="a", name="lazy", key="lz") == 0


def test_lazy_limit_folding_on_every_call_is_exact(client) -> None:
    assert [_limit(client, "lazy_exact", key="le")["ok"] for _ in range(6)] == [True] * 5 + [False]


def test_inline_config(client) -> None:
    assert client.mutation("rl_inline", which="a", name="adhoc", rate=2, period=3600)["ok"]
    assert client.mutation("rl_inline", which="a", name="adhoc", rate=2, period=3600, count=1.5)["ok"] is False


def test_clear_all_pages_through_one_mount_only(client) -> None:
    for i in range(9):
        _limit(client, "slow", which="b", key=f"cl{i}")
    _limit(client, "slow", which="a", key="keep")
    deleted, pages = 0, 0
    while True:
        res = client.mutation("rl_clear_all", which="b", page_size=4)
        deleted += res["deleted"]
        pages += 1
        if not res["more"]:
            break
    assert deleted >= 9 and pages >= 3
    assert all(_limit(client, "slow", which="b", key=f"cl{i}")["ok"] for i in range(9))
    assert not _limit(client, "slow", which="a", key="keep")["ok"]  # mount a was not cleared


def test_clear_all_reschedules_itself_until_done(client) -> None:
    for i in range(7):
        assert _limit(client, "slow", key=f"rc{i}")["ok"]
    first = client.mutation("rl_clear_all", which="a", page_size=2, reschedule=True)
    assert first == {"deleted": 2, "more": True}
    wait_for(lambda: all(client.query("rl_check", which="a", name="slow", key=f"rc{i}")["ok"] for i in range(7)),
             timeout=20, what="the scheduled clear_all pages")
    assert client.mutation("rl_clear_all", which="a") == {"deleted": 0, "more": False}


def test_concurrent_callers_never_over_consume(daemon: RunningDaemon) -> None:
    oks: list[bool] = []

    def run() -> None:
        with daemon.client() as c:
            for _ in range(4):
                try:
                    oks.append(c.mutation("rl_limit", which="a", name="window", key="conc")["ok"])
                except ConflictError:
                    oks.append(False)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(oks) == 24 and sum(oks) == 3
