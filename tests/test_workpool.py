"""The workpool component through a real daemon (tests/apps/workpool: two pools with separate data).

The clock is controllable: retry back-offs and delayed jobs move forward by ``advance_clock``, never
by sleeping.  Jobs that must stay running wait on a gate a test opens; what a job did is in the app's
tables (gauges of concurrent runs, events in order, attempts), read after the fact.
"""

import threading
from pathlib import Path
from typing import Any

import pytest

from components.workpool import RetryBehavior, Workpool
from runtime import MountRef
from runtime.client import Client
from runtime.errors import IsolationError, ValidationError
from runtime.testing import RunningDaemon, wait_for

APP = Path(__file__).parent / "apps" / "workpool" / "app.py"
CLOCK = {"BULKHEAD_CONTROLLABLE_CLOCK": "1"}


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:  # type: ignore[no-untyped-def]
    return module_daemon_for(APP, env=CLOCK)


def _jobs(prefix: str, n: int, **kw: Any) -> list[dict[str, Any]]:
    return [{"job": f"{prefix}{i}", **kw} for i in range(n)]


def _finished(client: Client, which: str, ids: list[str]) -> list[dict[str, Any]] | None:
    st = client.query("status_batch", which=which, ids=ids)
    return st if all(s["state"] == "finished" for s in st) else None


def wait_finished(client: Client, which: str, ids: list[str], what: str = "every job to finish"
                  ) -> list[dict[str, Any]]:
    return wait_for(lambda: _finished(client, which, ids), what=what, timeout=60)  # type: ignore[no-any-return]


def test_an_action_runs_and_on_complete_gets_its_result_and_context(client: Client) -> None:
    [wid] = client.mutation("enqueue", which="a", kind="action", fn="work",
                            args=_jobs("one", 1, gauges=["one"]), opts={"context": {"user": "ann"}})
    [status] = wait_finished(client, "a", [wid])
    assert status == {"state": "finished", "result": {"kind": "success", "return_value": "one0 done"}}
    done = wait_for(lambda: client.query("completions", work_ids=[wid]), what="on_complete")
    assert done == [{"work_id": wid, "context": {"user": "ann"},
                     "result": {"kind": "success", "return_value": "one0 done"}}]


def test_parallelism_is_never_exceeded_under_load(client: Client) -> None:
    client.mutation("set_parallelism", which="a", n=3)
    ids = client.mutation("enqueue", which="a", kind="action", fn="work",
                          args=_jobs("load", 20, gauges=["load"], gate="load"), batch=True)
    ids += client.mutation("enqueue", which="a", kind="action", fn="work",
                           args=_jobs("more", 10, gauges=["load"], gate="load"))
    wait_for(lambda: (client.query("gauge", name="load") or {}).get("active") == 3, what="3 jobs running")
    st = client.query("stats", which="a")
    assert (st["running"], st["pending"], st["slots_in_use"]) == (3, 27, 3)
    states = [s["state"] for s in client.query("status_batch", which="a", ids=ids)]
    assert states.count("running") == 3 and states.count("pending") == 27
    client.mutation("open_gate", name="load")
    wait_finished(client, "a", ids)
    g = client.query("gauge", name="load")
    assert g == {"active": 0, "max_active": 3, "starts": 30}
    wait_for(lambda: client.query("stats", which="a")["slots_in_use"] == 0, what="the slots to be freed")
    client.mutation("set_parallelism", which="a", n=10)


def test_mutations_and_queries_run_once_and_report_results(client: Client) -> None:
    ids = client.mutation("enqueue", which="a", kind="mutation", fn="write_event",
                          args=[{"job": "m1", "group": "mq"}, {"job": "m2", "group": "mq", "fail": True}],
                          opts={"context": "ctx"})
    ids += client.mutation("enqueue", which="a", kind="query", fn="double", args=[{"x": 21}], batch=True)
    st = wait_finished(client, "a", ids)
    assert st[0]["result"] == {"kind": "success", "return_value": "m1"}
    assert st[1]["result"]["kind"] == "failed" and "m2 refused" in st[1]["result"]["error"]
    assert st[2]["result"] == {"kind": "success", "return_value": 42}
    assert client.query("events", group="mq") == [["m1", "mutation"]]  # the failed one's write rolled back
    done = wait_for(lambda: len(c := client.query("completions", work_ids=ids)) == 3 and c, what="3 callbacks")
    assert [d["result"]["kind"] for d in done] == ["success", "failed", "success"]
    assert [d["context"] for d in done] == ["ctx", "ctx", None]


def test_a_handle_string_is_enqueued_like_a_reference(client: Client) -> None:
    handle = client.mutation("handle_of", fn="write_event")
    wid = client.mutation("enqueue_handle", which="b", handle=handle, args={"job": "h1", "group": "hdl"})
    assert wait_finished(client, "b", [wid])[0]["result"] == {"kind": "success", "return_value": "h1"}
    assert client.query("events", group="hdl") == [["h1", "mutation"]]


def test_bad_input_is_refused_naming_what_was_wrong(client: Client) -> None:
    for n in (-1, 201):
        with pytest.raises(ValidationError, match="max_parallelism must be an int from 0"):
            client.mutation("set_parallelism", which="a", n=n)
    with pytest.raises(ValidationError, match="not a function handle"):
        client.mutation("enqueue_handle", which="a", handle="nope", args={})
    with pytest.raises(ValidationError, match="run_at or run_after, not both"):
        client.mutation("enqueue", which="a", kind="mutation", fn="write_event", args=[{"job": "x"}],
                        opts={"run_at": 1.0, "run_after": 1.0})
    with pytest.raises(ValidationError, match="max_attempts"):
        client.mutation("enqueue", which="a", kind="action", fn="work", args=[{"job": "x", "gauges": []}],
                        opts={"retry": {"max_attempts": 0}})
    with pytest.raises(ValidationError, match="fn: 'double' is a query, not an action"):
        client.mutation("enqueue", which="a", kind="action", fn="double", args=[{"x": 1}])
    with pytest.raises(ValidationError, match="log_level must be one of DEBUG, INFO, REPORT, WARNING, ERROR"):
        client.mutation("set_log_level", which="a", level="LOUD")
    assert client.query("stats", which="a")["max_parallelism"] == 10


def test_the_client_refuses_bad_settings_at_import() -> None:
    mount = MountRef("pool")
    for bad in (-1, 201, 2.5, True):
        with pytest.raises(ValueError, match="max_parallelism must be an int from 0"):
            Workpool(mount, max_parallelism=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log_level must be one of"):
        Workpool(mount, log_level="LOUD")
    with pytest.raises(ValueError, match="base"):
        Workpool(mount, default_retry_behavior={"base": 0.5})
    assert Workpool(mount, max_parallelism=0).max_parallelism == 0
    assert RetryBehavior() == RetryBehavior(max_attempts=5, initial_backoff_ms=250, base=2)


def test_ids_of_the_other_pool_are_refused(client: Client) -> None:
    [wid] = client.mutation("enqueue", which="a", kind="query", fn="double", args=[{"x": 3}], callback=False)
    with pytest.raises(IsolationError):
        client.query("status", which="b", id=wid)
    with pytest.raises(IsolationError):
        client.mutation("cancel", which="b", id=wid)
    assert wait_finished(client, "a", [wid])[0]["result"] == {"kind": "success", "return_value": 6}


def test_a_status_subscription_follows_the_job(client: Client, daemon: RunningDaemon) -> None:
    client.mutation("set_parallelism", which="a", n=0)
    [wid] = client.mutation("enqueue", which="a", kind="action", fn="work",
                            args=[{"job": "sub", "gauges": ["sub"], "gate": "sub"}], callback=False)
    with daemon.client() as watcher:
        sub = watcher.subscribe("status", which="a", id=wid)
        assert sub.next(timeout=30) == {"state": "pending", "previous_attempts": 0}
        client.mutation("set_parallelism", which="a", n=10)
        assert sub.next(timeout=30) == {"state": "running", "previous_attempts": 0}
        client.mutation("open_gate", name="sub")
        assert sub.next(timeout=30) == {"state": "finished", "result": {"kind": "success", "return_value": "sub done"}}
        sub.close()


def _settled(client: Client, which: str) -> dict[str, Any] | None:
    """The pool's stats once none of its own scheduler jobs (kicks, wrappers) is pending."""
    st = client.query("stats", which=which)
    return st if st["scheduled"] == 0 else None


def test_retries_back_off_exponentially_with_jitter_then_succeed(client: Client, daemon: RunningDaemon) -> None:
    # pool b retries by default: 3 attempts, 1 s then 10 s (times U[0.5, 1.5))
    [wid] = client.mutation("enqueue", which="b", kind="action", fn="work",
                            args=[{"job": "r1", "gauges": [], "fail_times": 2}])
    wait_for(lambda: client.query("status", which="b", id=wid) == {"state": "pending", "previous_attempts": 1},
             what="the first attempt to fail")
    assert client.query("tries", job="r1")["n"] == 1
    daemon.advance_clock(1.5)
    wait_for(lambda: client.query("status", which="b", id=wid) == {"state": "pending", "previous_attempts": 2},
             what="the second attempt to fail")
    daemon.advance_clock(15)
    [st] = wait_finished(client, "b", [wid])
    assert st["result"] == {"kind": "success", "return_value": "r1 done"}
    at = client.query("tries", job="r1")["at"]
    assert len(at) == 3
    assert at[1] - at[0] >= 0.5 and at[2] - at[1] >= 5.0  # 1000 ms * 10 ** (n - 1), jitter at least 0.5
    assert at[1] - at[0] < 1.5 + 10 and at[2] - at[1] < 15 + 10  # never more than the jitter's 1.5 (+ run time)
    assert [c["result"]["kind"] for c in client.query("completions", work_ids=[wid])] == ["success"]


def test_attempts_run_out_and_non_retryable_fails_at_once(client: Client, daemon: RunningDaemon) -> None:
    ids = client.mutation("enqueue", which="b", kind="action", fn="work",
                          args=[{"job": "out", "gauges": [], "fail_times": 9},
                                {"job": "nr", "gauges": [], "fail_times": 9, "non_retryable": True}],
                          opts={"retry": {"max_attempts": 2, "initial_backoff_ms": 100, "base": 2}})
    wait_for(lambda: client.query("status", which="b", id=ids[0])["state"] == "pending"
             and client.query("status", which="b", id=ids[0])["previous_attempts"] == 1, what="a first failure")
    daemon.advance_clock(0.2)
    out, nr = wait_finished(client, "b", ids)
    assert out["result"]["kind"] == "failed" and "out failed attempt 2" in out["result"]["error"]
    assert nr["result"]["kind"] == "failed" and "nr cannot work" in nr["result"]["error"]
    assert client.query("tries", job="out")["n"] == 2 and client.query("tries", job="nr")["n"] == 1
    done = wait_for(lambda: len(c := client.query("completions", work_ids=ids)) == 2 and c, what="2 callbacks")
    assert sorted(d["work_id"] for d in done) == sorted(ids)


def test_actions_are_not_retried_unless_asked(client: Client) -> None:
    [wid] = client.mutation("enqueue", which="a", kind="action", fn="work",
                            args=[{"job": "once", "gauges": [], "fail_times": 1}])
    [st] = wait_finished(client, "a", [wid])
    assert st["result"]["kind"] == "failed" and client.query("tries", job="once")["n"] == 1


def test_run_after_and_run_at_wait_for_their_time(client: Client, daemon: RunningDaemon) -> None:
    later = client.mutation("enqueue", which="a", kind="mutation", fn="write_event",
                            args=[{"job": "after", "group": "delay"}], opts={"run_after": 600})
    at = client.mutation("enqueue", which="a", kind="mutation", fn="write_event",
                         args=[{"job": "at", "group": "delay"}], opts={"run_at": daemon.clock() + 1200})
    assert client.query("status_batch", which="a", ids=later + at) == [
        {"state": "pending", "previous_attempts": 0}] * 2
    daemon.advance_clock(601)
    wait_finished(client, "a", later)
    assert client.query("status", which="a", id=at[0])["state"] == "pending"
    assert client.query("events", group="delay") == [["after", "mutation"]]
    daemon.advance_clock(600)
    wait_finished(client, "a", at)
    assert client.query("events", group="delay") == [["after", "mutation"], ["at", "mutation"]]


def test_pause_with_zero_then_resume(client: Client) -> None:
    client.mutation("set_parallelism", which="b", n=0)
    ids = client.mutation("enqueue", which="b", kind="action", fn="work",
                          args=_jobs("paused", 5, gauges=["paused"], gate="paused"), batch=True)
    st = wait_for(lambda: _settled(client, "b"), what="the enqueue's kick to run")
    assert (st["pending"], st["running"]) == (5, 0)
    client.mutation("set_parallelism", which="b", n=2)
    wait_for(lambda: (client.query("gauge", name="paused") or {}).get("active") == 2, what="2 jobs running")
    st = client.query("stats", which="b")
    assert (st["pending"], st["running"]) == (3, 2)
    client.mutation("open_gate", name="paused")
    wait_finished(client, "b", ids)
    assert client.query("gauge", name="paused")["max_active"] == 2
    client.mutation("set_parallelism", which="b", n=10)


def test_cancel_in_every_state(client: Client, daemon: RunningDaemon) -> None:
    client.mutation("set_parallelism", which="a", n=1)
    # running (gated, would be retried once), pending behind it, and one finished already
    [done] = client.mutation("enqueue", which="a", kind="query", fn="double", args=[{"x": 1}])
    wait_finished(client, "a", [done])
    run_ids = client.mutation("enqueue", which="a", kind="action", fn="work",
                              args=[{"job": "c-run", "gauges": ["c"], "gate": "c", "fail_times": 1}],
                              opts={"retry": True})
    wait_for(lambda: (client.query("gauge", name="c") or {}).get("active") == 1, what="the job to run")
    pend = client.mutation("enqueue", which="a", kind="action", fn="work", args=[{"job": "c-pend", "gauges": ["c"]}])
    assert client.mutation("cancel", which="a", id=pend[0]) is True
    assert client.query("status", which="a", id=pend[0]) == {"state": "finished", "result": {"kind": "canceled"}}
    assert client.mutation("cancel", which="a", id=run_ids[0]) is True
    assert client.query("status", which="a", id=run_ids[0]) == {"state": "running", "previous_attempts": 0}
    assert client.mutation("cancel", which="a", id=done) is False
    assert client.mutation("cancel", which="a", id=pend[0]) is False
    client.mutation("open_gate", name="c")
    [st] = wait_finished(client, "a", run_ids)
    assert st["result"] == {"kind": "canceled"}  # it failed and would have been retried: canceled instead
    assert client.query("tries", job="c-run")["n"] == 1 and client.query("tries", job="c-pend") is None
    calls = wait_for(lambda: len(c := client.query("completions", work_ids=pend + run_ids)) == 2 and c,
                     what="2 callbacks")
    assert [c["result"] for c in calls] == [{"kind": "canceled"}, {"kind": "canceled"}]
    client.mutation("set_parallelism", which="a", n=10)


def test_a_canceled_running_job_still_records_its_success(client: Client) -> None:
    ids = client.mutation("enqueue", which="a", kind="action", fn="work",
                          args=[{"job": "cs", "gauges": ["cs"], "gate": "cs"}])
    wait_for(lambda: (client.query("gauge", name="cs") or {}).get("active") == 1, what="the job to run")
    assert client.mutation("cancel", which="a", id=ids[0]) is True
    client.mutation("open_gate", name="cs")
    [st] = wait_finished(client, "a", ids)
    assert st["result"] == {"kind": "success", "return_value": "cs done"}


def test_cancel_during_backoff_and_cancel_all(client: Client, daemon: RunningDaemon) -> None:
    [wid] = client.mutation("enqueue", which="b", kind="action", fn="work",
                            args=[{"job": "bo", "gauges": [], "fail_times": 5}])
    wait_for(lambda: client.query("status", which="b", id=wid) == {"state": "pending", "previous_attempts": 1},
             what="a first failure")
    assert client.mutation("cancel", which="b", id=wid) is True
    assert client.query("status", which="b", id=wid)["result"] == {"kind": "canceled"}
    client.mutation("set_parallelism", which="b", n=0)
    ids = client.mutation("enqueue", which="b", kind="mutation", fn="write_event",
                          args=_jobs("ca", 150, group="ca"), batch=True, callback=False)
    assert client.mutation("cancel_all", which="b", limit=10) == 10
    assert sum(s["state"] == "finished" for s in client.query("status_batch", which="b", ids=ids)) == 10
    assert client.mutation("cancel_all", which="b") == 64  # the rest in scheduled continuations
    sts = wait_finished(client, "b", ids)
    assert {s["result"]["kind"] for s in sts} == {"canceled"}
    client.mutation("set_parallelism", which="b", n=10)
    assert client.query("events", group="ca") == []


def test_jobs_with_the_same_key_never_overlap_and_run_in_order(client: Client) -> None:
    client.mutation("set_parallelism", which="a", n=5)
    ids = client.mutation("enqueue", which="a", kind="action", fn="work",
                          args=_jobs("k1-", 4, gauges=["key:k1", "keys"], gate="keys", group="k1"),
                          opts={"key": "k1"}, batch=True)
    ids += client.mutation("enqueue", which="a", kind="action", fn="work",
                           args=_jobs("k2-", 3, gauges=["key:k2", "keys"], gate="keys", group="k2"),
                           opts={"key": "k2"})
    wait_for(lambda: (client.query("gauge", name="keys") or {}).get("active") == 2, what="one job per key running")
    st = wait_for(lambda: _settled(client, "a"), what="the kicks to run")
    assert (st["running"], st["pending"]) == (2, 5)  # 3 free slots, but every other job waits for its key
    client.mutation("open_gate", name="keys")
    wait_finished(client, "a", ids)
    for key, n in (("k1", 4), ("k2", 3)):
        assert client.query("gauge", name=f"key:{key}") == {"active": 0, "max_active": 1, "starts": n}
        assert client.query("events", group=key) == [[f"{key}-{i}", w] for i in range(n) for w in ("start", "end")]
    client.mutation("set_parallelism", which="a", n=10)


def test_a_keyed_job_keeps_its_key_through_its_retries(client: Client, daemon: RunningDaemon) -> None:
    first = client.mutation("enqueue", which="b", kind="action", fn="work",
                            args=[{"job": "k3-0", "gauges": ["key:k3"], "group": "k3", "fail_times": 1}],
                            opts={"key": "k3"})
    second = client.mutation("enqueue", which="b", kind="action", fn="work",
                             args=[{"job": "k3-1", "gauges": ["key:k3"], "group": "k3"}], opts={"key": "k3"})
    wait_for(lambda: client.query("status", which="b", id=first[0]) == {"state": "pending", "previous_attempts": 1},
             what="the first attempt to fail")
    wait_for(lambda: _settled(client, "b"), what="the kicks to run")
    assert client.query("status", which="b", id=second[0]) == {"state": "pending", "previous_attempts": 0}
    daemon.advance_clock(1.5)
    wait_finished(client, "b", first + second)
    assert client.query("events", group="k3") == [["k3-0", "start"], ["k3-0", "end"], ["k3-0", "start"],
                                                  ["k3-0", "end"], ["k3-1", "start"], ["k3-1", "end"]]


def test_large_arguments_are_stored_out_of_line(client: Client) -> None:
    big = "x" * 20_000
    ids = client.mutation("enqueue", which="b", kind="mutation", fn="write_event",
                          args=[{"job": big, "group": "big"}], callback=False)
    assert client.query("stats", which="b")["payloads"] >= 1
    ids += client.mutation("enqueue", which="b", kind="action", fn="work",
                           args=[{"job": "bigact", "gauges": [], "note": big}], callback=False)
    assert client.query("stats", which="b")["payloads"] >= 1
    st = wait_finished(client, "b", ids)
    assert [s["result"] for s in st] == [{"kind": "success", "return_value": big},
                                         {"kind": "success", "return_value": "bigact done" + big}]
    assert client.query("stats", which="b")["payloads"] == 0


def test_enqueue_never_conflicts_with_a_busy_pool(client: Client, daemon: RunningDaemon) -> None:
    client.mutation("set_parallelism", which="b", n=2)
    held = client.mutation("enqueue", which="b", kind="action", fn="work",
                           args=_jobs("busy", 2, gauges=["busy"], gate="busy"), callback=False)
    wait_for(lambda: (client.query("gauge", name="busy") or {}).get("active") == 2, what="the pool to be full")
    wait_for(lambda: _settled(client, "b"), what="the kicks to run")
    before = client.mutation("enqueue_runs")
    ids: list[str] = []

    def producer(t: int) -> None:
        with daemon.client() as c:
            for i in range(10):
                ids.extend(c.mutation("enqueue", which="b", kind="mutation", fn="write_event",
                                      args=[{"job": f"p{t}-{i}", "group": "busy"}], callback=False))

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    st = wait_for(lambda: _settled(client, "b"), what="the kicks to run")
    assert len(ids) == 40 and st["pending"] == 40
    assert client.mutation("enqueue_runs") == before + 40  # 40 enqueues, none re-run after a conflict
    client.mutation("open_gate", name="busy")
    client.mutation("set_parallelism", which="b", n=10)
    wait_finished(client, "b", held + ids)
    assert len(client.query("events", group="busy")) == 40


@pytest.mark.slow
def test_parallelism_holds_with_producers_and_short_jobs_racing(client: Client, daemon: RunningDaemon) -> None:
    client.mutation("set_parallelism", which="b", n=4)
    ids: list[str] = []

    def producer(t: int) -> None:
        with daemon.client() as c:
            for i in range(5):
                ids.extend(c.mutation("enqueue", which="b", kind="action", fn="work", callback=False, batch=True,
                                      args=_jobs(f"race{t}-{i}-", 8, gauges=["race"])))

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    wait_finished(client, "b", ids)
    g = client.query("gauge", name="race")
    assert g["starts"] == 120 and g["active"] == 0 and 1 <= g["max_active"] <= 4
    client.mutation("set_parallelism", which="b", n=10)


def test_settings_on_the_client_are_written_by_every_enqueue(client: Client) -> None:
    client.mutation("enqueue", which="c", kind="query", fn="double", args=[{"x": 1}], callback=False)
    assert client.query("config", which="c") == {"max_parallelism": 1, "status_ttl_s": 86400.0,
                                                  "log_level": "WARNING"}
    client.mutation("set_parallelism", which="c", n=5)
    client.mutation("set_log_level", which="c", level="DEBUG")
    assert client.query("config", which="c")["max_parallelism"] == 5
    [wid] = client.mutation("enqueue", which="c", kind="query", fn="double", args=[{"x": 2}], callback=False)
    assert client.query("config", which="c") == {"max_parallelism": 1, "status_ttl_s": 86400.0,
                                                  "log_level": "WARNING"}
    assert wait_finished(client, "c", [wid])[0]["result"]["return_value"] == 4
    assert client.query("config", which="a")["max_parallelism"] == 10  # the other pools keep their own


def test_only_actions_are_retried_and_run_times_are_clamped(client: Client, daemon: RunningDaemon) -> None:
    handle = client.mutation("handle_of", fn="write_event")
    with daemon.client(admin=True) as admin, pytest.raises(ValidationError, match="only actions are retried"):
        admin.mutation("pool_a:enqueue", fn_type="mutation", handle=handle, args_list=[{"job": "r"}],
                       retry={"max_attempts": 2, "initial_backoff_ms": 1, "base": 2})
    [wid] = client.mutation("enqueue", which="a", kind="mutation", fn="write_event", callback=False,
                            args=[{"job": "old", "group": "clamp"}], opts={"run_at": 1.0})
    wait_finished(client, "a", [wid])  # a run time years ago runs now
    assert any("more than a year in the past" in e["line"] and e["mount"] == "pool_a" for e in daemon.logs())


def test_cancel_all_stops_the_retries_of_running_jobs(client: Client) -> None:
    ids = client.mutation("enqueue", which="a", kind="action", fn="work", opts={"retry": True},
                          args=_jobs("car", 2, gauges=["car"], gate="car", fail_times=3), callback=False)
    wait_for(lambda: (client.query("gauge", name="car") or {}).get("active") == 2, what="2 jobs running")
    assert client.mutation("cancel_all", which="a") == 2
    assert [s["state"] for s in client.query("status_batch", which="a", ids=ids)] == ["running", "running"]
    client.mutation("open_gate", name="car")
    assert [s["result"] for s in wait_finished(client, "a", ids)] == [{"kind": "canceled"}] * 2
    assert client.query("tries", job="car0")["n"] == 1 and client.query("tries", job="car1")["n"] == 1


def test_a_job_backing_off_holds_no_slot(client: Client, daemon: RunningDaemon) -> None:
    client.mutation("set_parallelism", which="b", n=1)
    [slow] = client.mutation("enqueue", which="b", kind="action", fn="work", callback=False,
                             args=[{"job": "bk", "gauges": [], "fail_times": 1}])
    wait_for(lambda: client.query("status", which="b", id=slow) == {"state": "pending", "previous_attempts": 1},
             what="the first attempt to fail")
    [other] = client.mutation("enqueue", which="b", kind="query", fn="double", args=[{"x": 7}], callback=False)
    assert wait_finished(client, "b", [other])[0]["result"]["return_value"] == 14  # the clock has not moved
    assert client.query("status", which="b", id=slow) == {"state": "pending", "previous_attempts": 1}
    daemon.advance_clock(1.5)
    assert wait_finished(client, "b", [slow])[0]["result"] == {"kind": "success", "return_value": "bk done"}
    client.mutation("set_parallelism", which="b", n=10)


def test_jobs_waiting_for_a_key_do_not_hide_the_jobs_behind_them(client: Client) -> None:
    client.mutation("set_parallelism", which="a", n=2)
    ids = client.mutation("enqueue", which="a", kind="action", fn="work", opts={"key": "hol"}, callback=False,
                          batch=True, args=_jobs("hol", 20, gauges=["hol"], gate="hol"))
    ids += client.mutation("enqueue", which="a", kind="action", fn="work", callback=False,
                           args=[{"job": "free", "gauges": ["hol"], "gate": "hol"}])
    wait_for(lambda: (client.query("gauge", name="hol") or {}).get("active") == 2,
             what="the unkeyed job behind 19 waiting ones to start beside the key's first")
    assert client.query("status", which="a", id=ids[-1])["state"] == "running"
    client.mutation("open_gate", name="hol")
    wait_finished(client, "a", ids)
    client.mutation("set_parallelism", which="a", n=10)
