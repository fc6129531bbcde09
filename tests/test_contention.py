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
