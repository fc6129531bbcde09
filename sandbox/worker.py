"""A worker: one process running one mount's code, serving invocations from the coordinator.

Started fresh by the coordinator (``python -m sandbox.worker MOUNT``: never a
fork of it), with an empty environment, an empty working directory and no
inherited descriptors.  Its configuration (endpoint, code location, the
mount's environment variables) arrives on stdin, never in argv or env: one
msgpack map, read as a :class:`~runtime.protocol.deploy.WorkerConfig`.

The worker loads the mount's code under restricted globals
(:mod:`sandbox.loader`), sends a ``hello`` frame with the definition's
manifest (checked as a :class:`~runtime.protocol.deploy.Manifest` first),
then serves ``invoke`` frames concurrently on one asyncio loop: each
invocation runs as a task, so a re-entrant chain (A -> B -> handle back into A)
finds A's loop free.  Everything an invocation prints or logs is captured in
its own buffer (a context variable) and shipped back with its result.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import io
import itertools
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import msgpack
import zmq
import zmq.asyncio
import zmq.utils.garbage as zmq_garbage
import zmq.utils.monitor as zmq_monitor

from runtime import values
from runtime.app import Definition, Function
from runtime.errors import BulkheadError, LimitExceeded, NotFoundError, UserCodeError, ValidationError, from_wire
from runtime.limits import Limits
from runtime.protocol import codec
from runtime.protocol.deploy import CodeSpec, ComponentCode, Manifest, ValidateDocumentsArgs, WorkerConfig, parse
from runtime.protocol.loopsock import LoopSocket
from runtime.protocol.messages import Hello, Invoke, Result, Syscall, SyscallResult
from sandbox import closure, determinism, guards, loader
from sandbox.ctx import CTX_CLASSES
from sandbox.invocation import WorkerInvocation
from sandbox.readcache import ReadCache, Report

_LOG_BUFFER: contextvars.ContextVar[LogBuffer | None] = contextvars.ContextVar("bulkhead_log", default=None)


class LogBuffer:
    """Lines of one invocation, capped by the log limits; the overflow is counted, not kept."""

    def __init__(self, limits: Limits) -> None:
        self.lines: list[str] = []
        self.dropped = 0
        self._limits = limits
        self._partial = ""

    def write(self, text: str) -> None:
        self._partial += text
        *complete, self._partial = self._partial.split("\n")
        for line in complete:
            self.add(line)

    def add(self, line: str) -> None:
        if len(self.lines) >= self._limits.log_lines_count:
            self.dropped += 1
            return
        raw = line.encode("utf-8", "replace")
        if len(raw) > self._limits.log_line_bytes:
            line = raw[: self._limits.log_line_bytes].decode("utf-8", "ignore") + " [truncated]"
        self.lines.append(line)

    def flush(self) -> None:
        if self._partial:
            self.add(self._partial)
            self._partial = ""


class _RoutedStream(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of the worker: into the current invocation's buffer, else to the real stream."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        buf = _LOG_BUFFER.get()
        if buf is None:
            self._real.write(text)
            self._real.flush()
        else:
            buf.write(text)
        return len(text)


class _BufferHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        buf = _LOG_BUFFER.get()
        line = f"{record.levelname} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if buf is None:
            sys.__stderr__.write(line + "\n")  # type: ignore[union-attr]
        else:
            for part in line.split("\n"):
                buf.add(part)


def load_definition(spec: CodeSpec) -> Definition:
    """Import the mount's code (restricted) and return its App or Component."""
    module_name, attr, is_component = spec.module, spec.attr, isinstance(spec, ComponentCode)
    module = None
    if isinstance(spec, ComponentCode) and not spec.explicit:
        try:
            module = importlib.import_module(module_name + ".component")
        except ModuleNotFoundError as exc:
            if exc.name not in (module_name + ".component",):
                raise
    if module is None:
        module = importlib.import_module(module_name)
    obj = getattr(module, attr, None)
    if not isinstance(obj, Definition):
        what = "a Component" if is_component else "an App"
        raise NotFoundError(f"{module_name!r} has no attribute {attr!r} holding {what} (found {type(obj).__name__})")
    return obj


def entry_modules(spec: CodeSpec) -> list[str]:
    """The modules :func:`load_definition` imports first, for :func:`sandbox.closure.read_closure`."""
    return closure.entry_modules(spec.module, isinstance(spec, ComponentCode), getattr(spec, "explicit", True))


def build_manifest(definition: Definition) -> Manifest:
    """The definition's manifest, checked against the contract before it leaves the worker."""
    return parse(Manifest, definition.manifest(), "manifest")


class Worker:
    """The worker's loop: one socket to the coordinator, many concurrent invocations."""

    def __init__(self, config: WorkerConfig) -> None:
        self.settings = config
        self.config: dict[str, Any] = config.model_dump()
        """The same, as plain data (what :mod:`sandbox.hardening` takes)."""
        self.limits = config.make_limits()
        self.env: dict[str, str] = dict(config.env)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PAIR)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.setsockopt(zmq.MAXMSGSIZE, codec.max_frame_bytes(self.limits))
        connect_and_wait(self.sock, config.endpoint, self.limits.worker_hello_timeout_s)
        # a zero-copy send (a frame over ZERO_COPY_BYTES) starts pyzmq's garbage-collector thread: start it now, so
        # it is in the thread count the coordinator takes at the manifest (a worker that grows threads is recycled)
        zmq_garbage.gc.start()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.definition: Definition | None = None
        self.logger = logging.getLogger("bulkhead.user")
        self._loop_sock: LoopSocket | None = None
        self._send_lock = asyncio.Lock()
        self._waiting_senders = 0
        self.cache = ReadCache(self.limits.worker_cache_docs, self.limits.worker_cache_bytes)
        self.tables: dict[str, int] = {}
        """Table name -> number, from the coordinator: Ids of inserts are minted here (and checked there)."""
        """This mount's documents as of recent snapshots (see sandbox.readcache)."""

    async def send(self, frame: Any) -> None:
        """Send a frame; the loop never blocks on it (a full pipe is retried after a pause, frames kept in order)."""
        data = codec.encode_frame(frame)
        if self._loop_sock is None:
            self.sock.send(data)  # before serving (the hello): blocking is fine
            return
        if not self._waiting_senders:
            try:
                self._loop_sock.send(data)
                return
            except zmq.Again:
                pass
        self._waiting_senders += 1
        try:
            async with self._send_lock:  # FIFO: a frame never overtakes one that is waiting
                while True:
                    try:
                        self._loop_sock.send(data)
                        return
                    except zmq.Again:
                        await asyncio.sleep(0.001)
        finally:
            self._waiting_senders -= 1

    # --- the Channel used by ctx ------------------------------------------------------

    async def syscall(self, token: str, op: str, args: dict[str, Any],
                      pre: list[tuple[str, dict[str, Any]]] | None = None,
                      reads: list[Report] | None = None) -> Any:
        if op == "run":
            size = len(values.pack(args.get("args")))
            if size > self.limits.arguments_size_bytes:
                exc = LimitExceeded("arguments_size_bytes", size, self.limits.arguments_size_bytes,
                                    "arguments of a nested call")
                exc.unsent = True  # type: ignore[attr-defined]  # the invocation's buffered writes go back
                raise exc
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            await self.send(Syscall(request_id=rid, token=token, op=op, args=args, pre=pre or [], reads=reads or []))
        except (TypeError, ValueError) as exc:
            self._pending.pop(rid, None)
            err = ValidationError(f"{op}: arguments cannot be sent ({exc})")
            err.unsent = True  # type: ignore[attr-defined]
            raise err from None
        reply: SyscallResult = await fut
        if not reply.ok:
            raise from_wire(reply.error or {})
        return reply.value

    # --- serving --------------------------------------------------------------------------

    async def serve(self, layers: dict[str, str], proof: list[str]) -> None:
        """Load the code, send the Hello (with the one-time ``proof``, which is then dropped), serve."""
        try:
            self.definition = load_definition(self.settings.code)
            manifest = build_manifest(self.definition)
            await self.send(Hello(request_id=0, manifest=manifest.model_dump(), layers=layers, proof=proof.pop()))
        except BaseException as exc:
            err = exc if isinstance(exc, BulkheadError) else UserCodeError(
                f"loading {self.settings.code.module!r} failed: {type(exc).__name__}: {exc}",
                exc_type=type(exc).__name__,
                traceback="".join(traceback.format_exception(exc))[-4000:],
            )
            secret = proof.pop() if proof else None  # None: the manifest's Hello took it, and failed to send
            await self.send(Hello(request_id=0, error=err.to_wire(), layers=layers, proof=secret))
            del secret
            await asyncio.sleep(0.2)
            return
        closed = asyncio.get_running_loop().create_future()
        self._loop_sock = LoopSocket(self.sock, self._on_frame)
        await closed  # served from the socket's reader callback until the process ends

    def _on_frame(self, data: bytes) -> None:
        msg = codec.decode_frame(data, self.limits)
        if isinstance(msg, SyscallResult):
            fut = self._pending.pop(msg.request_id, None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif isinstance(msg, Invoke):
            if msg.tables is not None:
                self.tables = dict(msg.tables)
            if msg.commits or msg.lost_through:
                self.cache.changed(msg.commits, msg.lost_through)  # before this invocation's first read
            task = asyncio.create_task(self._invoke(msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _invoke(self, msg: Invoke) -> None:
        buf = LogBuffer(self.limits)
        _LOG_BUFFER.set(buf)
        ok, value, error = True, None, None
        holder: list[WorkerInvocation] = []
        try:
            value = await self._run(msg, holder)
            values.check_value(value, self.limits)
            size = len(values.pack(value))
            if size > self.limits.return_size_bytes:
                raise LimitExceeded("return_size_bytes", size, self.limits.return_size_bytes,
                                    f"return value of {msg.function!r}")
            inv = holder[0] if holder else None
            if inv is not None and inv.pending and size + inv.pending_bytes > codec.max_frame_bytes(self.limits) // 2:
                await inv.syscall("flush", {})  # the result alone fills its frame: the writes go first
        except BulkheadError as exc:
            ok, error = False, exc.to_wire()
        except Exception as exc:
            ok = False
            error = UserCodeError(
                f"{type(exc).__name__}: {exc}",
                exc_type=type(exc).__name__,
                traceback="".join(traceback.format_exception(exc))[-4000:],
            ).to_wire()
            buf.add(f"ERROR {msg.function} raised {type(exc).__name__}: {exc}")
        buf.flush()
        writes = holder[0].take_pending() if ok and holder else []  # a failed call's writes are discarded anyway
        reads = holder[0].take_reads() if holder else []  # a failed call's reads still count (its caller goes on)
        result = Result(request_id=msg.request_id, ok=ok, value=value if ok else None, error=error,
                        logs=buf.lines, dropped=buf.dropped, writes=writes, reads=reads)
        try:
            await self.send(result)
        except (TypeError, ValueError, msgpack.PackException) as exc:
            err = ValidationError(f"{msg.function!r} returned a value that cannot be sent: {exc}")
            await self.send(Result(request_id=msg.request_id, ok=False, error=err.to_wire(), logs=buf.lines,
                                   reads=reads))

    async def _run(self, msg: Invoke, holder: list[WorkerInvocation]) -> Any:
        assert self.definition is not None
        if msg.kind == "system":
            return self._system(msg)
        fn: Function | None = self.definition.functions.get(msg.function)
        if fn is None:
            raise NotFoundError(f"no function {msg.function!r} in this mount")
        args = fn.validate_args(msg.args)
        inv = WorkerInvocation(self, self.definition, msg.token, self.cache, msg.ts)
        inv.set_id_source(self.tables, msg.now, msg.seed)
        holder.append(inv)
        env = {**self.definition.env, **self.env}  # declared defaults, then what the parent passed to use()
        ctx = CTX_CLASSES[msg.kind](inv, now=msg.now, seed=msg.seed, env=env, log=self.logger)
        determinism.CURRENT.set((msg.kind, msg.now, ctx.random))  # this task's context only
        return fn.validate_return(await fn.handler(ctx, **args))

    def _system(self, msg: Invoke) -> Any:
        assert self.definition is not None
        if msg.function == "validate_documents":
            args = parse(ValidateDocumentsArgs, msg.args, "validate_documents call")
            table = self.definition.tables.get(args.table)
            if table is None:
                raise NotFoundError(f"validate_documents: this mount has no table {args.table!r}")
            issues = []
            for doc in args.docs:
                try:
                    table.validate(doc)
                except ValidationError as exc:
                    issues.append(f"{doc.get('_id')}: {exc.message}")
            return issues
        raise NotFoundError(f"unknown system function {msg.function!r}")


def connect_and_wait(sock: zmq.Socket[bytes], endpoint: str, timeout_s: float) -> None:
    """Connect without reconnection and return once the connection really exists (libzmq makes the OS socket
    in its I/O thread, later): seccomp refuses new sockets from then on (``sandbox.hardening.deny_new_sockets``).
    A worker whose connection drops is replaced by the supervisor, never reconnected.  Exits (code 71) when
    the coordinator's endpoint cannot be reached in ``timeout_s``."""
    sock.setsockopt(zmq.RECONNECT_IVL, -1)
    monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED)
    try:
        sock.connect(endpoint)
        if monitor.poll(int(timeout_s * 1000)):
            zmq_monitor.recv_monitor_message(monitor)  # EVENT_CONNECTED, the only one asked for
            return
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
    print(f"bulkhead-worker: could not connect to {endpoint} within {timeout_s} s", flush=True)
    sys.exit(71)


def _die_with_parent(parent: int | None = None) -> None:
    """Ask the kernel to SIGKILL this worker when its parent dies (even by ``kill -9``).

    The parent is the coordinator, or the zygote that forked this worker (which dies with the
    coordinator in turn); ``parent`` is its pid when known, so a parent that died already is noticed.
    """
    import ctypes
    import os
    import signal

    if parent is None:
        parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent or parent == 1:
        os._exit(0)


def main(parent: int | None = None) -> None:
    """Entry point: read the config from stdin, load the code, serve until the socket closes.

    ``python -m sandbox.worker LABEL`` calls it in a fresh interpreter; a child of the zygote
    (:mod:`sandbox.zygote`) calls it after its fork, with the zygote's pid as ``parent``.
    """
    _die_with_parent(parent)
    raw = sys.stdin.buffer.read()
    sys.stdin.close()
    try:
        config = parse(WorkerConfig, msgpack.unpackb(raw, raw=False), "worker config")
    except (BulkheadError, ValueError, msgpack.UnpackException) as exc:
        print(f"bulkhead-worker: {getattr(exc, 'message', exc)}", flush=True)
        sys.exit(2)
    del raw
    # the Hello's proof is kept in one list only, popped when the Hello is sent (best effort: the bytes
    # are not wiped, but no name refers to them once the mount's code runs; the coordinator takes one
    # Hello per socket, so the secret is spent by then anyway)
    proof = [config.hello_secret]
    config = config.model_copy(update={"hello_secret": ""})
    plain = config.model_dump()  # sandbox.hardening takes the plain form
    app_dir = config.code.app_dir
    packages = dict(config.code.packages)  # installed component packages (site-packages, editable installs)
    roots = [app_dir, str(Path(__file__).resolve().parent.parent / "components"), *packages.values()]
    # the code is read now, run later; only the entry module's import closure, never the rest of the tree
    sources = closure.read_closure(entry_modules(config.code), app_dir, roots[1], packages)
    plain["code_files"] = sorted(sources)
    loader.install(roots, [app_dir], sources, packages)
    sys.stdout = _RoutedStream(sys.__stdout__)
    sys.stderr = _RoutedStream(sys.__stderr__)
    root = logging.getLogger()
    root.handlers[:] = [_BufferHandler()]
    root.setLevel(logging.INFO)
    limits = config.make_limits()
    guards.NETWORK_DECLARED = config.network
    layers: dict[str, str] = {"process_per_mount": "on", "restricted_imports": "on"}
    if limits.sandbox_hardening:
        from sandbox import hardening

        layers.update(hardening.harden_early(plain, limits))  # single-threaded still: before zmq starts threads
        if config.uid is not None and not layers["separate_uids"].startswith("on"):
            # the coordinator accepts this worker's connection from its own uid only: say why, and stop
            print(f"bulkhead-worker: cannot run as uid {config.uid}: {layers['separate_uids']}", flush=True)
            sys.exit(70)
    worker = Worker(config)  # returns connected: no new socket is needed after this
    loop = asyncio.new_event_loop()  # its self-pipe is a socketpair: made before seccomp refuses them
    if limits.sandbox_hardening:
        layers.update(hardening.harden_late(plain))
    try:
        with asyncio.Runner(loop_factory=lambda: loop) as runner:
            runner.run(worker.serve(layers, proof))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
