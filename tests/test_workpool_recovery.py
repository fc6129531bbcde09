"""The workpool when things die, and its upkeep: recovery of jobs whose worker was killed (``kill -9`` of the
pool's worker, of the job's own worker, of the daemon), the retention of finished status, the periodic report.

One daemon on the controllable clock (tests/apps/workpool); the pool's crons (recovery and report every
minute, status clean-up every hour) are fired by moving the clock.
"""

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from runtime.client import Client
from runtime.testing import RunningDaemon, wait_for

APP = Path(__file__).parent / "apps" / "workpool" / "app.py"
CLOCK = {"BULKHEAD_CONTROLLABLE_CLOCK": "1"}
RETRY = {"retry": {"max_attempts": 3, "initial_backoff_ms": 100, "base": 2}}


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:  # type: ignore[no-untyped-def]
    return module_daemon_for(APP, env=CLOCK)


def _status(client: Client, which: str, wid: str) -> dict[str, Any]:
    return client.query("status", which=which, id=wid)  # type: ignore[no-any-return]


def _running(client: Client, gauge: str) -> bool:
    return (client.query("gauge", name=gauge) or {}).get("active") == 1


def _kill(daemon: RunningDaemon, mount: str) -> None:
    pid = daemon.worker_pid(mount)
    os.kill(pid, signal.SIGKILL)  # a worker of the daemon this module started
    wait_for(lambda: daemon.worker_pid(mount) not in (pid, 0), what=f"a new worker for {mount!r}")


def _completions(client: Client, wid: str) -> list[dict[str, Any]]:
    return client.query("completions", work_ids=[wid])  # type: ignore[no-any-return]


def test_a_job_whose_pool_worker_was_killed_is_recovered_and_retried(client: Client, daemon: RunningDaemon) -> None:
    [wid] = client.mutation("enqueue", which="a", kind="action", fn="work", opts=RETRY,
                            args=[{"job": "pk", "gauges": ["pk"], "gate": "pk"}])
    wait_for(lambda: _running(client, "pk"), what="the job to run")
    _kill(daemon, "pool_a")  # the wrapper waiting for the job dies; its scheduler job is marked failed
    assert _status(client, "a", wid) == {"state": "running", "previous_attempts": 0}

    def recovered() -> bool:
        daemon.advance_clock(61)  # the recovery cron runs every minute
        return _status(client, "a", wid) != {"state": "running", "previous_attempts": 0}

    wait_for(recovered, what="the recovery cron to fail the dead attempt", interval=0.5)
    wait_for(lambda: _status(client, "a", wid) == {"state": "running", "previous_attempts": 1},
             what="the retry to start")
    client.mutation("open_gate", name="pk")  # the orphaned first run ends too; nobody waits for its result
    wait_for(lambda: _status(client, "a", wid)["state"] == "finished", what="the retry to finish")
    assert _status(client, "a", wid)["result"] == {"kind": "success", "return_value": "pk done"}
    assert client.query("tries", job="pk")["n"] == 2
    done = wait_for(lambda: _completions(client, wid), what="on_complete")
    assert [d["result"]["kind"] for d in done] == ["success"]
    assert any("workpool: recovering" in e["line"] and e["mount"] == "pool_a" for e in daemon.logs())


def test_a_job_whose_own_worker_was_killed_fails_that_attempt_and_retries(client: Client,
                                                                          daemon: RunningDaemon) -> None:
    [wid] = client.mutation("enqueue", which="a", kind="action", fn="work", opts=RETRY,
                            args=[{"job": "ak", "gauges": ["ak"], "gate": "ak"}])
    wait_for(lambda: _running(client, "ak"), what="the job to run")
    _kill(daemon, "")  # the app's worker, running the job's action
    wait_for(lambda: _status(client, "a", wid)["previous_attempts"] == 1
             if _status(client, "a", wid)["state"] != "finished" else True, what="the failed attempt to count")
    daemon.advance_clock(1)  # past the back-off
    client.mutation("open_gate", name="ak")
    wait_for(lambda: _status(client, "a", wid)["state"] == "finished", what="the retry to finish")
    assert _status(client, "a", wid)["result"] == {"kind": "success", "return_value": "ak done"}
    assert client.query("tries", job="ak")["n"] == 2
    assert [d["result"]["kind"] for d in wait_for(lambda: _completions(client, wid), what="on_complete")] == [
        "success"]


def test_an_outcome_too_big_to_store_fails_the_job_instead_of_holding_its_slot(client: Client,
                                                                              daemon: RunningDaemon) -> None:
    [wid] = client.mutation("enqueue", which="a", kind="action", fn="big_result", args=[{"size": 1_100_000}])

    def failed() -> dict[str, Any] | None:
        daemon.advance_clock(61)  # the completion cannot be written: recovery fails the attempt
        st = _status(client, "a", wid)
        return st if st["state"] == "finished" else None

    st = wait_for(failed, what="the job to be failed by recovery", interval=0.5)
    assert st["result"]["kind"] == "failed" and "LimitExceeded" in st["result"]["error"]
    wait_for(lambda: client.query("stats", which="a")["slots_in_use"] == 0, what="the slot to be freed")
    assert [d["result"]["kind"] for d in wait_for(lambda: _completions(client, wid), what="on_complete")] == [
        "failed"]


def test_the_report_logs_backlog_and_failure_rate_every_minute(client: Client, daemon: RunningDaemon) -> None:
    ids = client.mutation("enqueue", which="b", kind="mutation", fn="write_event", callback=False,
                          args=[{"job": "rep1"}, {"job": "rep2"}, {"job": "rep3", "fail": True}])
    wait_for(lambda: all(_status(client, "b", i)["state"] == "finished" for i in ids), what="3 jobs")
    wait_for(lambda: client.query("stats", which="b")["to_release"] == 0, what="the outcomes to be counted")

    def report() -> dict[str, Any] | None:
        daemon.advance_clock(61)
        lines = [e["line"] for e in daemon.logs() if e["mount"] == "pool_b" and "workpool report" in e["line"]]
        return json.loads(lines[-1].split("workpool report ", 1)[1]) if lines else None

    line = wait_for(report, what="a report line of pool_b", interval=0.5)
    assert {k: line[k] for k in ("backlog", "running", "completed", "succeeded", "failed", "retries", "canceled")} \
        == {"backlog": 0, "running": 0, "completed": 3, "succeeded": 2, "failed": 1, "retries": 0, "canceled": 0}
    assert line["permanent_failure_rate"] == pytest.approx(1 / 3, abs=1e-3)


def test_finished_status_is_kept_for_the_retention_period(client: Client, daemon: RunningDaemon) -> None:
    with daemon.client(admin=True) as admin:
        assert admin.mutation("pool_b:set_status_ttl", seconds=600.0) == 600.0
    [wid] = client.mutation("enqueue", which="b", kind="query", fn="double", args=[{"x": 4}], callback=False)
    [other] = client.mutation("enqueue", which="a", kind="query", fn="double", args=[{"x": 5}], callback=False)
    wait_for(lambda: _status(client, "b", wid)["state"] == "finished", what="the job")
    wait_for(lambda: _status(client, "a", other)["state"] == "finished", what="the other pool's job")
    assert _status(client, "b", wid) == {"state": "finished", "result": {"kind": "success", "return_value": 8}}
    daemon.advance_clock(3601)  # the hourly clean-up runs, the status is older than 600 s
    wait_for(lambda: client.query("stats", which="b")["finished"] == 0, what="the clean-up")
    assert _status(client, "b", wid) == {"state": "finished"}
    assert _status(client, "a", other)["result"]["return_value"] == 10  # the other pool keeps it (ttl: one day)


def test_on_complete_exactly_once_across_kill_9_of_the_daemon(client: Client, daemon: RunningDaemon) -> None:
    [wid] = client.mutation("enqueue", which="a", kind="action", fn="work", opts=RETRY,
                            args=[{"job": "dk", "gauges": ["dk"], "gate": "dk"}])
    wait_for(lambda: _running(client, "dk"), what="the job to run")
    client.close()
    offset = daemon.clock() - time.time()
    daemon.kill()  # the action job is in progress: at the next start it is marked failed (at most once)
    daemon.env["BULKHEAD_CLOCK_OFFSET_S"] = str(offset + 1)  # the clock keeps what the module moved it by
    daemon.start()
    with daemon.client() as c:
        c.mutation("open_gate", name="dk")

        def finished() -> dict[str, Any] | None:
            daemon.advance_clock(61)  # recovery, then the retry's back-off
            st = _status(c, "a", wid)
            return st if st["state"] == "finished" else None

        st = wait_for(finished, what="the job to be recovered and finish", interval=0.5)
        assert st["result"] == {"kind": "success", "return_value": "dk done"}
        assert c.query("tries", job="dk")["n"] == 2
        assert [d["result"]["kind"] for d in wait_for(lambda: _completions(c, wid), what="on_complete")] == [
            "success"]
