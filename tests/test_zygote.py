"""Workers forked from the zygote (sandbox/zygote.py): what they are, what the zygote holds, how deaths go.

Each daemon here is one this test started; the only processes a test kills are that daemon, its
zygote and its workers, by pid.  Nothing here measures time: waits poll until a condition holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq.asyncio

from runtime.limits import Limits
from runtime.testing import RunningDaemon, wait_for
from sandbox import zygote as zygote_module
from sandbox.supervisor import WorkerHandle, close_zygote

APP = Path(__file__).parent / "apps" / "zygote"
MOUNT_SECRET = b"zyg0te-mount-secret-8c1e4b"
"""What the app passes to its ``vault`` mount with ``use(env=...)``."""
DAEMON_SECRET = ("ZYGOTE_TEST_DAEMON_SECRET", "daemon-secret-5d7f0a")
"""In the daemon's own environment: neither the zygote nor a worker may have it."""
HARDENED = ("rlimits", "namespaces", "landlock", "separate_uids", "no_new_privs", "not_dumpable", "seccomp")


# --- /proc -----------------------------------------------------------------------------------------


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _ppid(pid: int) -> int:
    return int(_status(pid)["PPid"])


def _gone(pid: int) -> bool:
    """Exited: no /proc entry, or a zombie nobody reaped yet."""
    try:
        return _status(pid)["State"][0] in "ZX"
    except FileNotFoundError:
        return True


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(kv.split("=", 1) for kv in raw.split("\0") if "=" in kv)


def _memory_contains(pid: int, needle: bytes) -> bool:
    """Whether ``needle`` is anywhere in the readable memory of ``pid`` (root reads it through /proc)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("r"):
                continue
            lo, hi = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(lo)
                if needle in mem.read(hi - lo):
                    return True
            except (OSError, OverflowError, ValueError):
                continue  # [vvar], [vsyscall] and the like
    return False


def _unix_sockets() -> dict[str, tuple[str, str]]:
    """inode -> (socket type, bound path or "") of every Unix socket of this network namespace."""
    out = {}
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        parts = line.split()
        out[parts[6]] = (parts[4], parts[7] if len(parts) > 7 else "")
    return out


# --- the daemon ------------------------------------------------------------------------------------


def _zygote_of(mount: dict[str, object]) -> int:
    layer = mount["isolation"]["zygote"]  # type: ignore[index]
    found = re.fullmatch(r"on: forked by zygote pid (\d+)", layer)
    assert found, layer
    return int(found.group(1))


def _mounts(d: RunningDaemon) -> dict[str, dict[str, object]]:
    return {str(m["path"]): m for m in d.status()["deployment"]["mounts"]}


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:  # type: ignore[no-untyped-def]
    return module_daemon_for(APP, env=dict([DAEMON_SECRET]))


def test_workers_are_distinct_children_of_one_zygote_which_is_the_daemons_child(daemon: RunningDaemon) -> None:
    mounts = _mounts(daemon)
    assert set(mounts) == {"", "vault", "spare"}
    pids = [int(m["pid"]) for m in mounts.values()]  # type: ignore[call-overload]
    assert len(set(pids)) == len(pids)
    zygotes = {_zygote_of(m) for m in mounts.values()}
    assert len(zygotes) == 1
    (zyg,) = zygotes
    assert all(_ppid(pid) == zyg for pid in pids)
    assert _ppid(zyg) == daemon.pid
    assert b"sandbox.zygote" in Path(f"/proc/{zyg}/cmdline").read_bytes()
    iso = daemon.status()["isolation"]
    assert iso["zygote"] == "on" and all(iso[n] == "on" for n in HARDENED), iso
    with daemon.client() as c:
        assert c.query("token_length") == len(MOUNT_SECRET)
        assert c.query("spare_token_length") == 0
    # what a worker prints outside any call still reaches the log, through the stdout pipe we gave it
    assert any(e["mount"] == "vault" and e["line"] == "vault: loaded" for e in daemon.logs())


def test_the_zygote_holds_no_lmdb_no_coordinator_socket_no_thread_and_no_secret(daemon: RunningDaemon) -> None:
    mounts = _mounts(daemon)
    zyg = _zygote_of(mounts["vault"])
    assert len(os.listdir(f"/proc/{zyg}/task")) == 1  # one thread
    links = {fd: os.readlink(f"/proc/{zyg}/fd/{fd}") for fd in os.listdir(f"/proc/{zyg}/fd")}
    assert not [t for t in links.values() if ".mdb" in t], links
    # of the data dir, only the daemon's log, write-only: the zygote's stderr is the daemon's own
    data = {fd: t for fd, t in links.items() if t.startswith(str(daemon.data_dir))}
    assert set(data.values()) <= {str(daemon.data_dir / "daemon.log")}, links
    for fd in data:
        flags = int(Path(f"/proc/{zyg}/fdinfo/{fd}").read_text().split("flags:")[1].split()[0], 8)
        assert flags & os.O_ACCMODE == os.O_WRONLY, oct(flags)
    assert not [t for t in links.values() if "eventfd" in t or "eventpoll" in t], links  # no zmq context
    sockets = [t for t in links.values() if t.startswith("socket:")]
    assert len(sockets) == 1, links  # its control socket, nothing else
    kind, path = _unix_sockets()[sockets[0][len("socket:["):-1]]
    assert kind == "0005" and path == "", (kind, path)  # an unnamed SOCK_SEQPACKET pair, no ipc endpoint
    assert "lmdb" not in Path(f"/proc/{zyg}/maps").read_text()  # the module was never even imported
    # the mount's secret is in its own worker (which proves the scan can see it), never in the zygote
    assert _memory_contains(int(mounts["vault"]["pid"]), MOUNT_SECRET)  # type: ignore[call-overload]
    assert not _memory_contains(zyg, MOUNT_SECRET)
    assert set(_environ(zyg)) == {"PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED"}
    assert not _memory_contains(zyg, DAEMON_SECRET[1].encode())
    assert _environ(daemon.pid)[DAEMON_SECRET[0]] == DAEMON_SECRET[1]  # the daemon does have it


def test_a_worker_killed_by_sigkill_is_noticed_and_forked_again(daemon_for) -> None:  # type: ignore[no-untyped-def]
    d = daemon_for(APP)
    old = _mounts(d)["vault"]
    pid, zyg = int(old["pid"]), _zygote_of(old)  # type: ignore[call-overload]
    os.kill(pid, signal.SIGKILL)  # a worker of the daemon this test started
    wait_for(lambda: _mounts(d)["vault"]["pid"] != pid and _mounts(d)["vault"]["running"], what="a new worker")
    with d.client() as c:
        assert c.query("token_length") == len(MOUNT_SECRET)
    new = _mounts(d)["vault"]
    assert _zygote_of(new) == zyg and _ppid(int(new["pid"])) == zyg  # type: ignore[call-overload]
    assert any("worker pid" in e["line"] and "exited with code -9" in e["line"] for e in d.logs()), d.logs()[-5:]


def test_a_zygote_killed_by_sigkill_takes_its_workers_and_a_new_one_forks_them_again(daemon_for) -> None:  # type: ignore[no-untyped-def]
    d = daemon_for(APP)
    before = _mounts(d)
    zyg = _zygote_of(before["vault"])
    old_pids = {path: int(m["pid"]) for path, m in before.items()}  # type: ignore[call-overload]
    os.kill(zyg, signal.SIGKILL)  # the zygote of the daemon this test started
    wait_for(lambda: all(_gone(p) for p in old_pids.values()), what="the old workers to die with their zygote")

    def restarted() -> bool:
        now = _mounts(d)
        return all(m["running"] and int(m["pid"]) != old_pids[p] for p, m in now.items())  # type: ignore[call-overload]

    wait_for(restarted, what="every mount to have a new worker")
    with d.client() as c:
        assert c.query("token_length") == len(MOUNT_SECRET)
    after = _mounts(d)
    zygotes = {_zygote_of(m) for m in after.values()}
    assert len(zygotes) == 1 and zyg not in zygotes, zygotes
    (new_zyg,) = zygotes
    assert _ppid(new_zyg) == d.pid
    assert all(_ppid(int(m["pid"])) == new_zyg for m in after.values())  # type: ignore[call-overload]
    assert any(f"died with its zygote (pid {zyg})" in e["line"] for e in d.logs()), d.logs()[-5:]


def test_kill_9_of_the_daemon_takes_the_zygote_and_every_worker_down(daemon_for) -> None:  # type: ignore[no-untyped-def]
    d = daemon_for(APP)
    mounts = _mounts(d)
    pids = [_zygote_of(mounts["vault"])] + [int(m["pid"]) for m in mounts.values()]  # type: ignore[call-overload]
    d.kill()  # SIGKILL of the daemon this test started
    wait_for(lambda: all(_gone(p) for p in pids), what="the zygote and the workers to die with the daemon")


ESCAPES = ("kill_neighbour", "ptrace_attach_neighbour", "process_vm_readv_neighbour", "read_neighbour_environ",
           "read_neighbour_cmdline")


@pytest.fixture(scope="module")
def hostile(module_daemon_for) -> RunningDaemon:  # type: ignore[no-untyped-def]
    return module_daemon_for(Path(__file__).parent / "isolation" / "app")


@pytest.mark.parametrize("escape", ESCAPES)
def test_escaped_code_in_a_forked_worker_cannot_reach_its_zygote(hostile: RunningDaemon, escape: str) -> None:
    mounts = _mounts(hostile)
    zyg, evil = _zygote_of(mounts["evil"]), int(mounts["evil"]["pid"])  # type: ignore[call-overload]
    with hostile.client(admin=True) as c:
        out = c.call(f"evil:{escape}", {"arg": str(zyg)})
    assert out["pid"] == evil  # it really reached the real os module, in its own process
    assert out["outcome"].startswith("blocked:"), out
    assert not _gone(zyg) and _zygote_of(_mounts(hostile)["good"]) == zyg


# --- one worker at a time, in this process -----------------------------------------------------------


@pytest.fixture
def run_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bh-"))  # short: ipc paths are limited to 107 bytes
    try:
        yield path
    finally:
        close_zygote(path)
        shutil.rmtree(path, ignore_errors=True)


def _start_one(run_dir: Path, zygote: int) -> tuple[dict[str, str], int]:
    """Start one hardened ``vault`` worker, return its layers and its parent's pid, stop it."""

    async def go() -> tuple[dict[str, str], int]:
        zctx = zmq.asyncio.Context()
        code = {"kind": "component", "app_dir": str(APP), "module": "vault", "attr": "component", "explicit": False}
        limits = dataclasses.replace(Limits.from_env(), sandbox_hardening=1, worker_zygote=zygote)
        w = WorkerHandle("vault", code, {"VAULT_TOKEN": "t"}, limits, run_dir, zctx)
        try:
            await w.start(lambda *_: None, lambda *_: None)
            assert w.pid is not None
            return dict(w.layers), _ppid(w.pid)
        finally:
            await w.stop()
            zctx.destroy(linger=0)

    return asyncio.run(go())


def test_a_forked_worker_hardens_itself_exactly_as_a_fresh_one(run_dir: Path) -> None:
    fresh, fresh_parent = _start_one(run_dir, zygote=0)
    forked, forked_parent = _start_one(run_dir, zygote=1)
    assert fresh.pop("zygote").startswith("off: worker_zygote=0")
    assert forked.pop("zygote") == f"on: forked by zygote pid {forked_parent}"
    assert fresh == forked  # the same layers, reported the same way (the same uid: same run dir and mount)
    if os.geteuid() == 0:
        assert all(forked[n].startswith("on") for n in HARDENED), forked
    assert fresh_parent == os.getpid() and forked_parent != os.getpid()
    assert _ppid(forked_parent) == os.getpid()


def test_a_zygote_that_cannot_start_leaves_workers_to_fresh_interpreters(run_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zygote_module, "ZYGOTE_MODULE", "sandbox.no_such_zygote")
    layers, parent = _start_one(run_dir, zygote=1)
    assert layers["zygote"].startswith("off: the zygote died before it was ready"), layers["zygote"]
    assert parent == os.getpid()
    assert all(layers[n].startswith("on") for n in HARDENED) or os.geteuid() != 0, layers
    layers, parent = _start_one(run_dir, zygote=1)  # it is not tried again for this daemon
    assert layers["zygote"].startswith("off: the zygote died before it was ready") and parent == os.getpid()


def test_a_zygote_that_keeps_dying_is_given_up_for_fresh_interpreters(run_dir: Path) -> None:
    from sandbox.supervisor import _WORKER_ENV

    async def go() -> None:
        z = zygote_module.Zygote(run_dir / "zygote.cwd", _WORKER_ENV)
        try:
            for _ in range(zygote_module.Zygote.CRASHES_ALLOWED):
                await z.ensure(60.0)
                pid = z.pid
                assert pid is not None and not z.reason
                os.kill(pid, signal.SIGKILL)  # a zygote this test started
                while z.pid == pid and not z.reason:  # until it notices (a new one is started at once)
                    await asyncio.sleep(0.01)
            assert z.reason.startswith(f"off: the zygote died {zygote_module.Zygote.CRASHES_ALLOWED} times"), z.reason
            with pytest.raises(zygote_module.ZygoteUnavailable):
                await z.ensure(60.0)
        finally:
            z.close()

    asyncio.run(go())
