"""Clients of a Bulkhead daemon: :class:`Client` (blocking) and :class:`AsyncClient`.

::

    with Client.connect(data_dir=".bulkhead") as c:    # or url="tcp://127.0.0.1:PORT"
        c.mutation("add", topic="a", text="hi")
        c.query("about", topic="a")

Discovery reads ``DATA_DIR/daemon.json`` (written by the daemon, mode 0600).
``admin=True`` also takes the admin key from there: it may call internal
functions and any mount's functions (``"mount/path:name"``).  Errors come back
as the typed exceptions of :mod:`runtime.errors`; a ``ComponentError`` keeps
its ``data``.  Every client has a session id, and each mutation a request id:
re-sending the same ``(session, request_id)`` never applies it twice.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from runtime.errors import BulkheadError, LimitExceeded, NotFoundError, ProtocolError, from_wire
from runtime.limits import DEFAULT as DEFAULT_LIMITS
from runtime.limits import FRAME_OVERHEAD_BYTES
from runtime.protocol import codec
from runtime.protocol.deploy import FunctionKind
from runtime.protocol.messages import Admin, Call, Result, Subscribe, Transition

DEFAULT_TIMEOUT_S = 120.0
KEEPALIVE_S = 10.0
"""A subscribing client pings this often, so the daemon knows it is still there."""
PID_CHECK_S = 0.5
"""While waiting for the daemon, a client connected by data directory checks this often that its pid lives."""


class DaemonNotRunning(NotFoundError):
    """No daemon serves the given data directory."""


def _start_hint(data_dir: str | Path) -> str:
    return f"start one with `bulkhead daemon start --data {data_dir}` (or `bulkhead dev APP --data {data_dir}`)"


def discover(data_dir: str | Path = ".bulkhead") -> dict[str, Any]:
    """Read ``daemon.json`` of a data directory (as it is: :func:`find_daemon` also checks it is alive)."""
    path = Path(data_dir) / "daemon.json"
    try:
        info: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise DaemonNotRunning(f"no daemon is running on {_named(data_dir)} (no {path}); "
                               f"{_start_hint(data_dir)}") from None
    except (OSError, ValueError) as exc:
        raise DaemonNotRunning(f"cannot read {path}: {exc}") from None
    if not isinstance(info, dict):
        raise DaemonNotRunning(f"cannot read {path}: not a JSON object")
    return info


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (another user's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return not os.path.isdir("/proc/self")  # no /proc: trust kill(0)
    except OSError:
        return True


def _listening(url: str, timeout_s: float = 1.0) -> bool | None:
    """Whether something accepts connections on a ``tcp://`` or ``ipc://`` endpoint (None: cannot tell)."""
    try:
        if url.startswith("tcp://"):
            host, _, port = url[len("tcp://"):].rpartition(":")
            host = host.strip("[]")
            if host in ("*", "0.0.0.0", ""):
                host = "127.0.0.1"
            elif host == "::":
                host = "::1"
            with socket.create_connection((host, int(port)), timeout=timeout_s):
                return True
        if url.startswith("ipc://") and not url.startswith("ipc://@"):
            path = url[len("ipc://"):]
            if not os.path.exists(path):
                return False
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout_s)
                s.connect(path)
                return True
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except (OSError, ValueError):
        return None
    return None


def find_daemon(data_dir: str | Path = ".bulkhead") -> dict[str, Any]:
    """``daemon.json`` of a data directory whose daemon is alive, else :class:`DaemonNotRunning` at once.

    The file's pid is checked (gone, or a zombie) and so is its endpoint (nothing
    listening): a daemon that was killed leaves a ``daemon.json`` behind, which is
    removed here (only if it is still the file that was read) and the error says
    so, names the data directory and how to start a daemon.  A pid that does not
    exist while the endpoint answers (a daemon in another pid namespace) counts as
    alive.  The returned dict has ``"_pid_visible"``: whether that pid is seen here.
    """
    info = discover(data_dir)
    path = Path(data_dir) / "daemon.json"
    pid = info.get("pid")
    url = info.get("client")
    if not isinstance(pid, int) or not isinstance(url, str):
        raise DaemonNotRunning(f"{path} names no pid or client endpoint; {_start_hint(data_dir)}")
    alive = pid_alive(pid)
    listening = _listening(url)
    if listening is False:
        why = (f"its process (pid {pid}) is gone" if not alive
               else f"pid {pid} runs but is not the daemon: nothing listens on {url}")
        removed = _remove_stale(path, info)
        raise DaemonNotRunning(f"no daemon is running on {_named(data_dir)}: {why}"
                               f"{' (its stale daemon.json was removed)' if removed else ''}; "
                               f"{_start_hint(data_dir)}")
    return {**info, "_pid_visible": alive}


def _named(data_dir: str | Path) -> str:
    """A data directory as the user wrote it, and where that is if it was relative."""
    absolute = str(Path(data_dir).resolve())
    return str(data_dir) if absolute == str(data_dir) else f"{data_dir} ({absolute})"


def _remove_stale(path: Path, info: dict[str, Any]) -> bool:
    """Unlink ``path`` if it still holds ``info`` (a daemon started meanwhile wrote a new one: kept)."""
    try:
        if json.loads(path.read_text()) != info:
            return False
        path.unlink()
    except (OSError, ValueError):
        return False
    return True


def _endpoint(data_dir: str | Path | None, url: str | None, admin_key: str | None,
              admin: bool) -> tuple[str, str | None, int | None, int | None]:
    cap = None
    pid = None
    if url is None:
        info = find_daemon(data_dir or ".bulkhead")
        url = info["client"]
        if info.get("_pid_visible"):
            pid = int(info["pid"])
    elif admin and admin_key is None:
        info = discover(data_dir or ".bulkhead")
    else:
        info = {}
    if info:
        cap = info.get("max_frame_bytes")
        if admin and admin_key is None:
            admin_key = info.get("admin_key")
    assert url is not None
    return url, admin_key, cap, pid


def _encode(frame: Any, cap: int) -> bytes:
    """Encode a frame, refusing one the daemon would drop (its socket disconnects oversized peers)."""
    data = codec.encode_frame(frame)
    if len(data) > cap:
        raise LimitExceeded("arguments_size_bytes", len(data), cap - FRAME_OVERHEAD_BYTES, "encoded call")
    codec.check_fields(data)  # e.g. a too-long function name fails here, not as a reply with no request id
    return data


def _unwrap(result: Result) -> Any:
    if not result.ok:
        raise from_wire(result.error or {})
    return result.value


class Subscription:
    """One subscribed query of a :class:`Client`: iterate it for the current value, then each change.

    ``value`` is the latest value (``ts`` its commit timestamp); iteration
    raises the query's error if a run failed (iterate again to go on).
    :meth:`on_change` calls a function on a background thread instead.
    """

    def __init__(self, client: Client, sub_id: int, function: str, args: dict[str, Any]) -> None:
        self.client = client
        self.id = sub_id
        self.function = function
        self.args = args
        self.value: Any = None
        self.ts: int | None = None
        self.closed = False
        self._queue: collections.deque[tuple[bool, Any]] = collections.deque()
        self._thread: threading.Thread | None = None

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return self.next()

    def next(self, timeout: float | None = None) -> Any:
        """The next value (the first call: the current one); TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._queue:
                ok, value = self._queue.popleft()
                if not ok:
                    raise from_wire(value or {})
                return value
            if self.closed:
                raise StopIteration
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"no new value of {self.function!r} within {timeout} s")
            self.client._pump(0.05)

    def on_change(self, callback: Callable[[Any], None], on_error: Callable[[BaseException], None] | None = None
                  ) -> Subscription:
        """Call ``callback(value)`` with the current value and each change, on a background thread."""
        def run() -> None:
            while not self.closed and not self.client._closed:
                try:
                    value = self.next(timeout=0.2)
                except TimeoutError:
                    continue
                except StopIteration:
                    return
                except BulkheadError as exc:
                    if on_error is not None:
                        on_error(exc)
                    if isinstance(exc, DaemonNotRunning):
                        return
                    continue
                callback(value)

        self._thread = threading.Thread(target=run, name=f"bulkhead-sub-{self.id}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop this subscription (the daemon forgets it)."""
        if self.closed:
            return
        self.closed = True
        self.client._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    """A blocking client; safe to share between threads (one request at a time on its socket)."""

    def __init__(self, url: str, admin_key: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 max_frame_bytes: int | None = None, keepalive_s: float = KEEPALIVE_S,
                 daemon_pid: int | None = None) -> None:
        self.url = url
        self.admin_key = admin_key
        self.timeout = timeout
        self.daemon_pid = daemon_pid
        """The daemon's pid (known when connected by data directory): a wait for a reply ends as soon as it is gone."""
        self.keepalive_s = keepalive_s
        """While subscribed, a background thread pings the daemon this often (also when nobody iterates)."""
        self.max_frame_bytes = max_frame_bytes or codec.max_frame_bytes(DEFAULT_LIMITS)
        self.session = secrets.token_urlsafe(12)
        self._ids = itertools.count(1)
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(url)
        self._lock = threading.Lock()
        self.last_commit_ts: int | None = None
        self._subs: dict[int, Subscription] = {}
        self._sub_ids = itertools.count(1)
        self._state_lock = threading.Lock()
        self.subscription_ts: int | None = None
        """Commit timestamp that every subscription of this client reflects."""
        self._last_sent = time.monotonic()
        self._last_check = time.monotonic()
        self._closed = False
        self._pinger: threading.Thread | None = None

    @classmethod
    def connect(cls, data_dir: str | Path | None = ".bulkhead", *, url: str | None = None,
                admin_key: str | None = None, admin: bool = False, timeout: float = DEFAULT_TIMEOUT_S) -> Client:
        """Connect by data directory (``daemon.json``) or by ``url``; ``admin=True`` uses the admin key.

        By data directory, a daemon that is not running (its pid gone, nothing
        listening on its endpoint) raises :class:`DaemonNotRunning` here, at
        once, and a call whose daemon dies while it waits raises it too.
        """
        url, key, cap, pid = _endpoint(data_dir, url, admin_key, admin)
        return cls(url, key, timeout, cap, daemon_pid=pid)

    def _check_daemon(self) -> None:
        """Raise :class:`DaemonNotRunning` if the daemon this client was connected to (by data dir) is gone."""
        if self.daemon_pid is not None and not pid_alive(self.daemon_pid):
            raise DaemonNotRunning(f"the daemon (pid {self.daemon_pid}) serving {self.url} is gone")

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        for sub in self._subs.values():
            sub.closed = True
        with self._lock:
            self._sock.close(linger=0)

    def _roundtrip(self, frame: Any, timeout: float | None) -> Result:
        data = _encode(frame, self.max_frame_bytes)
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self._lock:
            self._sock.send(data)
            self._last_sent = time.monotonic()
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no reply from {self.url} within {limit} s (is the daemon running?)")
                if not self._sock.poll(int(min(left, PID_CHECK_S) * 1000) + 1):
                    self._check_daemon()
                    continue
                reply = codec.decode_frame(self._sock.recv())
                if isinstance(reply, Transition):
                    self._apply(reply)
                    continue
                if not isinstance(reply, Result):
                    raise ProtocolError(f"unexpected {reply.type.value!r} frame from the daemon")
                if reply.request_id == frame.request_id:
                    return reply
                # a late reply to an earlier, timed-out request: drop it

    # --- subscriptions ---------------------------------------------------------------------------

    def subscribe(self, function: str, **args: Any) -> Subscription:
        """Subscribe to a query: iterate the result for its current value, then each change.

        All subscriptions of one client move together to one commit timestamp
        (:meth:`snapshot` reads them at once), and a mutation of this client
        returns only after its subscriptions reflect it.
        """
        sub = Subscription(self, next(self._sub_ids), function, args)
        with self._state_lock:
            self._subs[sub.id] = sub
        try:
            _unwrap(self._roundtrip(Subscribe(request_id=next(self._ids), sub=sub.id, function=function, args=args,
                                              auth=self.admin_key), None))
        except BaseException:
            with self._state_lock:
                self._subs.pop(sub.id, None)
            raise
        if self._pinger is None:
            self._pinger = threading.Thread(target=self._keepalive, name="bulkhead-keepalive", daemon=True)
            self._pinger.start()
        return sub

    def _keepalive(self) -> None:
        """Ping while subscribed, so a client that is not iterating right now is not taken for gone."""
        while not self._closed:
            time.sleep(min(1.0, self.keepalive_s / 2))
            if self._closed or not self._subs or time.monotonic() - self._last_sent < self.keepalive_s:
                continue
            if self._lock.acquire(timeout=0.1):  # busy means a call or a pump is talking to the daemon anyway
                try:
                    if not self._closed:
                        self._sock.send(codec.encode_frame(Admin(request_id=next(self._ids), op="ping")))
                        self._last_sent = time.monotonic()
                except zmq.ZMQError:
                    return
                finally:
                    self._lock.release()

    def snapshot(self) -> tuple[int | None, dict[int, Any]]:
        """``(ts, {subscription id: value})`` of every subscription, all at one commit timestamp."""
        with self._state_lock:
            return self.subscription_ts, {i: s.value for i, s in self._subs.items()}

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._state_lock:
            self._subs.pop(sub.id, None)
        if not self._closed:
            try:
                self._roundtrip(Subscribe(request_id=next(self._ids), sub=sub.id, auth=self.admin_key), 10.0)
            except (TimeoutError, zmq.ZMQError):
                pass

    def _apply(self, t: Transition) -> None:
        with self._state_lock:
            for u in t.updates:
                sub = self._subs.get(u.sub)
                if sub is None:
                    continue
                if u.ok:
                    sub.value = u.value
                sub._queue.append((u.ok, u.value if u.ok else u.error))
            for sub in list(self._subs.values()):
                sub.ts = t.ts
            self.subscription_ts = t.ts

    def _pump(self, wait_s: float) -> None:
        """Read what the daemon pushed (for at most ``wait_s``); ping it now and then while subscribed."""
        with self._lock:
            if self._closed:
                return
            if self._subs and time.monotonic() - self._last_sent > self.keepalive_s:
                self._sock.send(codec.encode_frame(Admin(request_id=next(self._ids), op="ping")))
                self._last_sent = time.monotonic()
            if not self._sock.poll(int(wait_s * 1000)):
                if time.monotonic() - self._last_check > PID_CHECK_S:
                    self._last_check = time.monotonic()
                    self._check_daemon()
                return
            while self._sock.poll(0):
                reply = codec.decode_frame(self._sock.recv())
                if isinstance(reply, Transition):
                    self._apply(reply)
                # results of pings and late replies are dropped

    def call(self, function: str, args: dict[str, Any] | None = None, kind: FunctionKind | None = None, *,
             request_id: int | None = None, timeout: float | None = None) -> Any:
        """Call a function by name; ``request_id`` lets a caller re-send a mutation idempotently."""
        rid = next(self._ids) if request_id is None else request_id
        frame = Call(request_id=rid, function=function, args=args or {}, kind=kind, session=self.session,
                     auth=self.admin_key)
        result = self._roundtrip(frame, timeout)
        if result.commit_ts is not None:
            self.last_commit_ts = result.commit_ts
        return _unwrap(result)

    def query(self, function: str, **args: Any) -> Any:
        """Run a query."""
        return self.call(function, args, "query")

    def mutation(self, function: str, **args: Any) -> Any:
        """Run a mutation (idempotent per request: a re-send never applies twice)."""
        return self.call(function, args, "mutation")

    def action(self, function: str, **args: Any) -> Any:
        """Run an action."""
        return self.call(function, args, "action")

    def admin(self, op: str, timeout: float | None = None, **args: Any) -> Any:
        """An admin operation (``status``, ``deploy``, ``data``, ``logs``, ``env``, ``stop``, ``ping``)."""
        frame = Admin(request_id=next(self._ids), op=op, args=args, auth=self.admin_key)  # type: ignore[arg-type]
        return _unwrap(self._roundtrip(frame, timeout))


class AsyncClient:
    """An asyncio client: many calls in flight on one socket, matched by request id."""

    def __init__(self, url: str, admin_key: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 max_frame_bytes: int | None = None) -> None:
        self.url = url
        self.admin_key = admin_key
        self.timeout = timeout
        self.max_frame_bytes = max_frame_bytes or codec.max_frame_bytes(DEFAULT_LIMITS)
        self.session = secrets.token_urlsafe(12)
        self._ids = itertools.count(1)
        self._ctx = zmq.asyncio.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(url)
        self._pending: dict[int, asyncio.Future[Result]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._subs: dict[int, asyncio.Queue[tuple[bool, Any]]] = {}
        self._sub_ids = itertools.count(1)
        self._keepalive: asyncio.Task[None] | None = None
        self.subscription_ts: int | None = None

    @classmethod
    async def connect(cls, data_dir: str | Path | None = ".bulkhead", *, url: str | None = None,
                      admin_key: str | None = None, admin: bool = False,
                      timeout: float = DEFAULT_TIMEOUT_S) -> AsyncClient:
        """Connect by data directory or ``url`` (a daemon that is not running raises :class:`DaemonNotRunning`)."""
        url, key, cap, _ = _endpoint(data_dir, url, admin_key, admin)
        return cls(url, key, timeout, cap)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for task in (self._reader, self._keepalive):
            if task is not None:
                task.cancel()
        self._sock.close(linger=0)

    async def _read(self) -> None:
        while True:
            reply = codec.decode_frame(await self._sock.recv())
            if isinstance(reply, Transition):
                for u in reply.updates:
                    queue = self._subs.get(u.sub)
                    if queue is not None:
                        queue.put_nowait((u.ok, u.value if u.ok else u.error))
                self.subscription_ts = reply.ts
                continue
            fut = self._pending.pop(reply.request_id, None)
            if fut is not None and not fut.done():
                fut.set_result(reply)

    async def _ping(self) -> None:
        while self._subs:
            await asyncio.sleep(KEEPALIVE_S)
            try:
                await self.admin("ping")
            except (TimeoutError, BulkheadError):
                pass
        self._keepalive = None

    async def subscribe(self, function: str, **args: Any) -> Any:
        """Subscribe to a query: ``async for value in await client.subscribe(...)`` (current value, then changes)."""
        sub_id = next(self._sub_ids)
        queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue()
        self._subs[sub_id] = queue
        try:
            _unwrap(await self._roundtrip(Subscribe(request_id=next(self._ids), sub=sub_id, function=function,
                                                    args=args, auth=self.admin_key)))
        except BaseException:
            self._subs.pop(sub_id, None)
            raise
        if self._keepalive is None:
            self._keepalive = asyncio.create_task(self._ping())
        return self._iterate(sub_id, queue)

    async def _iterate(self, sub_id: int, queue: asyncio.Queue[tuple[bool, Any]]) -> Any:
        try:
            while True:
                ok, value = await queue.get()
                if not ok:
                    raise from_wire(value or {})
                yield value
        finally:
            self._subs.pop(sub_id, None)
            try:
                await self._roundtrip(Subscribe(request_id=next(self._ids), sub=sub_id, auth=self.admin_key))
            except (TimeoutError, BulkheadError, zmq.ZMQError, RuntimeError):
                pass

    async def _roundtrip(self, frame: Any) -> Result:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read())
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending[frame.request_id] = fut
        try:
            await self._sock.send(_encode(frame, self.max_frame_bytes))
            return await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            raise TimeoutError(f"no reply from {self.url} within {self.timeout} s") from None
        finally:
            self._pending.pop(frame.request_id, None)

    async def call(self, function: str, args: dict[str, Any] | None = None, kind: FunctionKind | None = None, *,
                   request_id: int | None = None) -> Any:
        rid = next(self._ids) if request_id is None else request_id
        frame = Call(request_id=rid, function=function, args=args or {}, kind=kind, session=self.session,
                     auth=self.admin_key)
        return _unwrap(await self._roundtrip(frame))

    async def query(self, function: str, **args: Any) -> Any:
        return await self.call(function, args, "query")

    async def mutation(self, function: str, **args: Any) -> Any:
        return await self.call(function, args, "mutation")

    async def action(self, function: str, **args: Any) -> Any:
        return await self.call(function, args, "action")

    async def admin(self, op: str, **args: Any) -> Any:
        frame = Admin(request_id=next(self._ids), op=op, args=args, auth=self.admin_key)  # type: ignore[arg-type]
        return _unwrap(await self._roundtrip(frame))


__all__ = ["AsyncClient", "BulkheadError", "Client", "DaemonNotRunning", "Subscription", "discover", "find_daemon",
           "pid_alive"]
