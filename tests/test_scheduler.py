"""The durable scheduler through a real daemon: exactly once, at most once, cancel, rollback, retention.

The daemon runs with a controllable clock (``BULKHEAD_CONTROLLABLE_CLOCK=1``),
so "an hour later" is an admin call, not a sleep.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import CallRuleError, ComponentError, IsolationError, LimitExceeded, ValidationError
from runtime.testing import CLOCK, RunningDaemon, start_daemon, wait_for

ENV = CLOCK
"""The default limits: scheduling 1000 jobs in one mutation is 1000 syscalls, but waiting for their
answers (or for a CPU on a loaded machine) is not charged to the mutation's 1 s of CPU (issue 12)."""

APP = Path(__file__).parent / "apps" / "sched" / "app.py"


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:
    return module_daemon_for(APP, env=ENV)


def job(d: RunningDaemon, job_id: str) -> dict[str, Any]:
    with d.client() as c:
        return c.query("job", id=job_id)  # type: ignore[no-any-return]


def state(d: RunningDaemon, job_id: str) -> str:
    return str(job(d, job_id).get("state"))


def test_scheduled_mutations_each_run_once_and_commit_their_state(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        ids = c.mutation("schedule_many", n=25, prefix="once")
        assert len(set(ids)) == 25
        wait_for(lambda: all(state(daemon, i) == "success" for i in ids), what="25 jobs to succeed")
        hits = c.query("all_hits")
    assert {k: v for k, v in hits.items() if k.startswith("once")} == {f"once{i}": 1 for i in range(25)}
    doc = job(daemon, ids[0])
    assert doc["kind"] == "mutation" and doc["function"] == "record" and doc["args"] == {"key": "once0"}
    assert doc["completed_time"] >= doc["scheduled_time"] and doc["error"] is None


def test_run_after_waits_for_its_time(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        later = c.mutation("schedule_one", key="later", delay=3600.0)
        time.sleep(0.5)
        assert state(daemon, later) == "pending" and c.query("hits", key="later") == 0
        daemon.advance_clock(3601)
        wait_for(lambda: state(daemon, later) == "success", what="the job an hour later")
        assert c.query("hits", key="later") == 1


def test_run_at_in_the_past_runs_now_and_too_far_is_refused(daemon: RunningDaemon) -> None:
    now = daemon.clock()
    with daemon.client() as c:
        past = c.mutation("schedule_at", key="past", at=now - 100)
        wait_for(lambda: state(daemon, past) == "success", what="a job scheduled in the past")
        with pytest.raises(ValidationError, match="scheduler_max_delay_s"):
            c.mutation("schedule_at", key="never", at=now + 6 * 365 * 86400)


def test_a_mutation_that_rolls_back_schedules_nothing(daemon: RunningDaemon) -> None:
    with daemon.client() as c, daemon.client(admin=True) as admin:
        c.mutation("schedule_one", key="committed", delay=3600.0)  # the control: a job that is there
        with pytest.raises(ComponentError) as err:
            c.mutation("schedule_then_fail", key="rolled")
        assert err.value.data == {"rolled": "back"}
        time.sleep(0.5)
        # one snapshot of every job (counting jobs by state raced the crons' jobs, which the clock jump
        # of an earlier test starts: one finishing between two counts moved between them)
        jobs = admin.admin("data", mount="", table="_scheduled", limit=100_000)
        keys = [j["args"].get("key") for j in jobs]
        assert "committed" in keys and "rolled" not in keys
        assert c.query("hits", key="rolled") == 0


def test_a_failed_sub_transaction_takes_its_jobs_with_it(daemon: RunningDaemon) -> None:
    with daemon.client(admin=True) as c:
        ticks_before = c.query("helper:ticks")
        parent_job = c.mutation("child_schedules_and_fails", key="sub")
        wait_for(lambda: state(daemon, parent_job) == "success", what="the parent's job")
        time.sleep(0.3)
        assert c.query("helper:ticks") == ticks_before  # own_tick was never scheduled
        jobs = c.admin("data", mount="helper", table="_scheduled", limit=10_000)
    assert not [j for j in jobs if j["function"] == "own_tick" and j["cron"] is None]


def test_cancel_a_pending_job_and_refuse_a_completed_or_foreign_one(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        pending = c.mutation("schedule_one", key="canceled", delay=7200.0)
        c.mutation("cancel", job=pending)
        assert state(daemon, pending) == "canceled"
        daemon.advance_clock(7201)
        time.sleep(0.5)
        assert c.query("hits", key="canceled") == 0 and state(daemon, pending) == "canceled"
        with pytest.raises(ValidationError, match="already completed"):
            c.mutation("cancel", job=pending)
        from_action = c.mutation("schedule_one", key="canceled2", delay=7200.0)
        c.action("cancel_from_action", job=from_action)
        assert state(daemon, from_action) == "canceled"
        with daemon.client(admin=True) as admin:
            helper_job = next(j["_id"] for j in admin.admin("data", mount="helper", table="_scheduled", limit=1000))
        with pytest.raises(IsolationError):
            c.mutation("cancel", job=helper_job)


def test_canceling_a_running_action_cancels_what_it_scheduled_before_and_after(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        jid = c.mutation("schedule_spawner", key="sp")
        wait_for(lambda: c.query("hits", key="sp-spawned") == 1, what="the action to schedule its first job")
        assert state(daemon, jid) == "in_progress"
        c.mutation("cancel", job=jid)
        assert c.query("children_of", id=jid) == [{"key": "sp-first", "state": "canceled"}]
        wait_for(lambda: c.query("hits", key="sp-done") == 1, what="the action to finish (it keeps running)")
        children = sorted(c.query("children_of", id=jid), key=lambda j: j["key"])
        assert children == [{"key": "sp-first", "state": "canceled"}, {"key": "sp-second", "state": "canceled"}]
        assert state(daemon, jid) == "canceled"
        daemon.advance_clock(3601)
        time.sleep(0.5)
        assert c.query("hits", key="sp-first") == 0 and c.query("hits", key="sp-second") == 0


def test_a_job_whose_code_raises_is_failed_and_its_writes_discarded(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        jid = c.mutation("schedule_one", key="boom", fn="boom")
        wait_for(lambda: state(daemon, jid) == "failed", what="the failing job")
        assert "ComponentError" in job(daemon, jid)["error"]
        assert c.query("hits", key="boom") == 0
    assert any("scheduled boom failed" in e["line"] for e in daemon.logs())


def test_scheduled_actions_run_and_schedule_from_the_action(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        jid = c.mutation("schedule_one", key="act", fn="act")
        wait_for(lambda: state(daemon, jid) == "success", what="the action job")
        wait_for(lambda: c.query("hits", key="act-from-action") == 1, what="the job the action scheduled")
        assert c.query("hits", key="act") == 1
        with daemon.client(admin=True) as admin:
            jobs = admin.admin("data", mount="", table="_scheduled", limit=100_000)
        child = [j for j in jobs if j["args"] == {"key": "act-from-action"}]
        assert len(child) == 1 and child[0]["parent"] == jid


def test_scheduling_limits(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        with pytest.raises(LimitExceeded, match="txn_scheduled_functions"):
            c.mutation("schedule_many", n=1001, prefix="toomany", delay=99999.0)
        assert c.query("jobs_in", state="pending") < 1000


def test_completed_jobs_are_removed_after_the_retention_period(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        jid = c.mutation("schedule_one", key="gc")
        wait_for(lambda: state(daemon, jid) == "success", what="the job")
        daemon.advance_clock(8 * 24 * 3600)
        wait_for(lambda: job(daemon, jid) == {}, what="the completed job to be removed")
        assert c.query("hits", key="gc") == 1


def test_exactly_once_across_kill_9_during_a_burst_of_1000(tmp_path: Path) -> None:
    with start_daemon(tmp_path / "data", app=APP, env=ENV) as d:
        with d.client() as c:
            ids = c.mutation("schedule_many", n=1000, prefix="burst")
            wait_for(lambda: len([k for k in c.query("all_hits") if k.startswith("burst")]) >= 30,
                     what="some jobs to run")
        d.kill()
        d.start()
        with d.client() as c:
            def all_done() -> bool:
                return c.query("jobs_in", state="pending") == 0

            wait_for(all_done, timeout=120, what="every pending job after the restart")
            hits = {k: v for k, v in c.query("all_hits").items() if k.startswith("burst")}
        states = {state(d, i) for i in ids[:50]} | {state(d, i) for i in ids[-50:]}
    assert hits == {f"burst{i}": 1 for i in range(1000)}  # every job once, none twice
    assert states == {"success"}


def test_an_action_runs_at_most_once_across_a_daemon_crash(tmp_path: Path) -> None:
    with start_daemon(tmp_path / "data", app=APP, env=ENV) as d:
        with d.client() as c:
            jid = c.mutation("schedule_one", key="slow", fn="slow")
            wait_for(lambda: c.query("hits", key="slow-started") == 1, what="the action to start")
        assert state(d, jid) == "in_progress"
        d.kill()
        d.start()
        doc = wait_for(lambda: (j := job(d, jid)) and j["state"] != "in_progress" and j, what="the job's outcome")
        time.sleep(3.5)  # longer than the action would take, had it been re-run
        with d.client() as c:
            assert c.query("hits", key="slow-started") == 1
            assert c.query("hits", key="slow-finished") == 0
            assert c.query("hits", key="slow-after-sleep") == 0
    assert doc["state"] == "failed" and "at most once" in doc["error"]


def test_queries_cannot_schedule_and_queries_cannot_be_scheduled(tmp_path: Path) -> None:
    app = tmp_path / "qapp"
    app.mkdir()
    (app / "app.py").write_text(
        "from runtime import App\n"
        "app = App()\n"
        "@app.query\n"
        "async def q(ctx) -> int:\n"
        "    return 1\n"
        "@app.mutation\n"
        "async def m(ctx) -> str:\n"
        "    return await ctx.scheduler.run_after(0, q)\n"
    )
    with (start_daemon(tmp_path / "data", app=app / "app.py") as d, d.client() as c,
          pytest.raises(CallRuleError, match="only mutations and actions can be scheduled")):
        c.mutation("m")
