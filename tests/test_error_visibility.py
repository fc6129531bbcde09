"""Errors that help without leaking (issue 18 item 4): a caller without the admin key gets the error's type,
message and data but never the server-side traceback (paths, source lines); the admin key gets it, and every
failed call is in the logs with it.  Writing from a query says exactly that.  Through a real daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import CallRuleError, UserCodeError
from runtime.testing import RunningDaemon

APP = Path(__file__).parent / "apps" / "errs" / "app.py"


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:
    return module_daemon_for(APP)


def test_a_client_without_the_key_gets_no_traceback(daemon: RunningDaemon) -> None:
    with daemon.client() as c, pytest.raises(UserCodeError) as err:
        c.mutation("divide", n=0)
    assert "ZeroDivisionError" in err.value.message
    assert "traceback" not in err.value.fields
    assert str(APP.parent) not in repr(err.value.fields) + err.value.message


def test_the_admin_key_gets_the_traceback_with_the_users_file_and_line(daemon: RunningDaemon) -> None:
    with daemon.client(admin=True) as c, pytest.raises(UserCodeError) as err:
        c.mutation("divide", n=0)
    trace = err.value.fields["traceback"]
    assert str(APP) in trace and "return 1 / n" in trace


def test_every_failed_call_is_logged_with_its_traceback(daemon: RunningDaemon) -> None:
    with daemon.client() as c, pytest.raises(UserCodeError):
        c.mutation("divide", n=0)
    lines = [e for e in daemon.logs() if e["function"] == "divide" and "call failed" in e["line"]]
    assert lines and "ZeroDivisionError" in lines[-1]["line"] and "return 1 / n" in lines[-1]["line"]
    assert lines[-1]["request"].startswith("client-")


def test_writing_from_a_query_says_so(daemon: RunningDaemon) -> None:
    with daemon.client() as c, pytest.raises(CallRuleError) as err:
        c.query("write_from_query")
    assert "a query cannot write" in err.value.message and "ctx.db.insert" in err.value.message
