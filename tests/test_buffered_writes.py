"""Writes the worker buffers (patch/replace/delete of documents it has read) keep every guarantee."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import LimitExceeded
from runtime.testing import start_daemon

APP = Path(__file__).parent / "apps" / "buf" / "app.py"


def test_buffered_writes_are_read_back_flushed_and_fail_clearly(tmp_path: Path) -> None:
    with start_daemon(tmp_path / "data", app=APP) as d, d.client() as c:
        c.mutation("seed", count=150)
        out = c.mutation("bump_and_read", name="i7")
        assert out == {"again": 1, "fetched": 1, "gone": None}  # reads after buffered writes see them
        assert c.query("n_of", name="i7") == 1
        assert c.mutation("bump_all") == 150  # 150 buffered patches: more than one frame carries
        assert c.query("total") == 151

        with pytest.raises(LimitExceeded, match="buffered replace .* failed.*document_size_bytes"):
            c.mutation("oversize", name="i3")
        assert c.query("n_of", name="i3") == 1  # nothing of the failed mutation committed, not even n=-1

        with pytest.raises(LimitExceeded, match="buffered replace"):
            c.mutation("oversize_caught", name="i5")  # caught in the code, still the call's error
        assert c.query("n_of", name="i5") == 1 and c.query("n_of", name="after") == -1

        assert c.mutation("caller_catches", name="i4") == "n=1"  # the callee's buffered patch went with it
        assert c.query("n_of", name="i4") == 1
