"""The coordinator daemon: one process, one asyncio loop, no user code; this module only wires.

Owns the data directory (LMDB, 0700/0600), the committer thread, the client
ROUTER socket (tcp on 127.0.0.1 by default), the HTTP API (``--http``, 127.0.0.1
by default; ``api`` in ``daemon.json``) and the workers.  On start it
takes an exclusive lock on ``DATA/daemon.lock`` (one daemon per data dir),
re-deploys the last deployed app, then writes ``DATA/daemon.json`` (mode 0600:
pid, endpoints, admin key) — the file's appearance means "serving".
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
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

from runtime.coordinator.doors.admin import AdminOps
from runtime.coordinator.doors.clients import ClientDoor
from runtime.coordinator.doors.http import DEFAULT_HTTP_LISTEN, HttpDoor, parse_listen
from runtime.coordinator.kernel.core import Kernel
from runtime.coordinator.services.files.http import FilesEndpoint
from runtime.coordinator.services.files.store import FileStore
from runtime.coordinator.services.query_cache import QueryCache
from runtime.coordinator.services.scheduler.jobs import JobScheduler
from runtime.coordinator.services.subscriptions import Subscriptions
from runtime.errors import BulkheadError, StorageError
from runtime.limits import Limits
from runtime.protocol import codec
from runtime.storage import Storage
from runtime.transactions import Committer

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
                 limits: Limits | None = None, http_listen: str = DEFAULT_HTTP_LISTEN) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.listen = listen
        self.http_listen = http_listen
        parse_listen(http_listen)  # a bad --http is refused before anything is opened
        self.limits = limits or Limits.from_env()
        self.admin_key = secrets.token_urlsafe(32)
        self.started = time.time()
        self._stop = asyncio.Event()

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
        kernel = self.kernel = Kernel(self.storage, self.committer, self.limits, self.run_dir, self.zctx)
        # services: each registers its syscalls and hooks (order: subscriptions and the cache see a deploy first)
        subscriptions = Subscriptions(kernel)
        subscriptions.install()
        QueryCache(kernel).install()
        JobScheduler(kernel).install()
        files = FileStore(kernel, self.storage.path.parent / "files")
        files.install()
        missing = kernel.router.missing()
        if missing:
            raise BulkheadError(f"no service answers the syscall(s) {', '.join(missing)}: "
                                "check the wiring in daemon.py")
        # doors
        sock: zmq.Socket[bytes] = zmq.Context.shadow(self.zctx.underlying).socket(zmq.ROUTER)
        ClientDoor.configure(sock, self.limits)
        self.endpoint = self._bind(sock, self.listen)
        admin = self.admin = AdminOps(kernel, self.admin_key, self.data_dir, lambda: self.endpoint, self._stop.set,
                                      DAEMON_FILE, self.started)
        self.door = ClientDoor(kernel, admin, subscriptions, sock, self.limits)
        self.http_door = HttpDoor(kernel, admin, subscriptions, self.limits, self.http_listen)
        subscriptions.send = self.http_door.sender(self.door.push)
        subscriptions.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self.http = await FilesEndpoint(kernel, files).serve()
        swept = files.sweep()
        if swept:
            kernel.logs.add("", None, f"files: removed {swept} blob(s) no file named (a crash before their commit)")
        try:
            deployment = self.storage.meta_get("deployment")
            if deployment is not None:
                try:
                    await kernel.deploy(deployment["app"])
                except BulkheadError as exc:
                    kernel.logs.add("", None, f"re-deploy of the last app failed: {exc.message}")
                    print(f"bulkhead: re-deploy of the last app failed: {exc.message}", file=sys.stderr, flush=True)
            api = await self.http_door.serve()  # after the re-deploy, as the client socket opens after it
            self.admin.api = api
            gc.collect()
            gc.freeze()
            write_private_json(self.data_dir / DAEMON_FILE, {
                "pid": os.getpid(), "client": self.endpoint, "admin_key": self.admin_key,
                "data_dir": str(self.data_dir), "started": self.started, "protocol": 1,
                "max_frame_bytes": codec.max_frame_bytes(self.limits), "http": files.base_url,
                "api": api,
            })
            print(f"bulkhead: serving {self.data_dir} on {self.endpoint} (pid {os.getpid()})",
                  file=sys.stderr, flush=True)
            self.door.open()
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
        self.door.close()
        if getattr(self, "http_door", None) is not None:
            await self.http_door.close()
        await self.kernel.shutdown()
        if getattr(self, "http", None) is not None:
            await self.http.cleanup()
        self.door.sock.close(linger=0)
        self.committer.stop()
        self.storage.close()
        self.zctx.destroy(linger=0)  # never blocks on a socket someone forgot
        shutil.rmtree(self.run_dir, ignore_errors=True)
        os.close(self._lock_fd)


def main(argv: list[str] | None = None) -> None:
    """``python -m runtime.coordinator --data DIR [--listen URL]``: serve in the foreground."""
    import argparse

    parser = argparse.ArgumentParser(prog="bulkhead-coordinator")
    parser.add_argument("--data", default=".bulkhead")
    parser.add_argument("--listen", default=DEFAULT_LISTEN)
    parser.add_argument("--http", default=DEFAULT_HTTP_LISTEN, help="HOST:PORT of the HTTP API (port 0: a free one)")
    args = parser.parse_args(argv)
    import faulthandler

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID` dumps every thread's stack
    try:
        asyncio.run(Daemon(args.data, args.listen, http_listen=args.http).serve())
    except BulkheadError as exc:
        print(f"bulkhead: {exc.message}", file=sys.stderr)
        sys.exit(1)
