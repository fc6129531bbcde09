"""A call killed for its own time limit takes its worker with it; the queries that shared that worker did
nothing wrong, so they are run again on the replacement instead of failing (issue 12: no failed calls).

The query is sent while the spinning mutation holds the worker's only thread (its CPU time, read from
``/proc``, is seen rising first), so it is queued in that worker when the worker is killed, on a fast machine
and a slow one alike.  Before the fix the query failed with WorkerCrashed (or, in a race with the kill, with
a ``query_mutation_timeout_s`` it never used).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runtime.coordinator.kernel.cputime import process_cpu_s
from runtime.errors import LimitExceeded
from runtime.testing import RunningDaemon

APP = Path(__file__).parent / "apps" / "usertime" / "app.py"
ENV = {"BULKHEAD_QUERY_MUTATION_TIMEOUT_S": "0.5", "BULKHEAD_QUARANTINE_AFTER": "1000"}


def _wait_spinning(pid: int, since: float) -> None:
    deadline = time.monotonic() + 120
    while (process_cpu_s(pid) or 0.0) - since < 0.05:
        assert time.monotonic() < deadline, "the spinning mutation never started"
        time.sleep(0.005)


@pytest.mark.parametrize("queries", [1, 3])
def test_queries_queued_behind_a_call_that_overruns_are_run_again(daemon_for, queries: int) -> None:
    d: RunningDaemon = daemon_for(APP, env=ENV)
    with d.client() as c:
        c.mutation("reads", n=2)
        c.mutation("reads", n=3)
        expected = c.query("total", salt=-1)
    assert expected == 5
    pid = d.worker_pid("")
    before = process_cpu_s(pid) or 0.0
    with ThreadPoolExecutor(queries + 1) as pool:
        def spin() -> BaseException | None:
            with d.client() as c:
                try:
                    c.mutation("spin")
                except LimitExceeded as exc:
                    return exc
            return None

        spun = pool.submit(spin)
        _wait_spinning(pid, before)

        def total(salt: int) -> int:
            with d.client() as c:
                return int(c.query("total", salt=salt))  # a salt of its own: not answered from the query cache

        answers = [pool.submit(total, i) for i in range(queries)]
        error = spun.result(timeout=300)
        assert isinstance(error, LimitExceeded) and error.fields["limit"] == "query_mutation_timeout_s"
        assert [a.result(timeout=300) for a in answers] == [expected] * queries
    assert d.worker_pid("") != pid, "the spinning mutation's worker was replaced"
