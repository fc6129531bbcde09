"""The workpool component through a real daemon (tests/apps/workpool: two pools with separate data).

The clock is controllable: retry back-offs and delayed jobs move forward by ``advance_clock``, never
by sleeping.  Jobs that must stay running wait on a gate a test opens; what a job did is in the app's
tables (gauges of concurrent runs, events in order, attempts), read after the fact.
"""

from pathlib import Path
from typing import Any

import pytest

from runtime.client import Client
from runtime.errors import ValidationError
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
    assert client.query("stats", which="a")["slots_in_use"] == 0
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
    assert client.query("stats", which="a")["max_parallelism"] == 10
