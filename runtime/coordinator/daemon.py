"""The coordinator daemon: one process, one asyncio loop, no user code.

Owns the data directory (LMDB, 0700/0600), the committer thread, the client
ROUTER socket (tcp on 127.0.0.1 by default) and the workers.  On start it
takes an exclusive lock on ``DATA/daemon.lock`` (one daemon per data dir),
re-deploys the last deployed app, then writes ``DATA/daemon.json`` (mode 0600:
pid, endpoints, admin key) — the file's appearance means "serving".
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import hmac
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from runtime.errors import BulkheadError, IsolationError, ProtocolError, StorageError, ValidationError
from runtime.limits import Limits
from runtime.protocol import codec
from runtime.protocol.loopsock import LoopSocket
from runtime.protocol.messages import Admin, Call, Result, Subscribe, Transition
from runtime.storage import Storage
from runtime.transactions import Committer
from runtime.coordinator.engine import Engine
from runtime.coordinator.workers import error_of

DAEMON_FILE = "daemon.json"
LOCK_FILE = "daemon.lock"
DEFAULT_LISTEN = "tcp://127.0.0.1:0"


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by the owner only, atomically (temp file + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class Daemon:
    """Run with :meth:`serve`; stops on SIGTERM/SIGINT or the admin ``stop`` op."""

    def __init__(self, data_dir: str | os.PathLike[str], listen: str = DEFAULT_LISTEN,
                 limits: Limits | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.listen = listen
        self.limits = limits or Limits.from_env()
        self.admin_key = secrets.token_urlsafe(32)
        self.started = time.time()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    def _lock(self) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageError(f"another daemon is running on {self.data_dir} (it holds {LOCK_FILE})") from None

    async def serve(self) -> None:
        self._lock()
        (self.data_dir / DAEMON_FILE).unlink(missing_ok=True)
        self.storage = Storage.open(self.data_dir / "db", self.limits)
        self.committer = Committer(self.storage, self.limits).start()
        self.run_dir = Path(tempfile.mkdtemp(prefix="bh-"))  # short path: ipc paths are limited to 107 bytes
        os.chmod(self.run_dir, 0o700)
        self.zctx = zmq.asyncio.Context()
        self.engine = Engine(self.storage, self.committer, self.limits, self.run_dir, self.zctx)
        self.engine.subscriptions.send = self._push
        self.engine.subscriptions.start()
        self.client = zmq.Context.shadow(self.zctx.underlying).socket(zmq.ROUTER)
        self.client.setsockopt(zmq.LINGER, 0)
        self.client.setsockopt(zmq.MAXMSGSIZE, codec.max_frame_bytes(self.limits))
        self.client.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.client.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a full or vanished peer is an error, not a silent drop
        self.endpoint = self._bind(self.client, self.listen)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self.http = await self.engine.files.serve()
        swept = self.engine.files.sweep()
        if swept:
            self.engine.logs.add("", None, f"files: removed {swept} blob(s) no file named (a crash before their commit)")
        try:
            deployment = self.storage.meta_get("deployment")
            if deployment is not None:
                try:
                    await self.engine.deploy(deployment["app"])
                except BulkheadError as exc:
                    self.engine.logs.add("", None, f"re-deploy of the last app failed: {exc.message}")
                    print(f"bulkhead: re-deploy of the last app failed: {exc.message}", file=sys.stderr, flush=True)
            gc.collect()
            gc.freeze()
            write_private_json(self.data_dir / DAEMON_FILE, {
                "pid": os.getpid(), "client": self.endpoint, "admin_key": self.admin_key,
                "data_dir": str(self.data_dir), "started": self.started, "protocol": 1,
                "max_frame_bytes": codec.max_frame_bytes(self.limits), "http": self.engine.files.base_url,
            })
            print(f"bulkhead: serving {self.data_dir} on {self.endpoint} (pid {os.getpid()})", file=sys.stderr, flush=True)
            self.client_loop = LoopSocket(self.client, self._on_client_frames, multipart=True)
            await self._stop.wait()
        finally:
            await self._close()

    def _bind(self, sock: zmq.Socket[bytes], listen: str) -> str:
        if listen.startswith("tcp://") and listen.endswith(":0"):
            host = listen[len("tcp://"):-2]
            port = sock.bind_to_random_port(f"tcp://{host}")
            return f"tcp://{host}:{port}"
        sock.bind(listen)
        return str(sock.getsockopt_string(zmq.LAST_ENDPOINT))

    async def _close(self) -> None:
        (self.data_dir / DAEMON_FILE).unlink(missing_ok=True)
        for t in list(self._tasks):
            t.cancel()
        await self.engine.shutdown()
        if getattr(self, "http", None) is not None:
            await self.http.cleanup()
        if getattr(self, "client_loop", None) is not None:
            self.client_loop.close()
        self.client.close(linger=0)
        self.committer.stop()
        self.storage.close()
        self.zctx.destroy(linger=0)  # never blocks on a socket someone forgot
        shutil.rmtree(self.run_dir, ignore_errors=True)
        os.close(self._lock_fd)

    # --- the client socket ------------------------------------------------------------------

    def _on_client_frames(self, frames: list[bytes]) -> None:
        """Each client frame becomes a task (calls wait for workers); malformed envelopes are dropped."""
        if len(frames) != 2:
            return
        ident, data = frames
        task = asyncio.create_task(self._handle(ident, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send_now(self, ident: bytes, data: bytes) -> str:
        """``"ok"``, ``"full"`` (the client's queue is at its high-water mark) or ``"gone"`` (no such peer)."""
        try:
            self.client_loop.send_multipart([ident, data])
        except zmq.Again:
            return "full"
        except zmq.ZMQError:
            return "gone"
        return "ok"

    async def _send(self, ident: bytes, result: Result) -> None:
        try:
            data = codec.encode_frame(result)
        except (TypeError, ValueError) as exc:
            err = ValidationError(f"the result cannot be sent: {exc}")
            data = codec.encode_frame(Result(request_id=result.request_id, ok=False, error=err.to_wire()))
        self._send_now(ident, data)

    async def _push(self, ident: bytes, frame: Transition) -> str:
        """Send a transition to a subscribing client: ``"ok"``, ``"full"`` or ``"gone"`` (see :meth:`_send_now`)."""
        try:
            data = codec.encode_frame(frame)
        except (TypeError, ValueError):
            return "gone"
        return self._send_now(ident, data)

    def _is_admin(self, auth: str | None) -> bool:
        return auth is not None and hmac.compare_digest(auth.encode(), self.admin_key.encode())

    async def _handle(self, ident: bytes, data: bytes) -> None:
        request_id = 0
        try:
            msg = codec.decode_frame(data, self.limits)
            request_id = msg.request_id
            subs = self.engine.subscriptions
            subs.touch(ident)
            if isinstance(msg, Call):
                value, ts = await self.engine.client_call(msg.function, msg.args, msg.kind, self._is_admin(msg.auth),
                                                          msg.session, msg.request_id)
                if ts is not None and msg.kind != "query" and subs.has_subscriptions(ident):
                    await subs.reflect(ident, ts)  # read your writes: its subscriptions show this commit first
                await self._send(ident, Result(request_id=request_id, ok=True, value=value, commit_ts=ts))
            elif isinstance(msg, Subscribe):
                if msg.function is None:
                    subs.unsubscribe(ident, msg.sub)
                else:
                    subs.subscribe(ident, msg.sub, msg.function, msg.args, self._is_admin(msg.auth))
                await self._send(ident, Result(request_id=request_id, ok=True, value={"sub": msg.sub}))
            elif isinstance(msg, Admin):
                value = await self._admin(msg)
                await self._send(ident, Result(request_id=request_id, ok=True, value=value))
            else:
                raise ProtocolError(f"clients send 'call' or 'admin' frames, not {msg.type.value!r}")
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure becomes an error reply
            await self._send(ident, Result(request_id=request_id, ok=False, error=error_of(exc).to_wire()))

    async def _admin(self, msg: Admin) -> Any:
        if msg.op == "ping":
            return {"pid": os.getpid()}
        if not self._is_admin(msg.auth):
            raise IsolationError(f"admin operation {msg.op!r} needs the admin key (from {DAEMON_FILE})")
        if msg.op == "status":
            return self.status()
        if msg.op == "deploy":
            return await self.engine.deploy(dict(msg.args["app"]))
        if msg.op == "data":
            return self.engine.data(msg.args.get("mount"), msg.args.get("table"), int(msg.args.get("limit", 100)))
        if msg.op == "logs":
            entries = self.engine.logs.since(int(msg.args.get("after", 0)), int(msg.args.get("limit", 1000)))
            return {"entries": entries}
        if msg.op == "clock":
            if "advance" in msg.args:
                return {"now": self.engine.clock.advance(msg.args["advance"])}
            return {"now": self.engine.clock.now(), "controllable": self.engine.clock.controllable}
        if msg.op == "stop":
            asyncio.get_running_loop().call_later(0.05, self._stop.set)
            return {"stopping": True}
        raise ProtocolError(f"unknown admin op {msg.op!r}")

    def isolation_summary(self) -> dict[str, str]:
        """Each layer: "on" if every worker has it, else what the weakest worker reported."""
        dep = self.engine.deployment
        names = ["process_per_mount", "restricted_imports", "rlimits", "namespaces", "no_new_privs", "not_dumpable",
                 "landlock", "seccomp", "separate_uids"]
        out = {n: "off: nothing deployed" for n in names}
        if dep is None or not dep.mounts:
            return out
        for n in names:
            states = [m.worker.layers.get(n, "off: not applied") for m in dep.mounts.values()]
            off = [s for s in states if not s.startswith("on")]
            out[n] = off[0] if off else "on"
        uids = [m.worker.layers.get("separate_uids", "") for m in dep.mounts.values()]
        if out["separate_uids"] == "on" and len(set(uids)) != len(uids):
            out["separate_uids"] = "off: two mounts share a uid"
        return out

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(), "data_dir": str(self.data_dir), "client": self.endpoint,
            "uptime_s": round(time.time() - self.started, 3), "last_commit_ts": self.committer.last_ts,
            "stats": dict(self.engine.stats, commit_rounds=self.committer.rounds, conflicts=self.committer.conflicts),
            "scheduler": self.engine.scheduler.status(),
            "subscriptions": self.engine.subscriptions.status(),
            "query_cache": dict(self.engine.cache.stats),
            "files": dict(self.engine.files.stats, http=self.engine.files.base_url),
            "isolation": self.isolation_summary(),
            "deployment": self.engine.describe(),
        }


def main(argv: list[str] | None = None) -> None:
    """``python -m runtime.coordinator --data DIR [--listen URL]``: serve in the foreground."""
    import argparse

    parser = argparse.ArgumentParser(prog="bulkhead-coordinator")
    parser.add_argument("--data", default=".bulkhead")
    parser.add_argument("--listen", default=DEFAULT_LISTEN)
    args = parser.parse_args(argv)
    import faulthandler

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID` dumps every thread's stack
    try:
        asyncio.run(Daemon(args.data, args.listen).serve())
    except BulkheadError as exc:
        print(f"bulkhead: {exc.message}", file=sys.stderr)
        sys.exit(1)
