"""Contention without failures: a mutation that conflicts waits its turn in the retry lane.

Eight clients hammer two rows (and, separately, move amounts between two
accounts) through a real daemon; not one call may fail, every acknowledged
call must have happened exactly once, and the daemon must show that conflicts
did happen (so the test exercised the lane, not luck).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.testing import RunningDaemon

APP = Path(__file__).parent / "apps" / "hot"
CLIENTS = 8
CALLS = 30


@pytest.fixture(scope="module")
def daemon(module_daemon_for: Callable[..., RunningDaemon]) -> RunningDaemon:
    return module_daemon_for(APP)


def _hammer(daemon: RunningDaemon, call: Callable[[object, int, int], object]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(CLIENTS)

    def run(i: int) -> None:
        try:
            with daemon.client() as c:
                start.wait()
                for k in range(CALLS):
                    call(c, i, k)
        except BaseException as exc:  # every failed call is reported
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not any(t.is_alive() for t in threads), "a client never finished"
    return errors


def test_eight_clients_on_two_rows_never_fail(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        c.mutation("seed", names=["a", "b"], n=0)
    stats_before = daemon.status()["stats"]

    def bump(c: object, i: int, k: int) -> object:
        return c.mutation("bump", name="ab"[(i + k) % 2])  # type: ignore[attr-defined]

    errors = _hammer(daemon, bump)
    assert errors == []  # not one call failed
    with daemon.client() as c:
        counts = c.query("counts")
    assert counts["a"] + counts["b"] == CLIENTS * CALLS  # each acknowledged bump exactly once
    assert counts["a"] == counts["b"] == CLIENTS * CALLS // 2
    stats = daemon.status()["stats"]
    assert stats["conflict_retries"] > stats_before["conflict_retries"]  # the lane was used


def test_eight_clients_moving_money_never_fail_and_conserve_it(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        c.mutation("seed", names=["x", "y"], n=1000)

    def move(c: object, i: int, k: int) -> object:
        src, dst = ("x", "y") if (i + k) % 2 else ("y", "x")
        return c.mutation("move", src=src, dst=dst, amount=1 + i)  # type: ignore[attr-defined]

    errors = _hammer(daemon, move)
    assert errors == []
    with daemon.client() as c:
        counts = c.query("counts")
    assert counts["x"] + counts["y"] == 2000  # conserved
    net = sum((1 + i) * (1 if (i + k) % 2 == 0 else -1) for i in range(CLIENTS) for k in range(CALLS))
    assert counts["x"] == 1000 + net  # every move applied exactly once, in some serial order


# --- the committer's reservation, without a daemon ----------------------------------------------


def test_a_reservation_bounces_writers_into_it_but_not_its_owner_nor_others(storage, committer) -> None:  # type: ignore[no-untyped-def]
    import time as _time

    from runtime.errors import ConflictError
    from runtime.transactions import Transaction

    def txn() -> Transaction:
        return Transaction(storage, now=_time.time())

    with txn() as t:
        hot, cold = t.insert("", "t", {"k": 1}), t.insert("", "t", {"k": 2})
        committer.commit(t.prepare())
    owner = object()
    with txn() as reader:
        reader.get("", hot)
        committer.reserve(owner, reader.reads.merged(reader.reads))
    try:
        with txn() as w:  # a fresh writer of the reserved row is bounced ...
            w.patch("", hot, {"k": 10})
            with pytest.raises(ConflictError, match="retry lane"):
                committer.commit(w.prepare())
        with txn() as w:  # ... one of another row is not ...
            w.patch("", cold, {"k": 20})
            committer.commit(w.prepare())
        with txn() as w:  # ... and the owner commits into its own reservation
            w.patch("", hot, {"k": 11})
            prepared = w.prepare()
            prepared.lane = owner
            committer.commit(prepared)
    finally:
        committer.release(owner)
    with txn() as w:  # released: writers of the row commit again
        w.patch("", hot, {"k": 12})
        committer.commit(w.prepare())
    assert committer.bounced == 1


def test_a_mutation_that_writes_nothing_makes_no_commit(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        c.mutation("seed", names=["quiet"], n=7)
        before = daemon.status()
        assert c.mutation("peek", name="quiet") == 7  # a client mutation carries (session, request id)
        assert c.mutation("peek", name="quiet") == 7
        after = daemon.status()
        assert after["last_commit_ts"] == before["last_commit_ts"]  # no idempotency record, no fsync
        assert after["stats"]["commit_rounds"] == before["stats"]["commit_rounds"]
        assert c.mutation("bump", name="quiet") == 8  # one that writes still commits (with its record)
        assert daemon.status()["last_commit_ts"] > after["last_commit_ts"]


def test_an_older_reservation_bounces_a_younger_holder_but_not_the_reverse(storage, committer) -> None:  # type: ignore[no-untyped-def]
    import time as _time

    from runtime.errors import ConflictError
    from runtime.transactions import Transaction

    with Transaction(storage, now=_time.time()) as t:
        row = t.insert("", "t", {"k": 1})
        committer.commit(t.prepare())
    old, young = object(), object()
    with Transaction(storage, now=_time.time()) as reader:
        reader.get("", row)
        committer.reserve(old, reader.reads.merged(reader.reads), ticket=1)
        committer.reserve(young, reader.reads.merged(reader.reads), ticket=2)
    try:
        with Transaction(storage, now=_time.time()) as w:  # the younger holder writes the row: bounced
            w.patch("", row, {"k": 2})
            prepared = w.prepare()
            prepared.lane = young
            with pytest.raises(ConflictError, match="retry lane") as err:
                committer.commit(prepared)
            assert err.value.lane_key[0] == storage.catalog.table("", "t").indexes["by_id"].number  # type: ignore[attr-defined]
        with Transaction(storage, now=_time.time()) as w:  # the older one commits over the younger's reservation
            w.patch("", row, {"k": 3})
            prepared = w.prepare()
            prepared.lane = old
            committer.commit(prepared)
    finally:
        committer.release(old)
        committer.release(young)
    assert committer.reservations == 0


def test_mutations_that_conflicted_on_different_keys_hold_their_lanes_side_by_side(storage, committer) -> None:  # type: ignore[no-untyped-def]
    """Two mutations each conflict on their own row: both re-run in their lanes at once (with one lane per
    daemon the second would wait for the first, and this test would time out)."""
    import asyncio
    import time as _time

    from runtime.coordinator.clock import Clock
    from runtime.coordinator.kernel.runner import TransactionRunner
    from runtime.limits import Limits
    from runtime.transactions import Transaction

    with Transaction(storage, now=_time.time()) as t:
        rows = [t.insert("", "t", {"k": 1}), t.insert("", "t", {"k": 2})]
        committer.commit(t.prepare())
    runner = TransactionRunner(storage, committer, Limits(), Clock(False, 0.0), {"conflict_retries": 0,
                                                                                  "deploy_retries": 0})

    async def scenario() -> list[int]:
        read = [asyncio.Event(), asyncio.Event()]
        retried = [asyncio.Event(), asyncio.Event()]
        finish, go = asyncio.Event(), asyncio.Event()
        attempts = [0, 0]

        def body(i: int):  # type: ignore[no-untyped-def]
            async def run(ex):  # type: ignore[no-untyped-def]
                attempts[i] += 1
                doc = ex.txn.get("", rows[i])
                if attempts[i] == 1:
                    read[i].set()
                    await go.wait()  # until a competing commit has changed the row it read
                else:
                    retried[i].set()
                    await finish.wait()  # hold the lane until both are in theirs
                ex.txn.patch("", rows[i], {"k": doc["k"] + 10})
                return attempts[i]
            return run

        bodies = [body(0), body(1)]
        tasks = [asyncio.create_task(runner.run("mutation", b)) for b in bodies]
        await asyncio.gather(read[0].wait(), read[1].wait())
        for i in range(2):  # a competing commit to each row, after both first attempts read it
            with Transaction(storage, now=_time.time()) as w:
                w.patch("", rows[i], {"k": 100 + i})
                await committer.commit_async(w.prepare())
        go.set()
        await asyncio.wait_for(asyncio.gather(retried[0].wait(), retried[1].wait()), 30)
        held = len(runner.lanes), committer.reservations
        finish.set()
        results = await asyncio.gather(*tasks)
        assert held == (2, 2)
        return [r[0] for r in results]

    assert asyncio.run(scenario()) == [2, 2]
    assert runner.lanes == {} and committer.reservations == 0
    with Transaction(storage, now=_time.time()) as r:
        assert [r.get("", i)["k"] for i in rows] == [110, 111]  # type: ignore[index]
