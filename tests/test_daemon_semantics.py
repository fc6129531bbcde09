"""Transactions through real processes: sub-transactions across component workers,
conflicting transfers from 8 clients, idempotent mutations, crashed and hung
workers, and kill -9 of the daemon.  One real daemon per module (plus a fresh
one for the kill -9 test), real workers, real sockets."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from runtime.errors import ComponentError, ConflictError, LimitExceeded, WorkerCrashed
from runtime.testing import RunningDaemon

APP = Path(__file__).parent / "apps" / "sem"
ENV: dict[str, str] = {}
"""The default limits (1 s of CPU per query or mutation: the worker kill below comes after 0.6 s of wall time)."""


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:
    return module_daemon_for(APP, env=ENV)


def _tags(client, prefix: str) -> dict[str, list[str]]:
    everything = client.query("all_tags")
    return {k: [t for t in v if t.startswith(prefix) or t.startswith("caught:")] for k, v in everything.items()}


def test_all_levels_commit_together(client) -> None:
    assert client.mutation("chain", tag="ok1") == "ok"
    tags = client.query("all_tags")
    assert "ok1" in tags["app"] and "ok1" in tags["mid"] and "ok1" in tags["leaf"]


def test_callee_raises_caller_catches_only_callee_writes_roll_back(client) -> None:
    # leaf raises, mid catches: mid's and the app's writes commit, leaf's do not
    assert client.mutation("chain", tag="c1", fail_leaf=True, catch_leaf=True) == "ok"
    tags = client.query("all_tags")
    assert "c1" in tags["app"]
    assert "c1" in tags["mid"] and "caught:leaf" in tags["mid"]
    assert "c1" not in tags["leaf"]


def test_uncaught_error_rolls_back_everything_and_keeps_its_data(client) -> None:
    with pytest.raises(ComponentError) as info:
        client.mutation("chain", tag="u1", fail_leaf=True)
    assert info.value.data == {"where": "leaf", "tag": "u1"}
    tags = client.query("all_tags")
    assert all("u1" not in v for v in tags.values())


def test_three_levels_mid_fails_after_leaf_succeeded_app_catches(client) -> None:
    # leaf commits into mid's frame, then mid raises: both mid's and leaf's writes roll back; the app's stay
    assert client.mutation("chain", tag="m1", fail_mid=True, catch_mid=True) == "caught"
    tags = client.query("all_tags")
    assert "m1" in tags["app"] and "caught:mid" in tags["app"]
    assert "m1" not in tags["mid"] and "m1" not in tags["leaf"]


def test_reentrant_chain_through_a_handle_does_not_deadlock(client) -> None:
    # app -> leaf (a component) -> handle back into the app, all in one transaction
    new_id = client.mutation("reentrant", tag="re1")
    assert isinstance(new_id, str)
    assert client.query("has", tag="re1/back")
    assert "re1" in client.query("own_leaf_tags")
    assert "re1" not in client.query("all_tags")["leaf"]  # mid/leaf is another instance


def test_idempotent_mutation_applies_once(client) -> None:
    before = client.query("count")
    first = client.call("add", {"tag": "idem"}, "mutation", request_id=10_001)
    again = client.call("add", {"tag": "idem"}, "mutation", request_id=10_001)
    assert first == again
    assert client.query("count") == before + 1
    other = client.call("add", {"tag": "idem"}, "mutation", request_id=10_002)
    assert other != first and client.query("count") == before + 2


def test_eight_clients_conflicting_transfers_conserve_the_total(daemon: RunningDaemon) -> None:
    names = [f"acct{i}" for i in range(3)]
    with daemon.client() as c:
        c.mutation("seed", names=names, balance=1000)
        before = c.query("bank_summary")
        retries_before = daemon.status()["stats"]["conflict_retries"]
    done = [0] * 8
    conflicts = [0] * 8
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with daemon.client() as c:
                for k in range(25):
                    src, dst = names[(i + k) % 3], names[(i + k + 1) % 3]
                    try:
                        c.mutation("transfer", src=src, dst=dst, amount=1 + (i + k) % 7)
                        done[i] += 1
                    except ConflictError:
                        conflicts[i] += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not errors, errors
    with daemon.client() as c:
        after = c.query("bank_summary")
    assert after["total"] == before["total"]  # money is conserved
    # no lost update: every acknowledged transfer moved both accounts exactly once
    assert after["moves"] - before["moves"] == 2 * sum(done)
    assert sum(conflicts) == 0  # a conflicting mutation waits its turn in the retry lane: none fails
    assert sum(done) == 200
    assert daemon.status()["stats"]["conflict_retries"] > retries_before  # conflicts happened and were re-run


def test_worker_killed_mid_mutation_fails_that_call_only(daemon: RunningDaemon, client) -> None:
    pid = daemon.worker_pid("")
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            with daemon.client() as c:
                c.mutation("write_then_sleep", tag="killed", seconds=10)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.6)
    os.kill(pid, signal.SIGKILL)  # a worker of the daemon this test started
    t.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], WorkerCrashed), outcome
    assert "killed" not in str(outcome[0].message) or "died" in outcome[0].message
    assert not client.query("has", tag="killed")  # nothing partial
    assert isinstance(client.mutation("add", tag="after-kill"), str)  # the next call works
    assert daemon.worker_pid("") != pid
    # the other mounts never noticed
    assert client.mutation("chain", tag="after-kill-chain") == "ok"


def test_hung_mutation_hits_the_deadline_and_the_worker_is_replaced(daemon: RunningDaemon, client) -> None:
    pid = daemon.worker_pid("")
    bank_pid = daemon.worker_pid("bank")
    with pytest.raises(LimitExceeded) as info:
        client.mutation("spin")
    assert info.value.limit == "query_mutation_timeout_s"
    assert isinstance(client.mutation("add", tag="after-hang"), str)
    assert daemon.worker_pid("") != pid
    assert daemon.worker_pid("bank") == bank_pid


def test_prints_are_captured_per_invocation(daemon: RunningDaemon, client) -> None:
    client.mutation("add", tag="logged-tag")
    lines = [e for e in daemon.logs() if e["line"] == "adding logged-tag"]
    assert len(lines) == 1
    assert lines[0]["mount"] == "" and lines[0]["function"] == "add" and lines[0]["request"]


def test_kill_9_of_the_daemon_loses_no_acknowledged_mutation(tmp_path: Path) -> None:
    d = RunningDaemon(tmp_path / "data", ENV).start()
    try:
        d.deploy(APP)
        acked = []
        with d.client() as c:
            for i in range(40):
                c.mutation("add", tag=f"durable-{i}")
                acked.append(f"durable-{i}")
        d.kill()
        d.start()  # re-deploys the last app on its own
        with d.client() as c:
            assert c.query("count") == len(acked)
            assert all(c.query("has", tag=t) for t in (acked[0], acked[-1]))
    finally:
        d.stop()


def test_pagination_works_in_components_and_cursors_do_not_cross_mounts(client) -> None:
    from runtime.errors import IsolationError

    for i in range(3):
        client.mutation("add", tag=f"page-{i}")
    first = client.query("page")
    assert len(first["page"]) == 2 and not first["is_done"]
    second = client.query("page", cursor=first["continue_cursor"])
    assert {d["_id"] for d in second["page"]}.isdisjoint({d["_id"] for d in first["page"]})
    client.mutation("reentrant", tag="page-leaf")  # puts one item into the app's own leaf mount
    leaf_first = client.query("leaf_page")  # pagination inside a component works
    assert leaf_first["page"]
    with pytest.raises(IsolationError):
        client.query("leaf_page", cursor=first["continue_cursor"])  # the app's cursor, used by the leaf
