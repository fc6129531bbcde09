"""Test helpers: a real daemon in a temporary directory, for your own components' tests too.

::

    from runtime.testing import start_daemon

    def test_likes(tmp_path):
        with start_daemon(tmp_path, app="path/to/app.py") as d:
            with d.client() as c:
                c.mutation("like", post="p1")
                assert c.query("like_count", post="p1") == 1

The daemon is a real coordinator process with real worker processes, real
LMDB files and real ZeroMQ sockets; :meth:`RunningDaemon.kill` sends it
``SIGKILL`` (by its pid, which this helper started) and :meth:`restart`
starts it again on the same data directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runtime.cli import launch
from runtime.client import AsyncClient, Client

CLOCK: dict[str, str] = {"BULKHEAD_CONTROLLABLE_CLOCK": "1"}
"""The ``env`` of a daemon whose clock :meth:`RunningDaemon.advance_clock` may move."""


class RunningDaemon:
    """A daemon this process started: its data dir, pid, endpoints, and helpers to drive it."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return str(self.info["client"])

    @property
    def admin_key(self) -> str:
        return str(self.info["admin_key"])

    def start(self, timeout_s: float = 60.0) -> RunningDaemon:
        """Start the daemon (:func:`runtime.cli.launch.spawn`) and wait until it serves."""
        (self.data_dir / "daemon.json").unlink(missing_ok=True)
        self.proc = launch.spawn(self.data_dir, env=dict(os.environ, **(self.env or {})))
        self.info = launch.wait_until_serving(self.proc, self.data_dir, timeout_s=timeout_s, tail_lines=20,
                                                sep="\n")
        return self

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(launch.log_tail(self.data_dir / launch.LOG_FILE, lines))

    def client(self, admin: bool = False, timeout: float = 120.0) -> Client:
        """A blocking client (``admin=True`` carries the admin key)."""
        return Client(self.url, self.admin_key if admin else None, timeout, self.info.get("max_frame_bytes"))

    def async_client(self, admin: bool = False) -> AsyncClient:
        """An asyncio client."""
        return AsyncClient(self.url, self.admin_key if admin else None,
                           max_frame_bytes=self.info.get("max_frame_bytes"))

    def deploy(self, app: str | os.PathLike[str]) -> dict[str, Any]:
        """Deploy an app (path to app.py, a package dir, or module:attr)."""
        from runtime.cli.main import resolve_app

        with self.client(admin=True, timeout=300.0) as c:
            return c.admin("deploy", app=resolve_app(str(app)))  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        with self.client(admin=True) as c:
            return c.admin("status")  # type: ignore[no-any-return]

    def logs(self) -> list[dict[str, Any]]:
        with self.client(admin=True) as c:
            return c.admin("logs", after=0, limit=100_000)["entries"]  # type: ignore[no-any-return]

    def advance_clock(self, seconds: float) -> float:
        """Move the daemon's clock forward (it must run with ``BULKHEAD_CONTROLLABLE_CLOCK=1``); return its new now."""
        with self.client(admin=True) as c:
            return float(c.admin("clock", advance=seconds)["now"])

    def clock(self) -> float:
        """The daemon's idea of now."""
        with self.client(admin=True) as c:
            return float(c.admin("clock")["now"])

    def worker_pid(self, mount: str) -> int:
        """The pid of the worker currently serving ``mount`` ("" is the app)."""
        for m in self.status()["deployment"]["mounts"]:
            if m["path"] == mount:
                return int(m["pid"])
        raise KeyError(mount)

    def kill(self) -> None:
        """SIGKILL the daemon (its workers die with it: they hold PR_SET_PDEATHSIG)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop gracefully (SIGTERM), SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self) -> RunningDaemon:
        """Start again on the same data directory (the last deployed app is re-deployed)."""
        self.stop()
        return self.start()


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "the condition",
             interval: float = 0.05) -> Any:
    """Call ``check()`` until it returns something truthy (returned); fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {value!r})")
        time.sleep(interval)


@contextmanager
def start_daemon(data_dir: str | os.PathLike[str], app: str | os.PathLike[str] | None = None,
                 env: dict[str, str] | None = None) -> Iterator[RunningDaemon]:
    """Start a daemon on ``data_dir`` (deploying ``app`` if given); stop it on exit."""
    d = RunningDaemon(Path(data_dir), env).start()
    try:
        if app is not None:
            d.deploy(app)
        yield d
    finally:
        d.stop()
