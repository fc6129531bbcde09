"""The time limits count a function's own time (issue 12), through a real daemon and real workers.

A query or mutation is charged the CPU its worker uses while it runs, so waiting
for the coordinator's answers or for a CPU costs it nothing; a spinning one is
still killed after its limit of CPU, a blocked one by the wall-clock backstop,
and a sleeping action after its (wall) limit.

The waits are made by construction, not by load: the test stops the worker
(SIGSTOP: a process that gets no CPU, as on a loaded machine) or the coordinator
(whose answers then take as long as the test likes), so every outcome below is
the same on a fast and a slow machine.  Under the rule before issue 12 (wall
time minus nested calls) the first three tests fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from runtime.coordinator.kernel.cputime import CpuMeter, process_cpu_s
from runtime.errors import LimitExceeded
from runtime.testing import RunningDaemon

APP = Path(__file__).parent / "apps" / "usertime" / "app.py"
LIMIT_S = 0.3
BACKSTOP_S = 4.0
ENV = {
    "BULKHEAD_QUERY_MUTATION_TIMEOUT_S": str(LIMIT_S),
    "BULKHEAD_QUERY_MUTATION_WALL_TIMEOUT_S": str(BACKSTOP_S),
    "BULKHEAD_ACTION_TIMEOUT_S": "1",
    "BULKHEAD_QUARANTINE_AFTER": "1000",  # the kills below are on purpose
    "BULKHEAD_RESTART_BACKOFF_MAX_S": "0.3",
}


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:  # type: ignore[no-untyped-def]
    return module_daemon_for(APP, env=ENV)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as p:
        yield p


def _submit(pool: ThreadPoolExecutor, d: RunningDaemon, fn: str, **args: Any) -> Future[Any]:
    def call() -> Any:
        with d.client(admin=True) as c:
            return c.call(fn, args)

    return pool.submit(call)


@contextmanager
def _stopped(pid: int) -> Iterator[None]:
    """The process gets no CPU at all inside the block."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def test_waiting_for_a_cpu_is_not_charged(daemon: RunningDaemon, pool: ThreadPoolExecutor) -> None:
    pid = daemon.worker_pid("")
    with _stopped(pid):  # the invocation is sent, and waits 5x its limit for a CPU
        call = _submit(pool, daemon, "reads", n=20)
        time.sleep(5 * LIMIT_S)
    assert call.result(timeout=60) == 20
    assert daemon.worker_pid("") == pid  # not killed


def test_waiting_for_the_coordinators_answers_is_not_charged(daemon: RunningDaemon, pool: ThreadPoolExecutor) -> None:
    pid = daemon.worker_pid("")
    with _stopped(pid):
        call = _submit(pool, daemon, "reads", n=20)
        time.sleep(LIMIT_S / 2)  # the coordinator sends the invocation; the worker has not started it
        os.kill(daemon.pid, signal.SIGSTOP)
    try:
        time.sleep(5 * LIMIT_S)  # the worker runs up to its first read, whose answer takes this long
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    assert call.result(timeout=60) == 20
    assert daemon.worker_pid("") == pid


def test_a_starved_spinner_is_killed_after_its_limit_of_cpu_not_of_wall_time(daemon: RunningDaemon,
                                                                              pool: ThreadPoolExecutor) -> None:
    pid = daemon.worker_pid("")
    started = time.monotonic()
    call = _submit(pool, daemon, "spin")
    time.sleep(LIMIT_S / 3)  # it spins: at most LIMIT_S / 3 of CPU so far
    with _stopped(pid):
        time.sleep(1.0)
    with pytest.raises(LimitExceeded) as info:
        call.result(timeout=60)
    assert time.monotonic() - started >= 1.0  # the stopped second was not charged
    assert info.value.limit == "query_mutation_timeout_s"
    assert "CPU time of its worker" in info.value.message and "its worker was killed" in info.value.message
    assert float(info.value.value.rstrip("s")) >= LIMIT_S
    with daemon.client() as c:
        assert c.mutation("reads", n=1) == 1  # served by a fresh worker
    assert daemon.worker_pid("") != pid


def test_a_spinning_mutation_is_killed_after_its_limit_and_the_worker_replaced(daemon: RunningDaemon) -> None:
    pid = daemon.worker_pid("")
    with daemon.client() as c:
        with pytest.raises(LimitExceeded) as info:
            c.mutation("spin")
        assert info.value.limit == "query_mutation_timeout_s"
        assert float(info.value.maximum.rstrip("s")) == LIMIT_S
        assert c.mutation("reads", n=2) == 2  # a fresh worker serves the mount
    assert daemon.worker_pid("") != pid
    assert any("ran past query_mutation_timeout_s" in e["line"] for e in daemon.logs())


def test_a_mutation_blocked_without_using_cpu_is_ended_by_the_wall_backstop(daemon: RunningDaemon) -> None:
    pid = daemon.worker_pid("")
    started = time.monotonic()
    with daemon.client() as c:
        with pytest.raises(LimitExceeded) as info:
            c.mutation("block", seconds=60.0)
        elapsed = time.monotonic() - started
        assert info.value.limit == "query_mutation_wall_timeout_s"
        assert "query_mutation_timeout_s" in info.value.message  # says which CPU limit it stayed under
        assert BACKSTOP_S <= elapsed < 30.0
        assert c.mutation("reads", n=1) == 1
    assert daemon.worker_pid("") != pid


def test_a_sleeping_action_is_killed_after_its_limit(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        with pytest.raises(LimitExceeded) as info:
            c.action("nap", seconds=30.0)
        assert info.value.limit == "action_timeout_s"
        assert c.action("nap", seconds=0.01) == "woke"


# --- the CPU clock itself ------------------------------------------------------------------------


def test_the_cpu_clock_counts_running_not_waiting() -> None:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 30
        while (process_cpu_s(spinner.pid) or 0.0) < 0.2:
            assert time.monotonic() < deadline, "a spinning process accrued no CPU in 30 s"
            time.sleep(0.05)
        before = process_cpu_s(sleeper.pid)
        assert before is not None
        time.sleep(0.5)
        after = process_cpu_s(sleeper.pid)
        assert after is not None and after - before <= 0.05
        meter = CpuMeter()
        first = meter.read(spinner.pid)
        assert first is not None and meter.read(spinner.pid, max_age_s=60.0) == first  # reused
        time.sleep(0.1)
        fresh = meter.read(spinner.pid)
        assert fresh is not None and fresh >= first
    finally:
        spinner.kill()
        sleeper.kill()
        spinner.wait()
        sleeper.wait()
    assert process_cpu_s(spinner.pid) is None  # reaped: no such process
    assert CpuMeter().read(None) is None
