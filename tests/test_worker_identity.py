"""A worker's identity cannot be claimed by another process (issue 13, item 6).

The attack this guards against: with no uid per mount, a hostile worker connected to the predictable
endpoint of its neighbour's *next* worker and, at the restart, answered first with a Hello built from the
neighbour's manifest.  Now the endpoint's name holds a random part, and the supervisor takes a Hello only
with the one-time secret it handed the worker it spawned (on its stdin); anything else that comes first
on the socket fails the start and kills the worker.

The forged Hellos here are sent by this test process itself, which knows the endpoint (the worst case:
a name leaked).  The handles run without a uid of their own (``uid_for`` patched to ``None``, as for a
daemon that is not root), so the socket has no ``IPC_FILTER_UID`` to refuse this root test process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from runtime.errors import DeployError, WorkerCrashed
from runtime.limits import Limits
from runtime.protocol import codec
from runtime.protocol.messages import Hello, Result
from runtime.testing import RunningDaemon
from sandbox import supervisor
from sandbox.supervisor import WorkerHandle, close_zygote

APP = Path(__file__).parent / "isolation" / "app"
CODE = {"kind": "component", "app_dir": str(APP), "module": "good", "attr": "component", "explicit": False}
NAME = re.compile(r"/w(\d+)-([A-Za-z0-9_-]{16})(?:\.sock|/sock)$")
"""An endpoint's path: the serial, then 16 url-safe characters (96 random bits)."""


@pytest.fixture
def run_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(supervisor, "uid_for", lambda run_dir, mount: None)
    path = Path(tempfile.mkdtemp(prefix="bh-"))  # short: ipc paths are limited to 107 bytes
    try:
        yield path
    finally:
        close_zygote(path)
        shutil.rmtree(path, ignore_errors=True)


def _limits() -> Limits:
    return dataclasses.replace(Limits.from_env(), sandbox_hardening=1, worker_hello_timeout_s=30.0)


async def _start(run_dir: Path, zctx: zmq.asyncio.Context, forged: list[bytes] | None = None) -> WorkerHandle:
    """A handle of the ``good`` mount; ``forged`` frames are sent to its endpoint before the worker starts."""
    w = WorkerHandle("good", CODE, {}, _limits(), run_dir, zctx)
    attacker = zmq.Context.instance().socket(zmq.PAIR)
    attacker.setsockopt(zmq.LINGER, 0)
    try:
        if forged is not None:
            attacker.connect(w.endpoint)  # ahead of the worker: the bound PAIR takes this peer
            for frame in forged:
                attacker.send(frame)
        await w.start(lambda *_: None, lambda *_: None)
        return w
    except BaseException:
        await w.stop()
        raise
    finally:
        attacker.close(linger=0)


def test_endpoint_names_are_random_and_not_derived_from_the_serial(run_dir: Path) -> None:
    async def go() -> list[str]:
        zctx = zmq.asyncio.Context()
        try:
            names = []
            for _ in range(2):  # two workers of one mount: a start and its restart
                w = await _start(run_dir, zctx)
                names.append(w.endpoint)
                await w.stop()
            return names
        finally:
            zctx.destroy(linger=0)

    first, second = asyncio.run(go())
    m1, m2 = NAME.search(first), NAME.search(second)
    assert m1 and m2, (first, second)
    assert first != second and m1.group(2) != m2.group(2)
    assert int(m2.group(1)) == int(m1.group(1)) + 1  # the serial alone no longer names the next endpoint
    assert f"w{m2.group(1)}.sock" not in second


def _real_manifest(run_dir: Path) -> dict[str, Any]:
    """The neighbour's manifest, as a hostile worker of the same app could build it."""

    async def go() -> dict[str, Any]:
        zctx = zmq.asyncio.Context()
        try:
            w = await _start(run_dir, zctx)
            assert w.manifest is not None
            await w.stop()
            return w.manifest
        finally:
            zctx.destroy(linger=0)

    return asyncio.run(go())


@pytest.mark.parametrize("proof", [None, "", "x" * 32, "ü" * 32], ids=["missing", "empty", "wrong", "non-ascii"])
def test_a_hello_without_the_one_time_proof_is_never_taken_as_the_worker(run_dir: Path, proof: str | None) -> None:
    manifest = _real_manifest(run_dir)
    forged = codec.encode_frame(Hello(request_id=0, manifest=manifest, layers={"seccomp": "on"}, proof=proof))

    async def go() -> WorkerHandle:
        zctx = zmq.asyncio.Context()
        try:
            w = WorkerHandle("good", CODE, {}, _limits(), run_dir, zctx)
            attacker = zmq.Context.instance().socket(zmq.PAIR)
            attacker.setsockopt(zmq.LINGER, 0)
            attacker.connect(w.endpoint)
            attacker.send(forged)
            try:
                with pytest.raises(DeployError, match="refused a forged hello") as info:
                    await w.start(lambda *_: None, lambda *_: None)
                assert "not the process the supervisor spawned" in info.value.message
                assert w.manifest is None and w.layers == {}  # nothing of the forged hello was taken
                assert w.death_reason.startswith("killed: refused a forged hello")
                await asyncio.wait_for(w.proc.wait() if w.proc else asyncio.sleep(0), 10)
                with pytest.raises(WorkerCrashed):
                    w.send_now(Result(request_id=1, ok=True))
            finally:
                attacker.close(linger=0)
                await w.stop()
            return w
        finally:
            zctx.destroy(linger=0)

    asyncio.run(go())


def test_any_other_frame_ahead_of_the_hello_fails_the_start(run_dir: Path) -> None:
    frames = {"a 'result' frame": codec.encode_frame(Result(request_id=1, ok=True, value=1)),
              "a malformed frame": b"\xc1garbage"}

    async def go() -> None:
        zctx = zmq.asyncio.Context()
        try:
            for what, frame in frames.items():
                with pytest.raises(DeployError, match=f"refused {re.escape(what)}"):
                    await _start(run_dir, zctx, forged=[frame])
        finally:
            zctx.destroy(linger=0)

    asyncio.run(go())


def test_the_real_worker_proves_its_hello_and_the_name_is_gone_once_it_is_connected(run_dir: Path) -> None:
    async def go() -> None:
        zctx = zmq.asyncio.Context()
        try:
            w = await _start(run_dir, zctx)
            try:
                assert w.manifest is not None and w._hello_secret is None  # spent
                assert not Path(w.endpoint[len("ipc://"):]).exists()  # nobody can connect to it any more
                assert w.usable
            finally:
                await w.stop()
        finally:
            zctx.destroy(linger=0)

    asyncio.run(go())


# --- through a real daemon -----------------------------------------------------------------------------------


def _endpoints(d: RunningDaemon) -> set[str]:
    """The worker endpoints the daemon bound (its ipc sockets, from ``/proc/<pid>/net/unix``, which lists every
    socket of the network namespace: only those whose inode is one of the daemon's own descriptors count, so
    other daemons on the machine are not mistaken for this one's)."""
    assert d.proc is not None
    own = set()
    for fd in Path(f"/proc/{d.proc.pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            own.add(target[len("socket:["):-1])
    lines = Path(f"/proc/{d.proc.pid}/net/unix").read_text().splitlines()[1:]
    return {parts[7] for parts in (line.split() for line in lines)
            if len(parts) > 7 and parts[6] in own and NAME.search(parts[7])}


def test_a_restarted_worker_gets_an_endpoint_no_one_could_predict(daemon_for: Any) -> None:
    d: RunningDaemon = daemon_for(APP, env={"BULKHEAD_RESTART_BACKOFF_MAX_S": "0.3"})
    before = _endpoints(d)
    assert len(before) >= 3, before  # the app, evil and good
    evil_pid = d.worker_pid("evil")
    with d.client(admin=True) as c, pytest.raises(WorkerCrashed):
        c.call("evil:die", {})
    with d.client(admin=True) as c:
        probe = c.call("evil:probe", {})  # served by the restarted worker
    assert probe["pid"] != evil_pid
    mine = probe["endpoint"][len("ipc://"):]
    assert mine in _endpoints(d) and mine not in before
    serials = sorted(int(NAME.search(p).group(1)) for p in before | {mine})  # type: ignore[union-attr]
    assert int(NAME.search(mine).group(1)) == serials[-1]  # type: ignore[union-attr]
    randoms = [NAME.search(p).group(2) for p in before | {mine}]  # type: ignore[union-attr]
    assert len(set(randoms)) == len(randoms)
    with d.client() as c:
        assert c.query("facts") == []  # the neighbour still serves


def test_a_worker_whose_connection_dropped_is_replaced_not_reconnected(daemon_for: Any) -> None:
    # the evil worker sends a frame over MAXMSGSIZE: libzmq drops its connection, and its reconnect would
    # find no name (unlinked after the Hello); the supervisor kills it and the mount gets a fresh worker
    d: RunningDaemon = daemon_for(APP, env={"BULKHEAD_RESTART_BACKOFF_MAX_S": "0.3"})
    evil_pid = d.worker_pid("evil")
    with d.client(admin=True) as c:
        try:
            c.call("evil:oversized_frame", {})
        except WorkerCrashed as exc:
            assert "mount 'evil'" in exc.message
        probe = c.call("evil:probe", {})
    assert probe["pid"] != evil_pid and probe["pid"] == d.worker_pid("evil")
    with d.client() as c:
        assert c.query("facts") == []  # the neighbour still serves
