"""A worker left with more threads (or child processes) after a call than it had at its manifest is recycled.

The coordinator counts them in ``/proc`` after each result (sandbox/supervisor.py ``census``): the call
that left the thread behind returns its result, and the next call of that mount is served by a new
worker; a thread joined before the call returns changes nothing, and the neighbour mount (same code)
keeps its worker.  Child processes are counted the same way, but seccomp refuses ``fork`` to workers,
so this suite has no way to leave one behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.testing import RunningDaemon, wait_for

APP = Path(__file__).parent / "apps" / "recycle"


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] in "ZX"
    except FileNotFoundError:
        return True


def _pids(d: RunningDaemon) -> dict[str, int]:
    return {m["path"]: int(m["pid"]) for m in d.status()["deployment"]["mounts"]}


@pytest.mark.parametrize("zygote", ["1", "0"], ids=["zygote", "fresh-interpreters"])
def test_a_worker_that_leaves_a_thread_behind_serves_its_next_call_from_a_new_worker(  # type: ignore[no-untyped-def]
        daemon_for, zygote: str) -> None:
    d: RunningDaemon = daemon_for(APP, env={"BULKHEAD_WORKER_ZYGOTE": zygote})
    before = _pids(d)
    with d.client() as c:
        for n in range(5):
            assert c.mutation("hit", mount="spawner", n=n) == n + 1
        assert c.action("spawn_and_join") == "joined"
        assert c.mutation("hit", mount="spawner", n=5) == 6
        assert _pids(d) == before  # ordinary calls, and a thread gone before the result: same workers
        assert not _gone(before["spawner"])

        assert c.action("spawn") == "spawned"  # the call that left the thread returns normally
        assert c.mutation("hit", mount="spawner", n=6) == 7  # the next one: a new worker, the same data
        after = _pids(d)
        assert after["spawner"] != before["spawner"]
        wait_for(lambda: _gone(before["spawner"]), what="the recycled worker to be gone")
        assert after["neighbour"] == before["neighbour"] and after[""] == before[""]
        assert c.mutation("hit", mount="neighbour", n=0) == 1
        assert _pids(d)["neighbour"] == before["neighbour"]
    recycled = [e["line"] for e in d.logs() if "recycled" in e["line"]]
    assert len(recycled) == 1 and f"pid {before['spawner']}" in recycled[0] and "threads" in recycled[0], recycled


def test_a_worker_that_leaves_a_child_process_behind_is_recycled(daemon_for) -> None:  # type: ignore[no-untyped-def]
    # seccomp refuses fork to a hardened worker: only with the OS layers off can the test leave a child
    d: RunningDaemon = daemon_for(APP, env={"BULKHEAD_SANDBOX_HARDENING": "0"})
    before = _pids(d)
    with d.client() as c:
        child = c.action("fork_child")  # returned, though its worker is killed (with the child) right after
        assert child > 0
        assert c.mutation("hit", mount="spawner", n=0) == 1
        assert _pids(d)["spawner"] != before["spawner"]
        assert c.mutation("hit", mount="neighbour", n=0) == 1
    wait_for(lambda: _gone(before["spawner"]) and _gone(child), what="the recycled worker and its child to be gone")
    assert _pids(d)["neighbour"] == before["neighbour"]
    recycled = [e["line"] for e in d.logs() if "recycled" in e["line"]]
    assert len(recycled) == 1 and "1 child processes" in recycled[0], recycled
