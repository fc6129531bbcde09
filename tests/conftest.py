"""Shared fixtures: real LMDB environments in temp dirs, a running committer, and real daemons.

A test module that talks to a daemon asks a factory for it::

    @pytest.fixture(scope="module")
    def daemon(module_daemon_for: DaemonFor) -> RunningDaemon:
        return module_daemon_for(APP, env=CLOCK)

``module_daemon_for`` stops its daemons when the module's tests are done,
``daemon_for`` when the test is; ``client`` is a client of the module's ``daemon``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Protocol

import pytest

from runtime.client import Client
from runtime.limits import Limits
from runtime.storage import Storage
from runtime.testing import RunningDaemon, start_daemon
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


# --- daemons ---------------------------------------------------------------------------------


class DaemonFor(Protocol):
    def __call__(self, app: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None,
                 scope_dir: str | os.PathLike[str] | None = None) -> RunningDaemon: ...


def _daemon_factory(stack: ExitStack, default_dir: Callable[[], Path]) -> DaemonFor:
    def daemon_for(app: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None,
                   scope_dir: str | os.PathLike[str] | None = None) -> RunningDaemon:
        """Start a daemon on ``SCOPE_DIR/data`` (deploying ``app`` if given, with ``env`` added to the
        environment, copied so a test may edit ``d.env``); it is stopped when the factory's scope ends."""
        base = Path(scope_dir) if scope_dir is not None else default_dir()
        return stack.enter_context(start_daemon(base / "data", app=app, env=dict(env) if env is not None else None))

    return daemon_for


@pytest.fixture
def daemon_for(tmp_path: Path) -> Iterator[DaemonFor]:
    """Daemons for one test: the first on ``tmp_path/data``, further ones in ``tmp_path/daemonN``."""
    count = 0

    def default_dir() -> Path:
        nonlocal count
        count += 1
        return tmp_path if count == 1 else tmp_path / f"daemon{count}"

    with ExitStack() as stack:
        yield _daemon_factory(stack, default_dir)


@pytest.fixture(scope="module")
def module_daemon_for(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[DaemonFor]:
    """Daemons for a whole test module, each in a temp dir named after the module."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with ExitStack() as stack:
        yield _daemon_factory(stack, lambda: tmp_path_factory.mktemp(name))


@pytest.fixture
def client(daemon: RunningDaemon) -> Iterator[Client]:
    """A client of the test module's ``daemon`` fixture."""
    with daemon.client() as c:
        yield c
