"""The isolation suite: one hostile function per attempt, each through a real daemon
with a healthy neighbour mount (``good``) next to the hostile one (``evil``).

Every attempt asserts the clear error or the containment, then that the
neighbour's results, its data and its worker are unchanged and the coordinator
is alive.  Attempts that assume the language layer is breached return the pid
their escape got from the real ``os`` module; it must be the hostile worker's
pid, so a refusal cannot pass because the escape silently failed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import (
    BulkheadError,
    IsolationError,
    LimitExceeded,
    NotFoundError,
    UserCodeError,
    ValidationError,
    WorkerCrashed,
)
from runtime.testing import RunningDaemon

APP = Path(__file__).parent / "app"
REPO = Path(__file__).resolve().parents[2]
PLANTED = [Path("/tmp/bulkhead-evil-write"), Path("/tmp/bulkhead-evil-system"), Path("/tmp/bulkhead-evil-exec"),
           Path("/dev/shm/bulkhead-evil"), APP / "evil" / "planted.py", REPO / "components" / "planted.py"]
# this module kills the hostile worker on purpose, often
SUITE_ENV = {"BULKHEAD_QUARANTINE_AFTER": "1000", "BULKHEAD_RESTART_BACKOFF_MAX_S": "0.3",
             "BULKHEAD_QUERY_MUTATION_WALL_TIMEOUT_S": "3"}  # sleep_hang ends at the wall-clock backstop


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:
    for p in PLANTED:
        p.unlink(missing_ok=True)
    d = module_daemon_for(APP, env=SUITE_ENV)
    with d.client() as c:
        c.mutation("remember", text="before")
    with d.client(admin=True) as c:
        d.good_ids = c.call("good:ids", {})  # type: ignore[attr-defined]
        d.good_secret = c.call("good:secret", {})  # type: ignore[attr-defined]
    return d


def _call(d: RunningDaemon, fn: str, **args: Any) -> Any:
    with d.client(admin=True) as c:
        return c.call(f"evil:{fn}", args)


def _neighbour_is_untouched(d: RunningDaemon, good_pid: int) -> None:
    assert d.proc is not None and d.proc.poll() is None, "the coordinator died"
    with d.client() as c:
        assert c.query("facts") == ["before"]
    with d.client(admin=True) as c:
        assert c.call("good:ids", {}) == d.good_ids  # type: ignore[attr-defined]
        assert c.call("good:secret", {}) == d.good_secret  # type: ignore[attr-defined]
    assert d.worker_pid("good") == good_pid, "the neighbour's worker was replaced"
    for p in PLANTED:
        assert not p.exists(), f"{p} was written"


def _lmdb_file(d: RunningDaemon) -> str:
    path = d.data_dir / "db" / "lmdb" / "data.mdb"
    assert path.exists()  # so a refusal below is the sandbox's, not a wrong path
    return str(path)


# --- attempts past the language layer: (function, argument maker) -> "blocked: ..." with the escape proven ---

Arg = Callable[[RunningDaemon], dict[str, Any]]
NONE: Arg = lambda d: {}  # noqa: E731
GOOD_PID: Arg = lambda d: {"arg": str(d.worker_pid("good"))}  # noqa: E731

ESCAPED = [
    ("read_lmdb", lambda d: {"arg": _lmdb_file(d)}),
    ("read_shadow", NONE),
    ("read_root_home", NONE),
    ("list_data_dir", lambda d: {"arg": str(d.data_dir)}),
    ("write_tmp", NONE),
    ("write_dev_shm", NONE),
    ("write_code_in_app_dir", lambda d: {"arg": str(APP / "evil" / "planted.py")}),
    ("write_code_in_components", lambda d: {"arg": str(REPO / "components" / "planted.py")}),
    ("read_coordinator_environ", NONE),
    ("read_coordinator_mem", NONE),
    ("read_coordinator_fd", NONE),
    ("read_neighbour_environ", GOOD_PID),
    ("read_neighbour_cmdline", GOOD_PID),
    ("list_proc", NONE),
    ("kill_coordinator", NONE),
    ("kill_neighbour", GOOD_PID),
    ("stop_coordinator_group", NONE),
    ("ptrace_attach_neighbour", GOOD_PID),
    ("process_vm_readv_neighbour", GOOD_PID),
    ("ptrace_traceme", NONE),
    ("prlimit_coordinator", NONE),
    ("renice_coordinator", NONE),
    ("setuid_root", NONE),
    ("raise_memory_rlimit", NONE),
    ("unshare_user_ns", NONE),
    ("mount_tmpfs", NONE),
    ("io_uring_setup", NONE),
    ("open_by_handle", NONE),
    ("tcp_connect_daemon", lambda d: {"arg": d.url.rsplit(":", 1)[1]}),
    ("udp_send", NONE),
    ("dns_lookup", NONE),
    ("netlink_socket", NONE),
    ("unix_connect_other_worker_sockets", NONE),
    ("fork", NONE),
    ("fork_bomb", NONE),
    ("exec_shell", NONE),
    ("system", NONE),
    ("subprocess_popen", NONE),
    ("allocate_4gib", NONE),
    ("builtin_self_escape", NONE),
    ("frame_walk_escape", NONE),
    ("generator_frame_escape", NONE),
]


@pytest.mark.parametrize("fn,arg", ESCAPED, ids=[a[0] for a in ESCAPED])
def test_escaped_attempt_is_refused_by_the_os_layer(daemon: RunningDaemon, fn: str, arg: Arg) -> None:
    good_pid = daemon.worker_pid("good")
    out = _call(daemon, fn, **arg(daemon))
    assert out["pid"] == daemon.worker_pid("evil"), "the escape did not reach the real os module of the worker"
    assert out["outcome"].startswith("blocked:"), out
    assert "escape failed" not in out["outcome"], out
    hidden = _hidden_from_the_worker(daemon, str(arg(daemon).get("arg", "")))
    assert hidden or "No such file" not in out["outcome"], out  # refused, not missed (or not even there for it)
    _neighbour_is_untouched(daemon, good_pid)


def _hidden_from_the_worker(d: RunningDaemon, path: str) -> bool:
    """``path`` lies under a directory the worker's mount namespace empties (``/tmp``...: layer private_dirs)."""
    state = next(m["isolation"] for m in d.status()["deployment"]["mounts"] if m["path"] == "evil")["private_dirs"]
    tops = state[len("on: empty "):].split(",") if state.startswith("on: empty ") else []
    return any(path.startswith(top + "/") for top in tops)


def test_a_thread_bomb_is_capped(daemon: RunningDaemon) -> None:
    good_pid = daemon.worker_pid("good")
    out = _call(daemon, "thread_bomb")
    assert out["pid"] == daemon.worker_pid("evil")
    assert out["outcome"].startswith("blocked:") and "thread" in out["outcome"], out
    assert out["threads"] < 1000
    _neighbour_is_untouched(daemon, good_pid)


def test_memory_growth_ends_in_memory_error_and_the_worker_survives(daemon: RunningDaemon) -> None:
    good_pid, evil_pid = daemon.worker_pid("good"), daemon.worker_pid("evil")
    out = _call(daemon, "memory_grow")
    assert out["pid"] == evil_pid
    assert out["outcome"].startswith("blocked: MemoryError"), out
    assert 100 < out["mib"] <= 1024  # RLIMIT_AS: the default worker_memory_bytes is 1 GiB
    assert daemon.worker_pid("evil") == evil_pid
    _neighbour_is_untouched(daemon, good_pid)


def test_descriptor_exhaustion_is_capped(daemon: RunningDaemon) -> None:
    good_pid = daemon.worker_pid("good")
    out = _call(daemon, "exhaust_descriptors")
    assert out["pid"] == daemon.worker_pid("evil")
    assert "Too many open files" in out["outcome"], out
    assert out["opened"] <= 256  # worker_open_files
    _neighbour_is_untouched(daemon, good_pid)


# --- attempts that take the hostile worker down: the caller gets a clear error, the worker is replaced ---

KILLED = [
    # (function, error class, words the message must contain)
    ("spin_cpu", LimitExceeded, "query_mutation_timeout_s"),
    ("sleep_hang", LimitExceeded, "query_mutation_timeout_s"),
    ("crash_segfault", WorkerCrashed, "died while running 'crash_segfault'"),
    ("die", WorkerCrashed, "died while running 'die'"),
    ("garbage_frames", WorkerCrashed, "malformed frames"),
    ("ext_type_frames", WorkerCrashed, "malformed frames"),
    ("deeply_nested_frames", WorkerCrashed, "malformed frames"),
    ("unsolicited_results", WorkerCrashed, "unsolicited"),
    ("forged_hello", WorkerCrashed, "unsolicited"),
    ("flood_forged_syscalls", WorkerCrashed, "token"),
    ("flood_unread_replies", WorkerCrashed, "does not read its replies"),
]


@pytest.mark.parametrize("fn,error,words", KILLED, ids=[k[0] for k in KILLED])
def test_misbehaving_worker_is_killed_with_a_clear_error_and_restarted(daemon: RunningDaemon, fn: str,
                                                                      error: type[BulkheadError], words: str) -> None:
    good_pid, evil_pid = daemon.worker_pid("good"), daemon.worker_pid("evil")
    with pytest.raises(error) as info:
        _call(daemon, fn)
    assert words in info.value.message, info.value.message
    _neighbour_is_untouched(daemon, good_pid)
    out = _call(daemon, "probe")  # restarted: a fresh worker serves the mount again
    assert out["pid"] == daemon.worker_pid("evil") != evil_pid


def test_an_oversized_frame_never_reaches_the_decoder(daemon: RunningDaemon) -> None:
    good_pid = daemon.worker_pid("good")
    try:
        out = _call(daemon, "oversized_frame")
        assert out["outcome"] == "allowed: still alive"  # libzmq dropped the frame (and the connection)
    except WorkerCrashed as exc:
        assert "mount 'evil'" in exc.message
    _neighbour_is_untouched(daemon, good_pid)
    assert _call(daemon, "probe")["pid"] == daemon.worker_pid("evil")


# --- the API and the language layer: clear errors, no escape needed ---

def _first_good_id(d: RunningDaemon) -> dict[str, Any]:
    return {"arg": d.good_ids[0]}  # type: ignore[attr-defined]


def _good_cursor(d: RunningDaemon) -> dict[str, Any]:
    with d.client(admin=True) as c:
        return {"arg": c.call("good:first_page", {})}


REFUSED = [
    # (function, argument maker, error class, words the message must contain)
    ("get_neighbour_doc", _first_good_id, (IsolationError, NotFoundError), ""),
    ("replace_neighbour_doc", _first_good_id, (IsolationError, NotFoundError), ""),
    ("delete_neighbour_doc", _first_good_id, (IsolationError, NotFoundError), ""),
    # never trusted: refused
    ("mount_in_payload", _first_good_id, ValidationError, "mount: Extra inputs are not permitted"),
    ("scan_neighbour_table", NONE, NotFoundError, "facts"),
    ("forged_cursor", _good_cursor, (IsolationError, ValidationError), "cursor"),
    ("forged_handle", NONE, IsolationError, "forged"),
    ("call_neighbour_by_path", NONE, NotFoundError, "no child component named 'good'"),
    ("handle_for_neighbour_function", NONE, NotFoundError, "of its own"),
    ("forged_token", NONE, IsolationError, "capability token"),
    ("import_os", NONE, UserCodeError, "import of 'os' is not allowed"),
    ("import_network_module", NONE, UserCodeError, "did not declare network access"),
    ("call_open", NONE, IsolationError, "open is not allowed"),
    ("utf7_source", NONE, UserCodeError, "import of 'os' is not allowed"),
    ("huge_return", NONE, LimitExceeded, "return_size_bytes"),
    ("deep_return", NONE, LimitExceeded, "document_depth"),
]


@pytest.mark.parametrize("fn,arg,error,words", REFUSED, ids=[r[0] for r in REFUSED])
def test_api_and_language_attempt_gets_a_clear_error(daemon: RunningDaemon, fn: str, arg: Arg, error: Any,
                                                     words: str) -> None:
    good_pid, evil_pid = daemon.worker_pid("good"), daemon.worker_pid("evil")
    try:
        out = _call(daemon, fn, **arg(daemon))
    except error as exc:
        assert words in exc.message, exc.message
    else:
        # the only acceptable success: nothing of the neighbour's came back
        assert out is None, out
        assert fn in ("get_neighbour_doc",), f"{fn} returned {out!r}"
    assert daemon.worker_pid("evil") == evil_pid  # refused on the wire, no kill needed
    _neighbour_is_untouched(daemon, good_pid)


def test_a_revoked_token_is_refused(daemon: RunningDaemon) -> None:
    good_pid = daemon.worker_pid("good")
    assert _call(daemon, "remember_token") == "saved"
    with pytest.raises(IsolationError, match="unknown or revoked capability token"):
        _call(daemon, "revoked_token")
    _neighbour_is_untouched(daemon, good_pid)


def test_a_format_string_walk_reaches_only_the_workers_own_config(daemon: RunningDaemon) -> None:
    good_pid = daemon.worker_pid("good")
    leaked = _call(daemon, "format_string_walk")
    assert "evil-own-value" in leaked  # the walk worked...
    assert daemon.good_secret not in leaked and "admin_key" not in leaked  # type: ignore[attr-defined]
    assert daemon.admin_key not in leaked  # ...and found nothing but its own mount's settings
    _neighbour_is_untouched(daemon, good_pid)


def test_poisoning_shared_modules_stays_in_the_hostile_worker(daemon: RunningDaemon) -> None:
    good_pid = daemon.worker_pid("good")
    out = _call(daemon, "poison_shared_modules")
    assert out["pid"] == daemon.worker_pid("evil")
    _neighbour_is_untouched(daemon, good_pid)
    with pytest.raises(WorkerCrashed):
        _call(daemon, "die")  # the poisoned worker is gone; its replacement starts clean
    assert _call(daemon, "probe")["outcome"] == "allowed: escaped"


def test_the_env_of_a_mount_is_its_own(daemon: RunningDaemon) -> None:
    env = _call(daemon, "read_neighbour_env")
    assert env == {"EVIL_OWN": "evil-own-value"}


def test_every_layer_is_on_as_root(daemon: RunningDaemon) -> None:
    if os.geteuid() != 0:
        pytest.fail("this suite runs as root on CI")
    iso = daemon.status()["isolation"]
    off = {k: v for k, v in iso.items() if v != "on"}
    assert not off, off


def test_daemon_log_is_private(daemon: RunningDaemon) -> None:
    assert (daemon.data_dir / "daemon.log").stat().st_mode & 0o077 == 0
