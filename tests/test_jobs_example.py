"""The jobs example through a real daemon: a mutation enqueues workpool jobs, a subscription watches them finish."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runtime.errors import ValidationError
from runtime.testing import start_daemon

APP = Path(__file__).parents[1] / "examples" / "jobs" / "app.py"
LINES = ["the quick brown fox", "jumps over", "", "the lazy dog"]


def test_a_subscription_moves_from_pending_to_finished_as_the_jobs_finish(tmp_path: Path) -> None:
    with start_daemon(tmp_path / "data", app=APP) as d, d.client() as c:
        sub = c.subscribe("progress", name="report.txt")
        assert sub.next(timeout=30) is None  # no such upload yet
        upload_id = c.mutation("upload", name="report.txt", lines=LINES)
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1]["state"] != "finished":
            seen.append(sub.next(timeout=60))
        # a mutation returns only after its client's subscriptions reflect it: the first value is the upload's own
        # commit, before any job could finish
        assert seen[0] == {"state": "pending", "total": 4, "done": 0, "failed": [], "words": 0}
        assert [v["done"] for v in seen] == sorted(v["done"] for v in seen)  # it only moves forward
        assert all(v["state"] == "pending" for v in seen[:-1])
        assert seen[-1] == {"state": "finished", "total": 4, "done": 4, "failed": [2], "words": 9}
        assert c.query("job_states", name="report.txt") == ["finished"] * 4
        with d.client(admin=True) as admin:
            stored = {t["mount"]: t for t in admin.admin("data")}
        assert set(stored) >= {"", "jobs"}  # the pool's tables live in its own mount
        assert isinstance(upload_id, str)


def test_bad_uploads_are_refused_naming_what_was_wrong(tmp_path: Path) -> None:
    with start_daemon(tmp_path / "data", app=APP) as d, d.client() as c:
        with pytest.raises(ValidationError, match="lines: an upload needs at least one line"):
            c.mutation("upload", name="empty", lines=[])
        c.mutation("upload", name="a", lines=["x"])
        with pytest.raises(ValidationError, match="'a' exists already"):
            c.mutation("upload", name="a", lines=["y"])
        with pytest.raises(ValidationError, match="lines"):
            c.mutation("upload", name="b", lines="not a list")
        assert c.query("progress", name="empty") is None


def test_the_readme_snippet_runs(tmp_path: Path) -> None:
    readme = (APP.parent / "README.md").read_text()
    [snippet] = [block.split("```", 1)[0] for block in readme.split("```python\n")[1:]]
    data = tmp_path / "data"
    assert 'Client.connect(data_dir=".bulkhead")' in snippet
    with start_daemon(data, app=APP):
        exec(compile(snippet.replace('".bulkhead"', repr(str(data))), "README.md", "exec"), {})
