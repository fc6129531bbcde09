"""Shared fixtures: real LMDB environments in temp dirs, and a running committer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runtime.limits import Limits
from runtime.storage import Storage
from runtime.transactions import Committer


@pytest.fixture
def storage(tmp_path) -> Iterator[Storage]:  # type: ignore[no-untyped-def]
    s = Storage.open(tmp_path / "data")
    s.define_table("", "t", {"by_k": ["k"], "by_k_v": ["k", "v"]})
    s.define_table("child", "t", {"by_k": ["k"]})
    yield s
    s.close()


@pytest.fixture
def committer(storage: Storage) -> Iterator[Committer]:
    c = Committer(storage, Limits()).start()
    yield c
    c.stop()
