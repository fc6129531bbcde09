"""The isolation suite, first part: a component that has already escaped the
restricted globals (it holds the real ``os`` module) tries to do harm; the OS
layer must refuse, and a healthy neighbour mount must not notice.

Every attack runs in the hostile mount's worker through a real daemon; the
probe test first proves the escape reached the real ``os`` (the pid it reports
is its worker's pid).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.errors import WorkerCrashed
from runtime.testing import RunningDaemon, start_daemon

APP = Path(__file__).parent / "app"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    with start_daemon(tmp_path_factory.mktemp("hostile") / "data", app=APP) as d:
        with d.client() as c:
            c.mutation("remember", text="before")
        yield d


def _attack(d: RunningDaemon, name: str, arg: str = "") -> str:
    with d.client(admin=True) as c:
        return c.call("evil:attack", {"name": name, "arg": arg})


def _layers_on(d: RunningDaemon, *names: str) -> bool:
    iso = d.status()["isolation"]
    return all(iso[n] == "on" for n in names)


def _lmdb_file(d: RunningDaemon) -> Path:
    path = d.data_dir / "db" / "lmdb" / "data.mdb"
    assert path.exists()  # so a refusal below is the sandbox's, not a wrong path
    return path


def test_the_escape_reaches_the_real_os_module(daemon: RunningDaemon) -> None:
    out = _attack(daemon, "probe")
    assert out == f"allowed: {daemon.worker_pid('evil')}"


ATTACKS = [
    # (attack, argument maker, the layer that must stop it)
    ("read_lmdb", lambda d: str(_lmdb_file(d)), "landlock"),
    ("read_shadow", lambda d: "", "landlock"),
    ("read_coordinator_environ", lambda d: "", "landlock"),
    ("read_proc_mem_of_parent", lambda d: "", "landlock"),
    ("list_data_dir", lambda d: str(d.data_dir), "landlock"),
    ("write_tmp", lambda d: "", "landlock"),
    ("write_app_dir", lambda d: str(APP / "evil" / "planted.py"), "landlock"),
    ("tcp_connect_daemon", lambda d: d.url.rsplit(":", 1)[1], "namespaces"),
    ("udp_send", lambda d: "9", "seccomp"),
    ("fork", lambda d: "", "seccomp"),
    ("exec", lambda d: "", "seccomp"),
    ("system", lambda d: "", "seccomp"),
    ("kill_coordinator", lambda d: "", "landlock"),
    ("kill_neighbour", lambda d: str(d.worker_pid("good")), "landlock"),
    ("unshare_via_ctypes", lambda d: "", "seccomp"),
    ("ptrace_via_ctypes", lambda d: "", "seccomp"),
    ("allocate_4gib", lambda d: "", "rlimits"),
]


@pytest.mark.parametrize("name,arg,layer", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack_is_refused_and_the_neighbour_is_untouched(daemon: RunningDaemon, name: str, arg, layer: str) -> None:
    if not _layers_on(daemon, layer):
        pytest.fail(f"layer {layer} is not active here: {daemon.status()['isolation'][layer]}")
    good_pid = daemon.worker_pid("good")
    out = _attack(daemon, name, arg(daemon))
    assert out.startswith("blocked:"), out
    assert "No such file" not in out and "escape failed" not in out, out  # refused, not missed
    assert not Path("/tmp/bulkhead-evil-write").exists()
    assert not Path("/tmp/bulkhead-evil-system").exists()
    assert not (APP / "evil" / "planted.py").exists()
    with daemon.client() as c:
        assert c.query("facts") == ["before"]
        assert daemon.worker_pid("good") == good_pid
    assert daemon.proc is not None and daemon.proc.poll() is None  # the coordinator is alive


def test_a_worker_that_exits_is_restarted_and_the_neighbour_keeps_serving(daemon: RunningDaemon) -> None:
    good_pid = daemon.worker_pid("good")
    evil_pid = daemon.worker_pid("evil")
    with daemon.client(admin=True) as c, pytest.raises(WorkerCrashed):
        c.call("evil:die", {})
    with daemon.client() as c:
        assert c.query("facts") == ["before"]
    assert daemon.worker_pid("good") == good_pid
    assert _attack(daemon, "probe").startswith("allowed: ")  # the evil mount was restarted
    assert daemon.worker_pid("evil") != evil_pid
    assert _lmdb_file(daemon).stat().st_size > 0
