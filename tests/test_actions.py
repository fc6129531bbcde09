"""Actions through a real daemon: nested actions, each run_query/run_mutation its own transaction, the time limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import CallRuleError, ComponentError, LimitExceeded
from runtime.testing import start_daemon

APP = Path(__file__).parent / "apps" / "act" / "app.py"


def test_actions_nest_and_each_inner_call_is_its_own_transaction(tmp_path: Path) -> None:
    with (start_daemon(tmp_path / "data", app=APP, env={"BULKHEAD_ACTION_TIMEOUT_S": "2"}) as d,
          d.client(timeout=20) as c):
        out = c.action("outer", text="a")
        assert out["up"] == "A" and out["seen"] == ["a"]  # the inner action's mutation had committed
        assert out["elapsed"] >= 0.05  # an action's clock moves (queries and mutations see frozen time)
        with pytest.raises(ComponentError) as err:
            c.action("mark_then_fail", text="kept")
        assert err.value.data == {"after": "the mutation committed"}
        assert c.query("marks") == ["a", "kept"]  # not transactional: what committed stays
        with pytest.raises(CallRuleError, match="only actions run actions"):
            c.mutation("mutation_runs_action")
        with pytest.raises(CallRuleError, match="queries call only queries"):
            c.query("query_runs_mutation")
        assert c.query("marks") == ["a", "kept"]

        with pytest.raises(LimitExceeded, match="action_timeout_s"):
            c.action("sleepy", seconds=6.0)
        assert c.action("sleepy", seconds=0.01) == "woke"  # the killed worker was replaced
        assert c.query("marks") == ["a", "kept"]
        assert any("ran past action_timeout_s" in e["line"] for e in d.logs())
