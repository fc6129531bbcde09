"""The zygote: a clean, preloaded process that forks each worker.

A fresh interpreter spends most of a worker's start importing the runtime,
pydantic, msgpack and zmq.  The zygote pays that once: the supervisor starts
it exactly as it starts a worker (``python -m sandbox.zygote``, never a fork
of the coordinator: empty environment, ``close_fds``, a session of its own),
it imports what a worker imports, and then forks one child per spawn request.
The child becomes a worker by running :func:`sandbox.worker.main`, which
reads its :class:`~runtime.protocol.deploy.WorkerConfig` from stdin and hardens
itself exactly as a fresh worker does (same layers, same order).

What the zygote never holds: LMDB (nothing here opens it), a zmq context or
socket (``zmq`` is imported, no ``Context`` is made), a thread (checked before
every fork), a mount's configuration or secrets (the config travels on a pipe
from the supervisor straight to the child; the zygote only passes the pipe's
descriptor on).  Its links to the coordinator are the control socket below and
its stderr, the daemon's own (write-only; each child gets the supervisor's pipes
instead).  Before serving it runs the worker's pure start-up code once on a
throwaway definition (:func:`_warm`), so each child finds pydantic's validators
and schema machinery built.

The wire (one ``SOCK_SEQPACKET`` datagram per message, a msgpack map)::

    supervisor -> zygote  {"op": "spawn", "id", "workdir", "label"}  + fds [stdin read end, stdout write end]
    zygote -> supervisor  {"op": "ready", "pid"}
                          {"op": "spawned", "id", "pid"}             + fds [pidfd of the child]
                          {"op": "failed", "id", "error"}
                          {"op": "exited", "pid", "code"}            (code as asyncio's returncode)

Death: the zygote dies with the coordinator (``PR_SET_PDEATHSIG``, even on
``kill -9``), each worker with the zygote (the same, set by the worker), so
``kill -9`` of the coordinator still takes every worker down.  The supervisor
holds a pidfd per worker: signals go through it (no pid reuse race) and its
readability is the exit; the zygote's ``exited`` report gives the code.

Warning:
    Forked workers share the zygote's memory layout (ASLR is per exec) and
    its string hash seed, so one mount's code knows both for its siblings
    (useful to a memory-corruption exploit, or to craft colliding dict keys
    as arguments of a call into a child).  Workers are isolated by uid,
    namespaces, Landlock and seccomp, not by address secrecy; a fresh
    interpreter per worker remains available (``BULKHEAD_WORKER_ZYGOTE=0``).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import msgpack

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
_MAX_MSG = 64 * 1024
ZYGOTE_MODULE = "sandbox.zygote"


# --- the zygote process ------------------------------------------------------------------------------


def _send(ctrl: socket.socket, msg: dict[str, Any], fds: list[int] | None = None) -> None:
    data = msgpack.packb(msg)
    if fds:
        socket.send_fds(ctrl, [data], fds)
    else:
        ctrl.send(data)


def _recv(ctrl: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and the descriptors that came with it; ``(None, [])`` at end of file."""
    data, fds, _flags, _addr = socket.recv_fds(ctrl, _MAX_MSG, 4)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    msg = msgpack.unpackb(data, raw=False)
    return (msg if isinstance(msg, dict) else {}), fds


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


class _Child:
    """What a forked child needs to become a worker."""

    def __init__(self, label: str, zygote_pid: int) -> None:
        self.label = label
        self.zygote_pid = zygote_pid


def _preload() -> None:
    """Import what a worker imports before it reads its config (no context, socket or thread is made)."""
    import zmq  # noqa: F401  # the module only: a Context would start I/O threads

    import sandbox.hardening
    import sandbox.worker  # noqa: F401  # runtime, pydantic, msgpack, the sandbox modules

    try:  # what harden_early loads first (libseccomp): a fresh worker pays it too
        import pyseccomp  # noqa: F401
    except (ImportError, OSError):
        pass
    _warm()


def _warm() -> None:
    """Run once what every worker runs on the way to its hello, on a throwaway definition of our own.

    Pydantic (and our models) build their validators and schema machinery on first use; done here, each
    child finds them built.  Only pure computation: no user code, no import hook (``loader.install`` is
    the child's), no file, socket or thread, and nothing kept but those caches.
    """
    from pydantic import BaseModel

    from runtime import Component
    from runtime.limits import Limits
    from runtime.protocol import codec
    from runtime.protocol.deploy import CODE_SPEC, WorkerConfig, limit_fields, parse
    from runtime.protocol.messages import Hello
    from sandbox.worker import build_manifest

    warm = Component("zygote_warm_up")

    @warm.table("rows", indexes={"by_key": ["key"]})
    class Row(BaseModel):
        key: str
        value: int = 0

    @warm.query
    async def get(ctx: Any, key: str, limit: int = 1) -> list[dict[str, Any]]:
        return []

    @warm.mutation
    async def put(ctx: Any, key: str, value: float | None = None) -> None:
        return None

    manifest = build_manifest(warm)
    code = CODE_SPEC.validate_python({"kind": "component", "app_dir": "/nonexistent", "module": "warm",
                                      "attr": "component", "explicit": False})
    config = WorkerConfig(endpoint="ipc:///nonexistent", mount="", code=code, env={},
                          limits=limit_fields(Limits()), network=False, uid=None,
                          hello_secret="0" * 32)
    parse(WorkerConfig, msgpack.unpackb(msgpack.packb(config.model_dump()), raw=False), "worker config")
    codec.encode_frame(Hello(request_id=0, manifest=manifest.model_dump(), layers={}))


def _fork(ctrl: socket.socket, msg: dict[str, Any], fds: list[int], wake: tuple[int, int]) -> _Child | None:
    """Fork one worker; in the child return what it needs (the zygote's loop is left), in the zygote ``None``."""
    rid = msg.get("id")
    try:
        stdin_fd, stdout_fd = fds
        workdir, label = str(msg["workdir"]), str(msg["label"])
    except (KeyError, ValueError):
        for fd in fds:
            os.close(fd)
        _send(ctrl, {"op": "failed", "id": rid, "error": "malformed spawn request"})
        return None
    if _threads() != 1:
        _send(ctrl, {"op": "failed", "id": rid, "error": f"the zygote has {_threads()} threads, not 1"})
        os.close(stdin_fd)
        os.close(stdout_fd)
        return None
    me = os.getpid()
    try:
        pid = os.fork()
    except OSError as exc:
        _send(ctrl, {"op": "failed", "id": rid, "error": f"fork failed ({exc.strerror})"})
        os.close(stdin_fd)
        os.close(stdout_fd)
        return None
    if pid == 0:
        # the child: nothing of the zygote's but the interpreter and its modules stays
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.close(ctrl.detach())
        for fd in wake:
            os.close(fd)
        os.setsid()
        os.dup2(stdin_fd, 0)
        os.dup2(stdout_fd, 1)
        os.dup2(stdout_fd, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.chdir(workdir)
        return _Child(label, me)
    os.close(stdin_fd)
    os.close(stdout_fd)
    try:
        pidfd = os.pidfd_open(pid)  # before the child can be reaped (only this loop reaps)
    except OSError as exc:
        os.kill(pid, signal.SIGKILL)
        _send(ctrl, {"op": "failed", "id": rid, "error": f"pidfd_open failed ({exc.strerror})"})
        return None
    try:
        _send(ctrl, {"op": "spawned", "id": rid, "pid": pid}, [pidfd])
    finally:
        os.close(pidfd)
    return None


def _reap(ctrl: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(ctrl, {"op": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})


def _serve(ctrl: socket.socket) -> _Child:
    """Answer spawn requests until the control socket closes (then exit); returns only in a forked child."""
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGCHLD, lambda _signo, _frame: None)
    signal.set_wakeup_fd(wake_w)
    poller = select.poll()
    poller.register(ctrl.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        for fd, _events in poller.poll():
            if fd == wake_r:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    pass
                _reap(ctrl)
                continue
            msg, fds = _recv(ctrl)
            if msg is None:
                os._exit(0)  # the coordinator is gone or done: so are we (our workers die with us)
            if msg.get("op") != "spawn":
                for extra in fds:
                    os.close(extra)
                continue
            child = _fork(ctrl, msg, fds, (wake_r, wake_w))
            if child is not None:
                return child


def _die_with(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)  # the coordinator died before the death signal was armed


def main() -> None:
    """``python -m sandbox.zygote COORDINATOR_PID CONTROL_FD``: preload, then fork workers on request."""
    parent, ctrl_fd = int(sys.argv[1]), int(sys.argv[2])
    _die_with(parent)
    home = os.getcwd()
    ctrl = socket.socket(fileno=ctrl_fd)
    ctrl.setblocking(True)
    _preload()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # the zygote's memory is not for same-uid workers to read
    gc.collect()
    gc.freeze()  # the preloaded heap stays shared with the children: the collector never touches it
    if _threads() != 1:
        print(f"bulkhead-zygote: {_threads()} threads after preloading, not 1", file=sys.stderr, flush=True)
        sys.exit(3)
    _send(ctrl, {"op": "ready", "pid": os.getpid()})
    child = _serve(ctrl)
    # now a forked child: become a worker exactly as `python -m sandbox.worker LABEL` would
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # as a fresh process; the worker's own hardening decides
    from sandbox import worker

    sys.argv = [worker.__file__, child.label]
    if sys.path and sys.path[0] == home:
        sys.path[0] = os.getcwd()  # `python -m` put the zygote's working directory first: the worker's own
    worker.main(parent=child.zygote_pid)


# --- the supervisor's end ----------------------------------------------------------------------------


class ZygoteUnavailable(Exception):
    """The zygote cannot start this worker (the reason is the message): start a fresh interpreter."""


class ForkedProcess:
    """A worker forked by the zygote, with the parts of :class:`asyncio.subprocess.Process` the supervisor uses.

    It is not our child: its exit is the readability of its pidfd, its code the zygote's report.
    """

    def __init__(self, pid: int, pidfd: int, zygote_pid: int, status: asyncio.Future[int | None]) -> None:
        self.pid = pid
        self.zygote_pid = zygote_pid
        self.returncode: int | None = None
        self.lost_with_zygote = False
        """Whether the zygote died before reporting this worker's exit (it then died of its death signal)."""
        self.stdin: asyncio.StreamWriter | None = None
        self.stdout: asyncio.StreamReader | None = None
        self._pidfd = pidfd
        self._status = status
        loop = asyncio.get_running_loop()
        self._gone: asyncio.Future[None] = loop.create_future()
        loop.add_reader(pidfd, self._on_exit)
        self._done = asyncio.ensure_future(self._wait())

    async def connect(self, stdin_w: int, stdout_r: int) -> None:
        loop = asyncio.get_running_loop()
        self.stdout = asyncio.StreamReader(limit=2 ** 16, loop=loop)  # asyncio.subprocess's own limit
        protocol = asyncio.StreamReaderProtocol(self.stdout, loop=loop)
        await loop.connect_read_pipe(lambda: protocol, os.fdopen(stdout_r, "rb", 0))
        transport, wproto = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                          os.fdopen(stdin_w, "wb", 0))
        self.stdin = asyncio.StreamWriter(transport, wproto, None, loop)

    def _on_exit(self) -> None:
        asyncio.get_running_loop().remove_reader(self._pidfd)
        if not self._gone.done():
            self._gone.set_result(None)

    async def _wait(self) -> int:
        await self._gone
        try:
            code = await asyncio.wait_for(asyncio.shield(self._status), 5.0)
        except TimeoutError:
            code = None
        # no report: the zygote died, and this worker with it (its death signal is SIGKILL)
        self.lost_with_zygote = code is None
        self.returncode = -signal.SIGKILL if code is None else code
        os.close(self._pidfd)
        self._pidfd = -1
        return self.returncode

    async def wait(self) -> int:
        """Wait for the exit; its code (negative: the signal), as :meth:`asyncio.subprocess.Process.wait`."""
        return await asyncio.shield(self._done)

    def send_signal(self, signo: int) -> None:
        """Signal the worker through its pidfd (never a recycled pid)."""
        if self.returncode is None and self._pidfd >= 0:
            try:
                signal.pidfd_send_signal(self._pidfd, signo)
            except ProcessLookupError:
                pass


class Zygote:
    """The supervisor's handle on one zygote process (restarted when it dies; ``reason`` says why it is off)."""

    CRASHES_ALLOWED = 3
    """Deaths of a zygote within ``CRASH_WINDOW_S`` after which the daemon stops using one: workers start fresh."""
    CRASH_WINDOW_S = 60.0

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.reason = ""
        """Why the zygote is off ("" while it is usable)."""
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: list[asyncio.Future[None]] = []
        self._is_ready = False
        self._spawns: dict[int, asyncio.Future[tuple[int, int, asyncio.Future[int | None]]]] = {}
        """Spawn request id -> its answer: (pid, pidfd, the future of the exit code)."""
        self._exits: dict[int, asyncio.Future[int | None]] = {}
        """pid of a worker alive as far as we know -> its exit code (``None``: the zygote died first)."""
        self._deaths: deque[float] = deque()
        self._ids = 0
        self._closed = False

    # --- the process ---------------------------------------------------------------------------------

    def _start(self) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.cwd.mkdir(mode=0o700, exist_ok=True)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", ZYGOTE_MODULE, str(os.getpid()), str(theirs.fileno())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=None, cwd=str(self.cwd), env=self.env,
                close_fds=True, pass_fds=(theirs.fileno(),), start_new_session=True,
            )
        except OSError as exc:
            mine.close()
            self.reason = f"off: the zygote could not start ({exc})"
            return
        finally:
            theirs.close()
        mine.setblocking(False)
        self._sock = mine
        self.pid = self.proc.pid
        self._is_ready = False
        self._loop = None

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        """Watch the control socket from the running loop (a new loop drops what the old one waited for)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop and self._sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._sock.fileno())
            self._ready, self._spawns, self._exits = [], {}, {}
            loop.add_reader(self._sock.fileno(), self._on_readable)
            self._loop = loop
        return loop

    def prestart(self) -> None:
        """Start the zygote now, so it has preloaded by the first deploy (``ensure`` waits for it then)."""
        if not self.reason and not self._closed and self._sock is None and hasattr(os, "pidfd_open"):
            self._start()

    async def ensure(self, timeout_s: float) -> None:
        """Start the zygote if none runs and wait until it is ready; :class:`ZygoteUnavailable` if it cannot be."""
        if self.reason:
            raise ZygoteUnavailable(self.reason)
        if self._closed:
            raise ZygoteUnavailable("off: the daemon is stopping")
        if not hasattr(os, "pidfd_open") or not hasattr(signal, "pidfd_send_signal"):
            self.reason = "off: this Python has no pidfd_open"
            raise ZygoteUnavailable(self.reason)
        if self._sock is None:
            self._start()
            if self.reason:
                raise ZygoteUnavailable(self.reason)
        loop = self._bind_loop()
        if self._is_ready:
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._ready.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            self._lost(f"it was not ready within {timeout_s:.0f} s")
            raise ZygoteUnavailable(f"off: the zygote was not ready within {timeout_s:.0f} s") from None

    def _lost(self, why: str) -> None:
        """The zygote is gone (or given up on): fail what waits for it; its workers are dying with it."""
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                try:
                    proc.kill()  # by the Popen object: our own child, never reaped before this
                except ProcessLookupError:
                    pass
            try:
                proc.wait(timeout=5)  # killed (or exiting already: EOF came from its exit), so at once
            except subprocess.TimeoutExpired:
                pass
            why = f"{why}, exit code {proc.returncode}"
        was_ready, self._is_ready = self._is_ready, False
        for fut in self._ready:
            if not fut.done():
                fut.set_exception(ZygoteUnavailable(f"off: the zygote died before it was ready ({why})"))
        for sfut in self._spawns.values():
            if not sfut.done():
                sfut.set_exception(ZygoteUnavailable(f"off: the zygote died ({why})"))
        for efut in self._exits.values():
            if not efut.done():
                efut.set_result(None)
        self._ready, self._spawns, self._exits = [], {}, {}
        if self._closed:
            return
        now = time.monotonic()
        self._deaths.append(now)
        while now - self._deaths[0] > self.CRASH_WINDOW_S:
            self._deaths.popleft()
        if not was_ready:
            self.reason = f"off: the zygote died before it was ready ({why}); workers start in fresh interpreters"
        elif len(self._deaths) >= self.CRASHES_ALLOWED:
            self.reason = (f"off: the zygote died {len(self._deaths)} times in {self.CRASH_WINDOW_S:.0f} s, "
                           f"the last {why}; workers start in fresh interpreters")
        else:
            self._start()  # at once: the workers that died with it are about to be restarted
        # the coordinator's stderr is the daemon's log; the workers' deaths are in `bulkhead logs`
        pid = proc.pid if proc is not None else "?"
        print(f"bulkhead: zygote pid {pid} lost ({why}); " + (self.reason or f"zygote pid {self.pid} started"),
              file=sys.stderr, flush=True)

    def _on_readable(self) -> None:
        sock = self._sock
        while sock is not None and sock is self._sock:
            try:
                data, fds, _flags, _addr = socket.recv_fds(sock, _MAX_MSG, 4)
            except BlockingIOError:
                return
            except OSError as exc:
                self._lost(f"its socket failed ({exc.strerror})")
                return
            if not data:
                self._lost("its control socket closed")
                return
            try:
                msg = msgpack.unpackb(data, raw=False)
            except (ValueError, msgpack.UnpackException):
                msg = None
            if not isinstance(msg, dict):
                for fd in fds:
                    os.close(fd)
                self._lost("after sending garbage")
                return
            self._on_message(msg, fds)

    def _on_message(self, msg: dict[str, Any], fds: list[int]) -> None:
        op = msg.get("op")
        if op == "ready":
            self._is_ready = True
            for waiter in self._ready:
                if not waiter.done():
                    waiter.set_result(None)
            self._ready = []
        elif op == "spawned" and len(fds) == 1:
            pid = int(msg["pid"])
            assert self._loop is not None
            status: asyncio.Future[int | None] = self._loop.create_future()
            self._exits[pid] = status
            fut = self._spawns.pop(int(msg["id"]), None)
            if fut is not None and not fut.done():
                fut.set_result((pid, fds[0], status))
                return
            # nobody waits for it any more (a loop change, a timeout): it must not run
            signal.pidfd_send_signal(fds[0], signal.SIGKILL)
            os.close(fds[0])
        elif op == "failed":
            sfut = self._spawns.pop(int(msg.get("id") or 0), None)
            if sfut is not None and not sfut.done():
                sfut.set_exception(ZygoteUnavailable(f"off: the zygote could not fork ({msg.get('error')})"))
        elif op == "exited":
            efut = self._exits.pop(int(msg["pid"]), None)
            if efut is not None and not efut.done():
                efut.set_result(int(msg["code"]))
        for fd in fds if op != "spawned" else []:
            os.close(fd)

    # --- workers -------------------------------------------------------------------------------------

    async def spawn(self, workdir: Path, label: str, timeout_s: float) -> ForkedProcess:
        """A new worker forked in ``workdir``, its stdin and stdout pipes connected to us."""
        await self.ensure(timeout_s)
        loop = self._bind_loop()
        assert self._sock is not None and self.pid is not None
        self._ids += 1
        rid = self._ids
        fut: asyncio.Future[tuple[int, int, asyncio.Future[int | None]]] = loop.create_future()
        self._spawns[rid] = fut
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        try:
            _send(self._sock, {"op": "spawn", "id": rid, "workdir": str(workdir), "label": label}, [stdin_r, stdout_w])
        except OSError as exc:
            self._spawns.pop(rid, None)
            for fd in (stdin_w, stdout_r):
                os.close(fd)
            raise ZygoteUnavailable(f"off: the zygote did not take the request ({exc.strerror})") from None
        finally:
            os.close(stdin_r)
            os.close(stdout_w)
        try:
            pid, pidfd, status = await asyncio.wait_for(fut, timeout_s)
        except BaseException:
            self._spawns.pop(rid, None)
            for fd in (stdin_w, stdout_r):
                os.close(fd)
            raise
        proc = ForkedProcess(pid, pidfd, self.pid, status)
        try:
            await proc.connect(stdin_w, stdout_r)
        except BaseException:
            proc.send_signal(signal.SIGKILL)
            raise
        return proc

    def close(self) -> None:
        """Stop the zygote (its workers, if any are left, die with it)."""
        self._closed = True
        self._lost("closed")


if __name__ == "__main__":
    main()
