"""Starting a coordinator daemon as a child process: the one start-up used by the CLI and :mod:`runtime.testing`.

::

    proc, info = launch(data_dir, listen="tcp://127.0.0.1:0", detach=True)

:func:`spawn` runs ``python -m runtime.coordinator --data DIR`` with its output
appended to ``DIR/daemon.log`` (mode 0600); :func:`wait_until_serving` waits
until ``DIR/daemon.json`` names the child's pid and the daemon answers a ping,
and otherwise raises a :class:`~runtime.errors.BulkheadError` with the tail of
the log: when the child exits first, or (after killing it) when it does not
serve in time.  The coordinator is never imported here, only started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runtime.errors import BulkheadError

LOG_FILE = "daemon.log"
POLL_S = 0.02
PR_SET_PDEATHSIG = 1


def coordinator_argv(data_dir: str | os.PathLike[str], listen: str | None = None,
                     http: str | None = None) -> list[str]:
    """The command line of a coordinator serving ``data_dir`` (on ``listen``, its HTTP API on ``http``, if given)."""
    return [sys.executable, "-m", "runtime.coordinator", "--data", str(data_dir),
            *(["--listen", listen] if listen is not None else []), *(["--http", http] if http is not None else [])]


def serving(data_dir: str | Path, timeout_s: float = 3.0) -> dict[str, Any] | None:
    """``daemon.json`` of ``data_dir`` if a daemon there answers a ping within ``timeout_s``, else None."""
    from runtime.client import Client, DaemonNotRunning, discover

    try:
        info = discover(data_dir)
    except DaemonNotRunning:
        return None
    try:
        with Client.connect(data_dir=data_dir, admin=True, timeout=timeout_s) as c:
            c.admin("ping", timeout=timeout_s)
    except (TimeoutError, BulkheadError, OSError):
        return None
    return info


def log_tail(log_path: str | os.PathLike[str], lines: int) -> list[str]:
    """The last ``lines`` lines of a log file ([] if it does not exist)."""
    try:
        return Path(log_path).read_text(errors="replace").strip().splitlines()[-lines:]
    except FileNotFoundError:
        return []


def _die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` giving the child SIGTERM when this process dies (Linux ``PR_SET_PDEATHSIG``)."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)  # looked up before the fork
    parent = os.getpid()

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above: nobody will send it
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def spawn(data_dir: str | os.PathLike[str], *, listen: str | None = None, env: Mapping[str, str] | None = None,
          detach: bool = False, argv: Sequence[str] | None = None, log_path: str | os.PathLike[str] | None = None,
          cwd: str | os.PathLike[str] | None = None, http: str | None = None,
          die_with_parent: bool = False) -> subprocess.Popen[bytes]:
    """Start the daemon process (``argv``, by default :func:`coordinator_argv`); return at once.

    ``data_dir`` is created (0700) if missing; stdout and stderr are appended to
    ``log_path`` (default ``DATA/daemon.log``, created 0600); ``env`` is the child's
    whole environment (None inherits this one); ``detach`` puts it in a session
    of its own, so it outlives a Ctrl-C of its parent (and a hang-up of its
    terminal); ``die_with_parent`` has it sent SIGTERM when this process dies,
    even by SIGKILL (``bulkhead dev``: its daemon never outlives it).
    """
    data = Path(data_dir)
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_file = Path(log_path) if log_path is not None else data / LOG_FILE
    log = os.fdopen(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    try:
        return subprocess.Popen(
            list(argv) if argv is not None else coordinator_argv(data, listen, http),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True, start_new_session=detach,
            env=dict(env) if env is not None else None, cwd=cwd,
            preexec_fn=_die_with_parent() if die_with_parent and sys.platform == "linux" else None,
        )
    finally:
        log.close()


def wait_until_serving(proc: subprocess.Popen[bytes], data_dir: str | Path, *, timeout_s: float = 60.0,
                       log_path: str | os.PathLike[str] | None = None, tail_lines: int = 3,
                       sep: str = " / ") -> dict[str, Any]:
    """Wait until the daemon ``proc`` serves ``data_dir``; return its ``daemon.json``.

    Raises :class:`BulkheadError` naming the exit code and the last ``tail_lines``
    lines of the log (joined by ``sep``) if ``proc`` exits first; after ``timeout_s``
    it kills ``proc`` (by this pid, and reaps it) and raises naming the log file.
    """
    log_file = Path(log_path) if log_path is not None else Path(data_dir) / LOG_FILE
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            tail = log_tail(log_file, tail_lines)
            raise BulkheadError(f"the daemon exited with code {proc.returncode}: {sep.join(tail)}")
        info = serving(data_dir)
        if info is not None and info.get("pid") == proc.pid:
            return info
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise BulkheadError(f"the daemon did not start serving within {timeout_s:.0f} s (see {log_file})")
        time.sleep(POLL_S)


def launch(data_dir: str | Path, *, listen: str | None = None, env: Mapping[str, str] | None = None,
           detach: bool = False, timeout_s: float = 60.0, tail_lines: int = 3,
           sep: str = " / ", http: str | None = None) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """:func:`spawn` then :func:`wait_until_serving`: the running process and its ``daemon.json``
    (whose ``api`` is the HTTP API's base URL)."""
    proc = spawn(data_dir, listen=listen, env=env, detach=detach, http=http)
    return proc, wait_until_serving(proc, data_dir, timeout_s=timeout_s, tail_lines=tail_lines, sep=sep)
