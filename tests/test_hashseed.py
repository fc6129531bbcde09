"""Every worker runs with the same string-hash seed (``PYTHONHASHSEED`` in sandbox/supervisor.py).

Three workers (the app and two mounts of one component) build a set from the same 50 strings and
return its iteration order.  With random seeds the orders would differ (50 strings in the same order by
luck: nil chance).  With the fixed seed they are equal, forked from the zygote or started as fresh
interpreters alike, and equal again from the worker that replaces a killed one; and equal to the order
in a fresh interpreter with ``PYTHONHASHSEED=0`` (forked workers would share the zygote's seed even if
it were random).  The only process a test kills is a worker of the daemon it started, by pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime.testing import RunningDaemon, wait_for

APP = Path(__file__).parent / "apps" / "hashseed"
WORDS = [f"word-{i:02d}-{'xyz'[i % 3] * (i % 7)}" for i in range(50)]


def _orders(d: RunningDaemon) -> dict[str, list[str]]:
    with d.client() as c:
        value: Any = c.query("orders", words=WORDS)
        return value  # type: ignore[no-any-return]


@pytest.mark.parametrize("zygote", ["1", "0"], ids=["zygote", "fresh-interpreters"])
def test_workers_of_the_same_code_iterate_a_set_of_strings_identically(daemon_for, zygote: str) -> None:  # type: ignore[no-untyped-def]
    d: RunningDaemon = daemon_for(APP, env={"BULKHEAD_WORKER_ZYGOTE": zygote})
    first = _orders(d)
    assert sorted(first["app"]) == sorted(WORDS)
    assert first["app"] not in (WORDS, sorted(WORDS))  # a hash order, not the order the words came in
    assert first["left"] == first["app"] and first["right"] == first["app"]
    assert first["app"] == _order_with_seed_0()  # forked workers share a seed anyway: it must be *the* seed
    pid = d.worker_pid("left")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: d.worker_pid("left") != pid and _running(d, "left"), what="a new worker for 'left'")
    assert _orders(d) == first


def _order_with_seed_0() -> list[str]:
    code = f"import json; print(json.dumps(list(set({WORDS!r}))))"
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONHASHSEED": "0"}, capture_output=True,
                         check=True, text=True).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def _running(d: RunningDaemon, mount: str) -> bool:
    return any(m["path"] == mount and m["running"] for m in d.status()["deployment"]["mounts"])
