"""The action retrier through a real daemon on a controllable clock.

Every call goes through the test app ``tests/apps/retrier/app.py``, which mounts
``components.action_retrier`` twice (``retries`` and ``other``) and has flaky,
fatal and blocking actions plus an ``on_complete`` mutation that records each
call in the app's own table.  Long delays (an hour, a day) are clock advances,
never sleeps.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from runtime.client import Client
from runtime.errors import IsolationError, NotFoundError, ValidationError, WorkerCrashed
from runtime.testing import CLOCK, RunningDaemon, wait_for

APP = Path(__file__).parent / "apps" / "retrier" / "app.py"
HOUR = 3600.0
DAY = 24 * HOUR
WAIT_S = 90.0
"""How long a wait for something the daemon does may take (generous: the machine is shared and loaded)."""


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:  # type: ignore[no-untyped-def]
    return module_daemon_for(APP, env=CLOCK)


def status(c: Client, run_id: str, mount: str = "retries") -> dict[str, Any]:
    return c.query("status", run_id=run_id, mount=mount)  # type: ignore[no-any-return]


def completed(c: Client, run_id: str, mount: str = "retries") -> dict[str, Any]:
    """Wait until the run completed; its result."""
    st = wait_for(lambda: (s := status(c, run_id, mount))["type"] == "completed" and s,
                  what=f"run {run_id} to complete", timeout=WAIT_S)
    return st["result"]  # type: ignore[no-any-return]


def completions(c: Client, run_id: str) -> list[dict[str, Any]]:
    return c.query("completions", run_id=run_id)  # type: ignore[no-any-return]


def test_success_on_the_first_attempt_calls_on_complete_once_with_the_context(daemon: RunningDaemon,
                                                                             client: Client) -> None:
    run = client.mutation("start", action="flaky", args={"key": "first", "value": {"v": [1, 2]}},
                          context={"order": 7})
    result = completed(client, run)
    assert result == {"type": "success", "value": {"v": [1, 2]}, "attempts": 1}
    assert completions(client, run) == [{"result": result, "context": {"order": 7}}]
    assert client.query("attempts", key="first") == 1


def admin_query(d: RunningDaemon, fn: str, **args: Any) -> Any:
    with d.client(admin=True) as admin:
        return admin.query(fn, **args)


def sentinel(c: Client, tag: str) -> None:
    """Start a run due now and wait for it: jobs due before it have been taken up by then."""
    completed(c, c.mutation("start", action="flaky", args={"key": f"sentinel-{tag}"}, callback=False))


# --- retries -----------------------------------------------------------------------------------------------


def test_failures_are_retried_until_success(client: Client) -> None:
    run = client.mutation("start", action="flaky", args={"key": "retry2", "fail_times": 2, "value": "ok"})
    result = completed(client, run)
    assert result == {"type": "success", "value": "ok", "attempts": 3}
    assert client.query("attempts", key="retry2") == 3
    assert [c["result"] for c in completions(client, run)] == [result]


def test_max_failures_bounds_the_attempts_and_the_run_fails_with_the_last_error(client: Client) -> None:
    run = client.mutation("start", action="flaky", args={"key": "exhaust", "fail_times": 99},
                          options={"max_failures": 2}, context="ctx")
    result = completed(client, run)
    assert result["type"] == "failed" and result["attempts"] == 3 and result["retryable"] is True
    assert "attempt 3 of exhaust fails on purpose" in result["error"] and result["data"] == {"attempt": 3}
    assert client.query("attempts", key="exhaust") == 3
    assert completions(client, run) == [{"result": result, "context": "ctx"}]


def test_max_attempts_is_max_failures_plus_one(client: Client) -> None:
    run = client.mutation("start", action="flaky", args={"key": "attempts2", "fail_times": 99},
                          options={"max_attempts": 2})
    assert completed(client, run)["attempts"] == 2
    assert client.query("attempts", key="attempts2") == 2
    run = client.mutation("start", action="flaky", args={"key": "attempts1", "fail_times": 99},
                          options={"max_failures": 0})
    assert completed(client, run)["attempts"] == 1


def test_many_runs_at_once_each_retry_and_complete_once(client: Client) -> None:
    runs = client.mutation("start_many", prefix="many", n=40, fail_times=2)
    assert len(set(runs)) == 40
    for i, run in enumerate(runs):
        assert completed(client, run) == {"type": "success", "value": i, "attempts": 3}
    for i, run in enumerate(runs):
        got = completions(client, run)
        assert [(g["result"]["value"], g["context"]) for g in got] == [(i, i)]
        assert client.query("attempts", key=f"many{i}") == 3


def test_the_defaults_retry_four_times(client: Client) -> None:
    run = client.mutation("start", action="flaky", args={"key": "defaults", "fail_times": 99})
    assert completed(client, run)["attempts"] == 5  # the app's retrier: max_failures=4, initial_backoff=0
    assert client.query("attempts", key="defaults") == 5


def test_a_non_retryable_error_fails_the_run_at_once(client: Client) -> None:
    run = client.mutation("start", action="fatal", args={"key": "fatal"}, options={"max_failures": 5})
    result = completed(client, run)
    assert result["type"] == "failed" and result["attempts"] == 1 and result["retryable"] is False
    assert result["data"] == {"key": "fatal"} and "the input is bad for good" in result["error"]
    assert client.query("attempts", key="fatal") == 1
    assert len(completions(client, run)) == 1


def test_retry_delays_follow_initial_backoff_times_base_to_the_power_of_failures_minus_one(
        daemon: RunningDaemon, client: Client) -> None:
    """The documented meaning: after the k-th failure the next attempt waits initial_backoff * base ** (k - 1)."""
    run = client.mutation("start", action="flaky", args={"key": "delays", "fail_times": 2, "value": 3},
                          options={"initial_backoff": 1000.0, "base": 3.0, "jitter": False})
    st = wait_for(lambda: (s := status(client, run))["num_failures"] == 1 and s, what="the first failure")
    assert st["type"] == "in_progress" and st["attempt"] == 2 and not st["running"]
    assert st["next_attempt_at"] - st["last_failure_at"] == pytest.approx(1000.0)
    assert "attempt 1 of delays fails on purpose" in st["last_error"]
    sentinel(client, "delays-1")
    assert client.query("attempts", key="delays") == 1  # the retry waits for its time
    daemon.advance_clock(1001)
    st = wait_for(lambda: (s := status(client, run))["num_failures"] == 2 and s, what="the second failure")
    assert st["next_attempt_at"] - st["last_failure_at"] == pytest.approx(3000.0)
    sentinel(client, "delays-2")
    assert client.query("attempts", key="delays") == 2
    daemon.advance_clock(3001)
    assert completed(client, run) == {"type": "success", "value": 3, "attempts": 3}


def test_jitter_multiplies_each_delay_by_a_factor_in_half_to_one_and_a_half(client: Client) -> None:
    runs = [client.mutation("start", action="flaky", args={"key": f"jitter{i}", "fail_times": 9},
                            options={"initial_backoff": 1000.0, "base": 2.0}) for i in range(8)]
    delays = []
    for run in runs:
        st = wait_for(lambda run=run: (s := status(client, run))["num_failures"] == 1 and s, what="a failure")
        delays.append(st["next_attempt_at"] - st["last_failure_at"])
    assert all(500.0 <= d < 1500.0 for d in delays), delays
    assert len({round(d, 3) for d in delays}) > 1, delays  # drawn, not fixed
    for run in runs:
        assert client.mutation("cancel", run_id=run) is True


# --- scheduling -------------------------------------------------------------------------------------------


def test_run_after_waits_for_its_time_on_the_clock(daemon: RunningDaemon, client: Client) -> None:
    run = client.mutation("start", action="flaky", args={"key": "after", "value": 1}, after=HOUR)
    st = status(client, run)
    assert st["type"] == "in_progress" and st["attempt"] == 1 and st["num_failures"] == 0 and not st["running"]
    assert st["next_attempt_at"] == pytest.approx(st["start_time"]) and st["start_time"] > daemon.clock() + HOUR - 60
    sentinel(client, "after")
    assert client.query("attempts", key="after") == 0
    daemon.advance_clock(HOUR + 1)
    assert completed(client, run) == {"type": "success", "value": 1, "attempts": 1}


def test_run_at_a_time_and_in_the_past(daemon: RunningDaemon, client: Client) -> None:
    now = daemon.clock()
    past = client.mutation("start", action="flaky", args={"key": "past", "value": "p"}, at=now - 100)
    assert completed(client, past)["value"] == "p"
    later = client.mutation("start", action="flaky", args={"key": "at", "value": "a"}, at=now + 2 * HOUR)
    assert status(client, later)["start_time"] == pytest.approx(now + 2 * HOUR)
    sentinel(client, "at")
    assert client.query("attempts", key="at") == 0
    daemon.advance_clock(2 * HOUR + 1)
    assert completed(client, later)["value"] == "a"


def test_a_run_started_from_an_action(client: Client) -> None:
    run = client.action("start_from_action", key="from-action")
    result = completed(client, run)
    assert result["value"] == "from an action"
    assert completions(client, run) == [{"result": result, "context": {"from": "action"}}]


def test_a_status_subscription_follows_the_run(daemon: RunningDaemon, client: Client) -> None:
    run = client.mutation("start", action="flaky", args={"key": "subscribed", "fail_times": 1, "value": "s"},
                          options={"initial_backoff": HOUR, "jitter": False}, after=HOUR)
    sub = client.subscribe("status", run_id=run)
    seen = [sub.next(timeout=30)]
    assert seen[0]["type"] == "in_progress" and seen[0]["num_failures"] == 0
    daemon.advance_clock(HOUR + 1)  # the first attempt fails; the retry is an hour later
    while seen[-1]["type"] != "completed":
        seen.append(sub.next(timeout=30))
        if seen[-1]["type"] == "in_progress" and seen[-1]["num_failures"] == 1 and not seen[-1]["running"]:
            daemon.advance_clock(HOUR + 1)
    assert any(s["type"] == "in_progress" and s["num_failures"] == 1 for s in seen)
    assert seen[-1]["result"] == {"type": "success", "value": "s", "attempts": 2}


# --- cancel ---------------------------------------------------------------------------------------------


def test_cancel_before_the_first_attempt(daemon: RunningDaemon, client: Client) -> None:
    run = client.mutation("start", action="flaky", args={"key": "cancel-pending"}, after=HOUR, context=1)
    assert client.mutation("cancel", run_id=run) is True
    assert status(client, run)["result"] == {"type": "canceled", "attempts": 1}
    daemon.advance_clock(HOUR + 1)
    sentinel(client, "cancel-pending")
    assert client.query("attempts", key="cancel-pending") == 0
    assert completions(client, run) == [{"result": {"type": "canceled", "attempts": 1}, "context": 1}]
    assert client.mutation("cancel", run_id=run) is False  # a second cancel: completed already
    assert len(completions(client, run)) == 1


def test_cancel_while_waiting_for_a_retry(daemon: RunningDaemon, client: Client) -> None:
    run = client.mutation("start", action="flaky", args={"key": "cancel-retry", "fail_times": 9},
                          options={"initial_backoff": 1000.0})
    wait_for(lambda: status(client, run)["num_failures"] == 1, what="the first failure")
    assert client.mutation("cancel", run_id=run) is True
    daemon.advance_clock(2000)
    sentinel(client, "cancel-retry")
    assert client.query("attempts", key="cancel-retry") == 1
    assert status(client, run)["result"] == {"type": "canceled", "attempts": 2}
    assert [c["result"]["type"] for c in completions(client, run)] == ["canceled"]


def test_cancel_while_running_drops_the_late_result(daemon: RunningDaemon, client: Client) -> None:
    run = client.mutation("start", action="blocking", args={"key": "cancel-running", "value": "late"},
                          options={"log_level": "DEBUG"})
    wait_for(lambda: client.query("attempts", key="cancel-running") == 1 and status(client, run)["running"],
             what="the attempt to run")
    assert client.mutation("cancel", run_id=run) is True
    assert status(client, run)["result"]["type"] == "canceled"
    client.mutation("open_gate", key="cancel-running")
    wait_for(lambda: any(run in e.get("line", "") and "dropped" in e.get("line", "")
                         for e in daemon.logs()), what="the late outcome to be dropped")
    assert status(client, run)["result"] == {"type": "canceled", "attempts": 1}
    assert [c["result"]["type"] for c in completions(client, run)] == ["canceled"]


def test_cancel_after_completion_changes_nothing(client: Client) -> None:
    run = client.mutation("start", action="flaky", args={"key": "cancel-done", "value": 5})
    result = completed(client, run)
    assert client.mutation("cancel", run_id=run) is False
    assert status(client, run)["result"] == result
    assert [c["result"] for c in completions(client, run)] == [result]


# --- crashes ----------------------------------------------------------------------------------------------


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def test_kill_9_of_the_actions_worker_is_a_retried_failure_and_on_complete_runs_once(
        daemon: RunningDaemon, client: Client) -> None:
    run = client.mutation("start", action="blocking", args={"key": "kill-app-once", "value": "survived"},
                          context={"k": 9})
    wait_for(lambda: client.query("attempts", key="kill-app-once") == 1 and status(client, run)["running"],
             what="the attempt to run")
    _kill(daemon.worker_pid(""))
    result = completed(client, run)
    assert result == {"type": "success", "value": "survived", "attempts": 2}
    assert client.query("attempts", key="kill-app-once") == 2
    assert completions(client, run) == [{"result": result, "context": {"k": 9}}]


def test_a_run_whose_retrier_worker_died_is_detected_by_its_heartbeat(daemon: RunningDaemon,
                                                                       client: Client) -> None:
    """The attempt's own job fails with the worker (nothing reports the outcome): the heartbeat notices."""
    run = client.mutation("start", action="blocking", args={"key": "kill-retrier-once", "value": "recovered"})
    wait_for(lambda: client.query("attempts", key="kill-retrier-once") == 1 and status(client, run)["running"],
             what="the attempt to run")
    _kill(daemon.worker_pid("retries"))
    wait_for(lambda: not status(client, run)["running"], what="the attempt's job to fail")
    assert status(client, run)["type"] == "in_progress"  # nothing reported the outcome: only the heartbeat can
    wait_for(lambda: daemon.advance_clock(20) and status(client, run)["type"] == "completed", interval=0.3,
             what="the heartbeat to retry the run")
    result = status(client, run)["result"]
    assert result == {"type": "success", "value": "recovered", "attempts": 2}
    assert len(completions(client, run)) == 1


# --- on_complete, results, bad input --------------------------------------------------------------------


def test_an_on_complete_that_raises_is_logged_and_the_run_still_completes_once(daemon: RunningDaemon,
                                                                               client: Client) -> None:
    run = client.mutation("start", action="flaky", args={"key": "cb-raises", "value": 1}, context={"raise": True})
    assert completed(client, run)["type"] == "success"
    assert completions(client, run) == []  # its insert rolled back with it
    wait_for(lambda: any("on_complete of run" in e.get("line", "") and run in e.get("line", "")
                         for e in daemon.logs()), what="the callback's failure in the logs")
    sentinel(client, "cb-raises")
    assert client.query("attempts", key="cb-raises") == 1


def test_an_on_complete_annotated_with_run_result_gets_the_models(client: Client) -> None:
    ok = client.mutation("start", action="flaky", args={"key": "typed-ok", "value": [1]}, typed=True)
    bad = client.mutation("start", action="fatal", args={"key": "typed-bad"}, typed=True)
    gone = client.mutation("start", action="flaky", args={"key": "typed-gone"}, after=HOUR, typed=True)
    assert client.mutation("cancel", run_id=gone) is True
    completed(client, ok)
    completed(client, bad)
    assert [c["result"] for c in completions(client, ok)] == [
        {"type": "success", "value": [1], "attempts": 1, "model": "success"}]
    [failed] = completions(client, bad)
    assert failed["result"]["model"] == "failed" and failed["result"]["retryable"] is False
    assert [c["result"] for c in completions(client, gone)] == [
        {"type": "canceled", "attempts": 1, "model": "canceled"}]


def test_a_return_value_too_big_to_store_fails_the_run_without_retries(client: Client) -> None:
    run = client.mutation("start", action="big", args={"key": "big"})
    result = completed(client, run)
    assert result["type"] == "failed" and result["retryable"] is False
    assert "return value could not be stored" in result["error"]
    assert client.query("attempts", key="big") == 1


@pytest.mark.parametrize(("options", "match"), [
    ({"max_failures": -1}, "max_failures"),
    ({"max_failures": 5000}, "max_failures"),
    ({"initial_backoff": -1.0}, "initial_backoff"),
    ({"initial_backoff": "1"}, "initial_backoff"),
    ({"base": 0.5}, "base"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"max_attempts": 2, "max_failures": 1}, "not both"),
    ({"log_level": "LOUD"}, "log_level"),
    ({"retries": 3}, "retries"),
])
def test_bad_options_are_refused_naming_the_option(client: Client, options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        client.mutation("start", action="flaky", args={"key": "never"}, options=options)
    if "retries" not in options:  # the constructor takes keywords: an unknown one is Python's TypeError
        with pytest.raises(ValidationError, match=match):
            client.mutation("start_with_bad_retrier", options=options)
    assert client.query("attempts", key="never") == 0


def test_bad_targets_and_run_ids_are_refused(daemon: RunningDaemon, client: Client) -> None:
    with pytest.raises(ValidationError, match="must be an action"):
        client.mutation("start", action="not_an_action", args={})
    with pytest.raises(ValidationError, match="run_after"):
        client.mutation("start", action="flaky", args={"key": "never"}, after=-1.0)
    with pytest.raises(ValidationError, match="not a document Id"):
        client.query("status", run_id="nonsense")
    run = client.mutation("start", action="flaky", args={"key": "an-id"})  # a run Id of mount retries...
    with pytest.raises(IsolationError):
        client.query("status", run_id=run, mount="other")  # ...is not one of mount other's


# --- mounts, cleanup ------------------------------------------------------------------------------------


def test_two_mounts_keep_separate_runs(daemon: RunningDaemon, client: Client) -> None:
    before_a = admin_query(daemon, "retries:count_runs")
    before_b = admin_query(daemon, "other:count_runs")
    run = client.mutation("start", action="flaky", args={"key": "mount-b", "value": "b"}, mount="other")
    assert completed(client, run, mount="other")["value"] == "b"
    assert admin_query(daemon, "other:count_runs") == before_b + 1
    assert admin_query(daemon, "retries:count_runs") == before_a
    with pytest.raises(IsolationError):
        client.mutation("cancel", run_id=run, mount="retries")
    with pytest.raises(IsolationError):
        client.mutation("cleanup", run_id=run, mount="retries")


def test_cleanup_deletes_a_completed_run_and_refuses_one_in_progress(client: Client) -> None:
    run = client.mutation("start", action="flaky", args={"key": "cleanup", "value": 0})
    completed(client, run)
    assert client.mutation("cleanup", run_id=run) is True
    with pytest.raises(NotFoundError, match="no run"):
        status(client, run)
    assert client.mutation("cleanup", run_id=run) is False
    assert client.mutation("cancel", run_id=run) is False
    pending = client.mutation("start", action="flaky", args={"key": "cleanup-pending"}, after=HOUR)
    with pytest.raises(ValidationError, match="still in progress"):
        client.mutation("cleanup", run_id=pending)
    assert client.mutation("cancel", run_id=pending) is True
    assert client.mutation("cleanup", run_id=pending) is True


def test_the_daily_cron_deletes_runs_completed_more_than_a_week_ago(daemon_for) -> None:  # type: ignore[no-untyped-def]
    d = daemon_for(APP, env=CLOCK)
    with d.client() as c:
        old = c.mutation("start", action="flaky", args={"key": "old", "value": 1})
        completed(c, old)
        d.advance_clock(6 * DAY)
        recent = c.mutation("start", action="flaky", args={"key": "recent", "value": 2})
        completed(c, recent)
        other_old = c.mutation("start", action="flaky", args={"key": "other-old", "value": 3}, mount="other")
        completed(c, other_old, mount="other")
        d.advance_clock(1.5 * DAY)  # old: 7.5 days, recent: 1.5 days; the daily cron ran at least once since
        other_recent = c.mutation("start", action="flaky", args={"key": "other-recent", "value": 4}, mount="other")
        completed(c, other_recent, mount="other")
        d.advance_clock(1.5 * DAY)  # other (ACTION_RETRIER_RETENTION_S = 2 days): other_old 3 days, other_recent 1.5
        wait_for(lambda: admin_query(d, "retries:count_runs", state="completed") == 1
                 and admin_query(d, "other:count_runs", state="completed") == 1, interval=0.2, timeout=WAIT_S,
                 what="the daily clean-up of each mount")
        assert status(c, recent)["result"]["value"] == 2
        assert status(c, other_recent, mount="other")["result"]["value"] == 4
        for run, mount in ((old, "retries"), (other_old, "other")):
            with pytest.raises(NotFoundError):
                status(c, run, mount=mount)


def test_the_log_level_comes_from_the_run_else_the_mounts_environment(daemon: RunningDaemon, client: Client) -> None:
    quiet = client.mutation("start", action="flaky", args={"key": "log-quiet"})
    loud = client.mutation("start", action="flaky", args={"key": "log-env"}, mount="other")  # DEBUG from env
    asked = client.mutation("start", action="flaky", args={"key": "log-asked"}, options={"log_level": "DEBUG"})
    for run, mount in ((quiet, "retries"), (loud, "other"), (asked, "retries")):
        completed(client, run, mount=mount)
    wait_for(lambda: all(any(f"run {r} starts at" in e.get("line", "") for e in daemon.logs()) for r in (loud, asked)),
             what="the DEBUG lines", timeout=WAIT_S)
    assert not any(f"run {quiet}" in e.get("line", "") for e in daemon.logs())  # WARN: a success logs nothing


def test_on_complete_exactly_once_across_kill_9_of_the_daemon(daemon_for) -> None:  # type: ignore[no-untyped-def]
    """Runs in every stage (first attempt, waiting to retry, an action running) when the daemon is killed:
    after the restart each completes, and its on_complete took effect exactly once."""
    d = daemon_for(APP, env=CLOCK)
    with d.client() as c:
        blocked = c.mutation("start", action="blocking", args={"key": "dk-block-once", "value": "b"})
        runs = [c.mutation("start", action="flaky", args={"key": f"dk{i}", "fail_times": i % 3, "value": i},
                           options={"initial_backoff": 0.05 * (i % 4)}) for i in range(30)]
        wait_for(lambda: c.query("attempts", key="dk-block-once") == 1, what="the blocking attempt to start")
    d.kill()
    d.start()
    with d.client() as c:
        wait_for(lambda: d.advance_clock(20) is not None and all(
            status(c, r)["type"] == "completed" for r in [blocked, *runs]), interval=0.3, timeout=60,
            what="every run to complete after the restart")
        for i, run in enumerate(runs):
            got = completions(c, run)
            assert len(got) == 1 and got[0]["result"]["type"] == "success" and got[0]["result"]["value"] == i, got
            assert c.query("attempts", key=f"dk{i}") >= i % 3 + 1
        got = completions(c, blocked)
        assert len(got) == 1 and got[0]["result"] == {"type": "success", "value": "b", "attempts": 2}



def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_done(c: Client, run: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        try:  # the test's own queries run in the app's worker too: one may die with it
            st = status(c, run)
        except WorkerCrashed:
            return None
        return st["result"] if st["type"] == "completed" else None  # type: ignore[no-any-return]

    return wait_for(done, what="the run to complete", timeout=WAIT_S)  # type: ignore[no-any-return]


def test_on_complete_takes_effect_once_when_its_worker_is_killed_during_it(daemon_for) -> None:  # type: ignore[no-untyped-def]
    """kill -9 of the callback's worker mid-call: the completion and the callback are one transaction, so
    neither stays; the outcome is recorded again with a new worker, and the callback's write is there once."""
    d = daemon_for(APP, env=CLOCK)
    with d.client() as c:
        pid = d.worker_pid("")
        base = _cpu_s(pid)
        run = c.mutation("start", action="flaky", args={"key": "cb-killed", "value": 1, "arm": True},
                         context={"spin": "cb-killed"})
        # the armed callback spins (blocking its worker's loop: no queries now); its CPU time shows it
        wait_for(lambda: _cpu_s(pid) - base > 0.25, what="the callback to spin", interval=0.01)
        _kill(pid)  # well before its 1 s CPU limit
        result = _wait_done(c, run)
        assert result == {"type": "success", "value": 1, "attempts": 1}
        assert completions(c, run) == [{"result": result, "context": {"spin": "cb-killed"}}]
        assert c.query("attempts", key="cb-killed") == 1  # the action was not retried
        assert any(f"recording the outcome of run {run}" in e.get("line", "") for e in d.logs())


def test_an_on_complete_past_its_time_limit_is_a_failed_callback(daemon_for) -> None:  # type: ignore[no-untyped-def]
    """A callback killed by its CPU limit would be killed again: it counts as one that raised (logged, its
    writes discarded), and the run completes; neither the action nor the callback runs again."""
    d = daemon_for(APP, env=CLOCK)
    with d.client() as c:
        run = c.mutation("start", action="flaky", args={"key": "cb-slow", "value": 1, "arm": True},
                         context={"spin": "cb-slow"})
        assert _wait_done(c, run) == {"type": "success", "value": 1, "attempts": 1}
        assert completions(c, run) == []
        assert c.query("attempts", key="cb-slow") == 1
        wait_for(lambda: any(f"on_complete of run {run} failed" in e.get("line", "")
                             # the CPU limit, or on a starved machine the wall-clock backstop first
                             and ("query_mutation_timeout_s" in e.get("line", "")
                                  or "query_mutation_wall_timeout_s" in e.get("line", "")) for e in d.logs()),
                 what="the callback's time limit in the logs", timeout=WAIT_S)
