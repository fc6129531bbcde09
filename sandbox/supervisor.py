"""Worker processes as the coordinator sees them: spawn, talk, watch, kill.

Each worker is forked by the daemon's zygote (:mod:`sandbox.zygote`: a clean
process started like a worker, preloaded, that never held LMDB, a socket of the
coordinator's, a thread or a secret), or, when the zygote cannot be used, gets
a fresh interpreter (``python -m sandbox.worker``).  Never a fork of the
coordinator, so it inherits no LMDB descriptor, zmq context or thread; either
way ``close_fds``, an empty environment, an empty working directory, and its
own ipc endpoint in a 0700 directory.  The ``zygote`` layer of the worker says
which, and why.  The socket a frame arrives on *is* the worker's identity: a
mount named inside a payload is never trusted.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import os
import secrets
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from runtime.errors import DeployError, ProtocolError, ValidationError, WorkerCrashed, from_wire
from runtime.limits import ENDED_TOKENS_KEPT, Limits
from runtime.protocol import codec
from runtime.protocol.deploy import CODE_SPEC, WORKER_MODULE, Manifest, WorkerConfig, limit_fields, parse
from runtime.protocol.loopsock import LoopSocket
from runtime.protocol.messages import Hello, Invoke, Result, Syscall, SyscallResult
from sandbox.zygote import ForkedProcess, Zygote, ZygoteUnavailable

_REPO_ROOT = str(Path(__file__).resolve().parents[1])
_WORKER_PATH = os.pathsep.join([_REPO_ROOT] + [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))])
"""The worker's import path: the runtime, then the coordinator's own package dirs (so a worker finds the
same packages whatever its uid makes ``site`` compute)."""
_WORKER_ENV = {"PYTHONPATH": _WORKER_PATH, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
"""The whole environment of a worker (and of the zygote, whose forks inherit its seed).  The string-hash
seed is fixed so that every worker of the same code iterates a set or dict of strings in the same order: a
retried mutation, or one re-run on a restarted worker, takes the same path (SECURITY.md, "Not defended")."""
_serial = itertools.count(1)
RECOUNT_S = 0.05
"""How long after a census that counted an extra thread it is taken again, with no call sent meanwhile."""

_ZYGOTES: dict[str, Zygote] = {}


def zygote_for(run_dir: Path, limits: Limits) -> Zygote | None:
    """The zygote of the daemon whose run dir is ``run_dir`` (started on first use), or ``None`` when
    ``worker_zygote`` is 0."""
    if not limits.worker_zygote:
        return None
    zygote = _ZYGOTES.get(str(run_dir))
    if zygote is None:
        zygote = _ZYGOTES[str(run_dir)] = Zygote(run_dir / "zygote.cwd", _WORKER_ENV)
    return zygote


def prestart_zygote(run_dir: Path, limits: Limits) -> None:
    """Start ``run_dir``'s zygote ahead of the first worker (at daemon start), unless ``worker_zygote`` is 0."""
    zygote = zygote_for(run_dir, limits)
    if zygote is not None:
        zygote.prestart()


def close_zygote(run_dir: Path) -> None:
    """Stop the zygote of ``run_dir``'s daemon, if it has one (at shutdown, once its workers are stopped)."""
    zygote = _ZYGOTES.pop(str(run_dir), None)
    if zygote is not None:
        zygote.close()



class MountHealth:
    """Deaths of one mount's workers over time: the restart backoff and the quarantine come from here."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deaths: deque[tuple[float, bool, str]] = deque()
        self.quarantined_until = 0.0
        self.quarantine_reason = ""

    def _prune(self, now: float) -> None:
        while self.deaths and now - self.deaths[0][0] > self.limits.quarantine_window_s:
            self.deaths.popleft()

    def record(self, misbehaved: bool, reason: str) -> None:
        now = time.monotonic()
        self.deaths.append((now, misbehaved, reason))
        self._prune(now)
        bad = sum(1 for _t, m, _r in self.deaths if m)
        if bad >= self.limits.quarantine_after or len(self.deaths) >= 3 * self.limits.quarantine_after:
            self.quarantined_until = now + self.limits.quarantine_s
            what = "for misbehaviour" if bad >= self.limits.quarantine_after else "(crashes, limits)"
            times = bad if bad >= self.limits.quarantine_after else len(self.deaths)
            self.quarantine_reason = (f"its worker was killed {times} "
                                      f"times in {self.limits.quarantine_window_s:.0f} s {what}; last: {reason}")
            self.deaths.clear()

    def backoff_s(self) -> float:
        """0 for a first death, then 0.25 s doubling per death in the last minute, capped."""
        now = time.monotonic()
        self._prune(now)
        recent = sum(1 for t, _m, _r in self.deaths if now - t < 60.0)
        return 0.0 if recent <= 1 else min(self.limits.restart_backoff_max_s, 0.25 * 2 ** (recent - 2))

    def quarantine_left_s(self) -> float:
        return max(0.0, self.quarantined_until - time.monotonic())


_HEALTH: dict[tuple[str, str], MountHealth] = {}


def health_of(run_dir: Path, mount: str, limits: Limits) -> MountHealth:
    """The health record of ``mount`` in the daemon whose run dir is ``run_dir`` (it outlives each worker)."""
    health = _HEALTH.get((str(run_dir), mount))
    if health is None:
        health = _HEALTH[(str(run_dir), mount)] = MountHealth(limits)
    return health


UID_BASE = 1_700_000_000
UID_SPAN = 1_000_000
"""Workers of a root daemon run as uids from [UID_BASE, UID_BASE + UID_SPAN): far above any real user."""

_UIDS: dict[int, tuple[str, str]] = {}


def uid_for(run_dir: Path, mount: str) -> int | None:
    """The uid of ``mount``'s workers: a hash of (daemon run dir, mount path), probed past collisions, so
    it is the same for every restart of the mount and distinct between mounts.  ``None`` when not root."""
    if os.geteuid() != 0:
        return None
    key = (str(run_dir), mount)
    digest = int.from_bytes(hashlib.sha256("\0".join(key).encode()).digest()[:8], "big")
    for probe in range(UID_SPAN):
        uid = UID_BASE + (digest + probe) % UID_SPAN
        owner = _UIDS.setdefault(uid, key)
        if owner == key:
            return uid
    raise DeployError("no free worker uid left")


SyscallHandler = Callable[["WorkerHandle", Syscall], None]
"""Called synchronously for each syscall frame (it replies itself, or starts a task that will)."""
LogSink = Callable[[str, str | None, str], None]


class WorkerHandle:
    """One worker process of one mount."""

    def __init__(self, mount: str, code: dict[str, Any], env: dict[str, str], limits: Limits,
                 run_dir: Path, zctx: zmq.asyncio.Context, network: bool = False) -> None:
        self.mount = mount
        self.network = network
        self.code = code
        self.env = env
        self.limits = limits
        self.serial = next(_serial)
        self.run_dir = run_dir
        self.uid = uid_for(run_dir, mount) if limits.sandbox_hardening else None
        # a plain socket on the loop's reader callback (runtime.protocol.loopsock): zmq.asyncio futures
        # cost about as much again as the round trip itself
        self.sock: zmq.Socket[bytes] = zmq.Context.shadow(zctx.underlying).socket(zmq.PAIR)
        self._loop_sock: LoopSocket | None = None
        self._monitor: LoopSocket | None = None
        self.sock.setsockopt(zmq.LINGER, 0)
        # a random part in the name: another process (of the same uid, when there is no uid per mount) cannot
        # connect to a worker's endpoint ahead of it, since it cannot list the run dir nor guess the name
        tag = secrets.token_urlsafe(12)
        self._hello_secret: str | None = secrets.token_urlsafe(24)
        """What the worker's Hello must carry as its ``proof`` (handed over its stdin); ``None`` once taken."""
        if self.uid is None:
            self.endpoint = f"ipc://{run_dir}/w{self.serial}-{tag}.sock"
        else:
            # the socket in a 0700 directory of the worker's own uid (the run dir is traversable, not
            # listable), and the kernel-checked peer uid must be that uid (SO_PEERCRED, via libzmq)
            os.chmod(run_dir, 0o711)
            sock_dir = run_dir / f"w{self.serial}-{tag}"
            sock_dir.mkdir(mode=0o700)
            os.chown(sock_dir, self.uid, self.uid)
            self.endpoint = f"ipc://{sock_dir}/sock"
            self.sock.setsockopt(zmq.IPC_FILTER_UID, self.uid)
        self.sock.setsockopt(zmq.MAXMSGSIZE, codec.max_frame_bytes(limits))
        self.sock.setsockopt(zmq.SNDHWM, 10_000)
        self.sock.setsockopt(zmq.RCVHWM, 10_000)
        self.sock.bind(self.endpoint)
        if self.uid is not None:
            os.chown(self.endpoint[len("ipc://"):], self.uid, self.uid)
            os.chmod(self.endpoint[len("ipc://"):], 0o600)
        self.proc: asyncio.subprocess.Process | ForkedProcess | None = None
        self.zygote_layer = "off: not started"
        """How the process was started: the ``zygote`` layer of :attr:`layers`."""
        self.manifest: dict[str, Any] | None = None
        self.layers: dict[str, str] = {}
        self.hello: asyncio.Future[Hello] = asyncio.get_running_loop().create_future()
        self.results: dict[int, tuple[asyncio.Future[Result], str]] = {}
        """request id of an Invoke -> (future of its Result, function name)."""
        self.strikes = 0
        self.health = health_of(run_dir, mount, limits)
        self._misbehaved = False
        self._live_tokens: dict[int, str] = {}
        self._live_token_set: set[str] = set()
        """The tokens of ``_live_tokens``, for the check on every syscall."""
        """request id of an Invoke not yet answered -> its token: the only tokens this worker may use."""
        self._outstanding: set[int] = set()
        self._ended_tokens: dict[str, None] = {}
        """Tokens of calls that returned lately (oldest first): late syscalls with them are refused, not struck."""
        self._bucket = self.limits.worker_frames_per_s
        self._bucket_at = time.monotonic()
        self.dead = False
        self.peer_gone = False
        """The worker's connection dropped (its process is exiting, or was killed): it can take no frame."""
        self.baseline: tuple[int, int] | None = None
        """(threads, child processes) of the process when it sent its manifest, read from ``/proc``."""
        self.recycling = ""
        self._recounting = False
        """A census after a call counted more threads: no new call until a second count (a thread whose
        ``join()`` returned may still be listed for a moment while the kernel ends it) says recycle or not."""
        """Why the worker takes no more calls and is killed once the ones it runs are done ("" while it does)."""
        self.exit_code: int | None = None
        self.death_reason = ""
        self.killed_for: str | None = None
        """The capability token of the one call whose time limit got this worker killed (its other calls did
        nothing wrong: a query among them is run again on the replacement)."""
        self.on_exit: Callable[[WorkerHandle], None] | None = None
        self.on_reaped: Callable[[WorkerHandle], None] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._ids = itertools.count(1)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def next_id(self) -> int:
        return next(self._ids)

    async def start(self, on_syscall: SyscallHandler, on_log: LogSink) -> dict[str, Any]:
        """Spawn the process, send its config, wait for its manifest."""
        delay = self.health.backoff_s()
        if delay:
            on_log(self.mount, None, f"restarting after {delay:.2f} s (backoff: its workers keep dying)")
            await asyncio.sleep(delay)
        workdir = Path(self.endpoint[len("ipc://"):]).parent / f"w{self.serial}.cwd"
        workdir.mkdir(mode=0o700, exist_ok=True)
        config = WorkerConfig(endpoint=self.endpoint, mount=self.mount, code=CODE_SPEC.validate_python(self.code),
                              env=self.env, limits=limit_fields(self.limits), network=self.network, uid=self.uid,
                              hello_secret=self._hello_secret or "")
        self.proc = await self._spawn(config.label, workdir)
        assert self.proc.stdin is not None
        self.proc.stdin.write(msgpack.packb(config.model_dump()))
        await self.proc.stdin.drain()
        self.proc.stdin.close()
        self._serve_frames(on_syscall)
        self._tasks = [
            asyncio.create_task(self._read_output(on_log)),
            asyncio.create_task(self._watch()),
        ]
        try:
            hello = await asyncio.wait_for(asyncio.shield(self.hello), self.limits.worker_hello_timeout_s)
        except TimeoutError:
            self.kill("no manifest in time")
            raise DeployError(f"mount {self.mount or '(app)'!r}: the worker sent no manifest within "
                              f"{self.limits.worker_hello_timeout_s:.0f} s") from None
        if hello.error is not None:
            err = from_wire(hello.error)
            raise DeployError(f"mount {self.mount or '(app)'!r}: {err.message}", cause=hello.error)
        assert hello.manifest is not None
        try:  # the coordinator's own check: a compromised worker cannot hand it a malformed manifest
            parse(Manifest, hello.manifest, "manifest")
        except ValidationError as exc:
            self.kill("malformed manifest")
            raise DeployError(f"mount {self.mount or '(app)'!r}: {exc.message}", issues=exc.fields["issues"]) from None
        self.manifest = hello.manifest
        self.baseline = self.census()
        self.layers = dict(hello.layers)
        self.layers["zygote"] = self.zygote_layer  # the supervisor's own knowledge, never the worker's word
        return hello.manifest

    async def _spawn(self, label: str, workdir: Path) -> asyncio.subprocess.Process | ForkedProcess:
        """Fork the worker from the zygote; a fresh interpreter when that cannot be (:attr:`zygote_layer` says)."""
        zygote = zygote_for(self.run_dir, self.limits)
        if zygote is None:
            self.zygote_layer = "off: worker_zygote=0, a fresh interpreter per worker"
        else:
            try:
                proc = await zygote.spawn(workdir, label, self.limits.worker_hello_timeout_s)
                self.zygote_layer = f"on: forked by zygote pid {proc.zygote_pid}"
                return proc
            except ZygoteUnavailable as exc:
                self.zygote_layer = str(exc)
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", WORKER_MODULE, label,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=str(workdir), env=_WORKER_ENV, close_fds=True, start_new_session=True,
        )

    def _process_gone(self) -> bool:
        """Whether the worker process has exited (a zombie counts), read from ``/proc``."""
        pid = self.pid
        if pid is None:
            return True
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        return state in (b"Z", b"X")

    @property
    def usable(self) -> bool:
        """Running and not condemned (a killed worker is unusable before its exit is noticed)."""
        return not self.dead and not self.death_reason

    @property
    def accepts_calls(self) -> bool:
        """Usable, connected and not being recycled: a new invocation may be sent to it."""
        return self.usable and not self.recycling and not self.peer_gone and not self._recounting

    def census(self) -> tuple[int, int] | None:
        """(threads, child processes) of the worker, read from ``/proc`` by the coordinator (never asked of the
        worker): the entries of ``task/``, and the pids in each thread's ``task/<tid>/children``.  ``None``
        when the process is gone or ``/proc`` is not readable.  About 20 µs for a worker's usual 3 threads."""
        pid = self.pid
        if pid is None:
            return None
        try:
            tids = os.listdir(f"/proc/{pid}/task")
            children = 0
            for tid in tids:
                fd = os.open(f"/proc/{pid}/task/{tid}/children", os.O_RDONLY)
                try:
                    children += len(os.read(fd, 4096).split())
                finally:
                    os.close(fd)
        except OSError:
            return None
        return len(tids), children

    def _check_growth(self, again: bool = False) -> None:
        """After a result: a worker with more threads or child processes than at its manifest is recycled.

        One extra thread is counted twice, :data:`RECOUNT_S` apart, with no call sent in between: a thread
        the call joined may still be listed while the kernel ends it."""
        if self.baseline is None or self.recycling or (self._recounting and not again):
            return
        self._recounting = False
        now = self.census()
        if now is None:
            return
        (threads0, children0), (threads, children) = self.baseline, now
        if children > children0 or (threads > threads0 and again):
            self.recycle(f"it has {threads} threads and {children} child processes after a call, "
                         f"{threads0} and {children0} when it started")
        elif threads > threads0:
            self._recounting = True  # no call is sent until the count is taken again
            asyncio.get_running_loop().call_later(RECOUNT_S, self._recount)

    def _recount(self) -> None:
        if self._recounting and not self.dead:
            self._check_growth(again=True)
        self._recounting = False

    def recycle(self, reason: str) -> None:
        """Send the worker no more calls; kill it once the calls it runs are done (at most ``worker_drain_s``
        later); its mount restarts it as after a crash."""
        if self.recycling or not self.usable:
            return
        self.recycling = f"recycled: {reason}"
        if self.results:
            asyncio.get_running_loop().call_later(self.limits.worker_drain_s, self.kill, self.recycling)
        else:
            self.kill(self.recycling)

    async def send(self, frame: Any) -> None:
        """Queue a frame without blocking (see :meth:`send_now`)."""
        self.send_now(frame)

    def send_now(self, frame: Any) -> None:
        """Queue a frame without blocking: a PAIR socket whose peer is gone would block forever."""
        label = self.mount or "(app)"
        if not self.usable:
            gone = WorkerCrashed(f"the worker of mount {label!r} is not running")
            gone.unsent = True  # type: ignore[attr-defined]  # nothing left: a call may wait for the restart
            raise gone
        invoke = isinstance(frame, Invoke) and frame.kind != "system"
        if invoke and self.health.quarantine_left_s() > 0:
            raise WorkerCrashed(
                f"mount {label!r} is quarantined for another {self.health.quarantine_left_s():.0f} s: "
                f"{self.health.quarantine_reason}; its calls fail until then"
            )
        try:
            # the asyncio socket would queue a frame it cannot send now in memory, without limit: look first
            # (reading EVENTS also re-arms the asyncio socket's edge-triggered wake-ups)
            writable = int(self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLOUT
            if writable:
                data = codec.encode_frame(frame)
                if self._loop_sock is not None:
                    self._loop_sock.send(data)
                else:
                    self.sock.send(data, flags=zmq.NOBLOCK)
        except zmq.Again:
            writable = zmq.PollEvent(0)
        except zmq.ZMQError as exc:
            raise WorkerCrashed(f"the worker of mount {label!r} is not reachable ({exc.strerror}); "
                                "it is being restarted") from None
        if not writable:
            if self._loop_sock is not None:
                self._loop_sock._check()  # reading EVENTS may have taken the edge of frames waiting to be read
            if self.peer_gone or self._process_gone():
                # not a worker that stopped reading: one that died and whose exit is not noticed yet
                gone = WorkerCrashed(f"the worker of mount {label!r} is not running")
                gone.unsent = True  # type: ignore[attr-defined]
                raise gone
            self.strike("does not read its replies", "its queue of replies is full")
            raise WorkerCrashed(f"the worker of mount {label!r} does not read its replies (send queue full)")
        if isinstance(frame, Invoke):
            self._live_tokens[frame.request_id] = frame.token
            self._live_token_set.add(frame.token)
        elif isinstance(frame, SyscallResult):
            self._outstanding.discard(frame.request_id)

    def strike(self, category: str, detail: str) -> None:
        """Count one misbehaviour; at ``worker_max_strikes`` the worker is killed.

        The mount's health remembers why.
        """
        self.strikes += 1
        if self.strikes >= self.limits.worker_max_strikes and not self.death_reason:
            self._misbehaved = True
            self.kill(f"{self.strikes} strikes, the last: {category} ({detail[:200]})")

    def _over_rate(self) -> bool:
        now = time.monotonic()
        rate = self.limits.worker_frames_per_s
        self._bucket = min(rate, self._bucket + (now - self._bucket_at) * rate)
        self._bucket_at = now
        if self._bucket < 1:
            return True
        self._bucket -= 1
        return False

    def _serve_frames(self, on_syscall: SyscallHandler) -> None:
        """Start serving the socket from the loop's reader callback."""
        if not self.dead and self._loop_sock is None:
            self._on_syscall = on_syscall
            self._monitor = LoopSocket(self.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED), self._on_event,
                                       multipart=True)
            self._loop_sock = LoopSocket(self.sock, self._on_frame)

    def _on_event(self, frames: list[bytes]) -> None:
        """The worker's connection dropped: after its Hello nothing that connects again is trusted (the name
        is unlinked by then), so a worker still alive shortly after is killed and restarted."""
        if parse_monitor_message(frames)["event"] == zmq.EVENT_DISCONNECTED and self.hello.done():
            self.peer_gone = True  # nothing sent from now on can arrive: calls wait for the replacement
            asyncio.get_running_loop().call_later(0.5, self._disconnected)

    def _disconnected(self) -> None:
        if not self.dead and not self.death_reason:  # a worker that died says why itself
            self.kill("its connection to the coordinator dropped")

    def _close_sock(self) -> None:
        if self._monitor is not None:
            # stop the monitor before closing its reader: libzmq's I/O thread sends an event (a worker's
            # disconnect) blocking, holding the monitor's mutex, and with the reader gone it waits forever while
            # disable_monitor() here waits for that mutex (a coordinator hung in _close_sock, seen in the suite)
            if not self.sock.closed:
                try:
                    self.sock.disable_monitor()
                except zmq.ZMQError:
                    pass
            self._monitor.close()
            self._monitor = None
        if self._loop_sock is not None:
            self._loop_sock.close()  # stops watching the descriptor before it is closed
        self.sock.close(linger=0)

    def _refuse_hello(self, why: str) -> None:
        """Something other than the worker's own Hello came first: that peer is not the process we spawned
        (or the worker is broken).  Nothing of it is taken; the worker is killed and its start fails."""
        self._hello_secret = None
        if not self.hello.done():
            self.hello.set_exception(DeployError(
                f"mount {self.mount or '(app)'!r}: refused {why} on the worker's socket before its Hello "
                "(not the process the supervisor spawned); the worker was killed"))
        self.kill(f"refused {why} before its Hello")

    def _take_hello(self, data: bytes) -> None:
        """The first frame on the socket: the Hello of the process spawned, proven by its one-time secret."""
        try:
            msg = codec.decode_frame(data, self.limits, untrusted=True)
        except ProtocolError as exc:
            self._refuse_hello(f"a malformed frame ({exc.message[:200]})")
            return
        if not isinstance(msg, Hello):
            self._refuse_hello(f"a {msg.type.value!r} frame")
            return
        expected, self._hello_secret = self._hello_secret, None  # one Hello per socket: the secret is spent
        if expected is None or msg.proof is None or not hmac.compare_digest(
                msg.proof.encode("utf-8", "surrogatepass"), expected.encode()):
            self._refuse_hello("a forged hello (without the worker's one-time proof)")
            return
        # the worker is connected: take the name away, so no process can connect after it (a bound PAIR takes
        # a new peer once the first is gone; a dropped connection kills the worker, see _on_event)
        try:
            os.unlink(self.endpoint[len("ipc://"):])
        except OSError:
            pass
        self.hello.set_result(msg)

    def _on_frame(self, data: bytes) -> None:
        if self.dead or self.death_reason:
            return  # condemned: nothing it sends is served any more
        if not self.hello.done():
            self._take_hello(data)
            return
        if self._over_rate():
            self.strike("flooded the coordinator", f"more than {self.limits.worker_frames_per_s:.0f} frames/s")
            return
        try:
            msg = codec.decode_frame(data, self.limits, untrusted=True)
        except ProtocolError as exc:
            self.strike("sent malformed frames", exc.message)
            return
        if isinstance(msg, Syscall):
            if msg.token in self._ended_tokens:
                pass  # a sibling coroutine of a call that just returned: refused by the engine, not a strike
            elif msg.token == "system" or msg.token not in self._live_token_set:
                self.strike("used unknown or revoked capability tokens", msg.token)
            elif len(self._outstanding) >= self.limits.worker_max_outstanding:
                self.strike("flooded the coordinator",
                            f"more than {self.limits.worker_max_outstanding} syscalls awaiting replies")
                return
            self._outstanding.add(msg.request_id)
            self._on_syscall(self, msg)
        elif isinstance(msg, Result):
            ended = self._live_tokens.pop(msg.request_id, None)
            invoked = ended is not None
            if ended is not None:
                self._live_token_set.discard(ended)
                self._ended_tokens[ended] = None
                while len(self._ended_tokens) > ENDED_TOKENS_KEPT:
                    self._ended_tokens.pop(next(iter(self._ended_tokens)))
            entry = self.results.pop(msg.request_id, None)
            if entry is not None and not entry[0].done():
                entry[0].set_result(msg)
            elif not invoked:
                self.strike("sent unsolicited frames", f"a result for request {msg.request_id}, never invoked")
            if invoked:
                self._check_growth()
                if self.recycling and not self.results:
                    self.kill(self.recycling)
        else:  # a second Hello too: one per socket
            self.strike("sent unsolicited frames", f"a {msg.type.value!r} frame")

    async def _read_output(self, on_log: LogSink) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                return
            on_log(self.mount, None, line.decode("utf-8", "replace").rstrip("\n")[: self.limits.log_line_bytes])

    async def _watch(self) -> None:
        assert self.proc is not None
        self.exit_code = await self.proc.wait()
        self.dead = True
        if isinstance(self.proc, ForkedProcess) and self.proc.lost_with_zygote and not self.death_reason:
            self.death_reason = f"died with its zygote (pid {self.proc.zygote_pid})"
        why = self.death_reason or f"exited with code {self.exit_code}"
        if not self.death_reason.startswith("stopped") and "did not stop in time" not in self.death_reason:
            self.health.record(self._misbehaved, why)
        for fut, function in self.results.values():
            if not fut.done():
                fut.set_exception(WorkerCrashed(
                    f"the worker of mount {self.mount or '(app)'!r} died while running {function!r} ({why}); "
                    "its transaction was discarded"
                ))
        self.results.clear()
        if not self.hello.done():
            self.hello.set_exception(
                DeployError(f"mount {self.mount or '(app)'!r}: the worker {why} before sending its manifest"))
        self._close_sock()
        if self.on_reaped is not None:
            self.on_reaped(self)
        if self.on_exit is not None:
            self.on_exit(self)

    def kill(self, reason: str) -> None:
        """SIGKILL the worker's process group (it is its own session)."""
        if not self.death_reason:
            self.death_reason = f"killed: {reason}"
        if self.proc is not None and self.proc.returncode is None:
            if isinstance(self.proc, ForkedProcess):
                self.proc.send_signal(signal.SIGKILL)  # by pidfd: never a recycled pid
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def stop(self, grace_s: float = 2.0) -> None:
        """Ask politely (SIGTERM), then SIGKILL; wait for the exit; close the socket either way."""
        if self.proc is None or self.proc.returncode is not None:
            self._close_sock()
            if self.on_reaped is not None:
                self.on_reaped(self)
            return
        self.on_exit = None
        self.death_reason = self.death_reason or "stopped"
        try:
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.proc.wait(), grace_s)
        except (TimeoutError, ProcessLookupError):
            self.kill("did not stop in time")
            await self.proc.wait()
        self._close_sock()

    async def drain(self, timeout_s: float) -> None:
        """Wait for the in-flight invocations to finish, then stop."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.results and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await self.stop()


