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
from runtime.errors import IsolationError, NotFoundError, ValidationError
from runtime.testing import CLOCK, RunningDaemon, wait_for

APP = Path(__file__).parent / "apps" / "retrier" / "app.py"
HOUR = 3600.0
DAY = 24 * HOUR


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:  # type: ignore[no-untyped-def]
    return module_daemon_for(APP, env=CLOCK)


def status(c: Client, run_id: str, mount: str = "retries") -> dict[str, Any]:
    return c.query("status", run_id=run_id, mount=mount)  # type: ignore[no-any-return]


def completed(c: Client, run_id: str, mount: str = "retries") -> dict[str, Any]:
    """Wait until the run completed; its result."""
    st = wait_for(lambda: (s := status(c, run_id, mount))["type"] == "completed" and s,
                  what=f"run {run_id} to complete")
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
