"""The client door: the ZeroMQ ROUTER socket that clients, the CLI and tools talk to.

Each frame is decoded and validated (``runtime.protocol.codec``) and becomes
a task: a call (through the kernel), a subscribe or unsubscribe (through the
subscriptions port it is handed), or an admin operation.  Every failure is an
error reply naming what was wrong; a malformed envelope is dropped.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import zmq

from runtime.coordinator.doors.admin import AdminOps
from runtime.coordinator.kernel.core import Kernel
from runtime.errors import ProtocolError, ValidationError, error_of
from runtime.limits import Limits
from runtime.protocol import codec
from runtime.protocol.loopsock import LoopSocket
from runtime.protocol.messages import Admin, Call, Result, Subscribe, Transition


class Subscriber(Protocol):
    """What the client door needs of the subscriptions service."""

    def touch(self, ident: bytes) -> None: ...
    def has_subscriptions(self, ident: bytes) -> bool: ...
    async def reflect(self, ident: bytes, ts: int) -> None: ...
    def subscribe(self, ident: bytes, sub_id: int, function: str, args: dict[str, Any], admin: bool) -> None: ...
    def unsubscribe(self, ident: bytes, sub_id: int) -> None: ...


class ClientDoor:
    """Serves one bound ROUTER socket on the event loop."""

    def __init__(self, kernel: Kernel, admin: AdminOps, subscriptions: Subscriber, sock: zmq.Socket[bytes],
                 limits: Limits) -> None:
        self.kernel = kernel
        self.admin = admin
        self.subscriptions = subscriptions
        self.sock = sock
        self.limits = limits
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: LoopSocket | None = None

    @staticmethod
    def configure(sock: zmq.Socket[bytes], limits: Limits) -> None:
        """The socket options the door relies on (set before binding)."""
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, codec.max_frame_bytes(limits))
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a full or vanished peer is an error, not a silent drop

    def open(self) -> None:
        """Start serving frames."""
        self._loop = LoopSocket(self.sock, self._on_frames, multipart=True)

    def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._loop is not None:
            self._loop.close()

    def _on_frames(self, frames: list[bytes]) -> None:
        """Each client frame becomes a task (calls wait for workers); malformed envelopes are dropped."""
        if len(frames) != 2:
            return
        ident, data = frames
        task = asyncio.create_task(self._handle(ident, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send_now(self, ident: bytes, data: bytes) -> str:
        """``"ok"``, ``"full"`` (the client's queue is at its high-water mark) or ``"gone"`` (no such peer)."""
        assert self._loop is not None
        try:
            self._loop.send_multipart([ident, data])
        except zmq.Again:
            return "full"
        except zmq.ZMQError:
            return "gone"
        return "ok"

    def _send(self, ident: bytes, result: Result) -> None:
        try:
            data = codec.encode_frame(result)
        except (TypeError, ValueError) as exc:
            err = ValidationError(f"the result cannot be sent: {exc}")
            data = codec.encode_frame(Result(request_id=result.request_id, ok=False, error=err.to_wire()))
        self._send_now(ident, data)

    async def push(self, ident: bytes, frame: Transition) -> str:
        """Send a transition to a subscribing client: ``"ok"``, ``"full"`` or ``"gone"`` (see :meth:`_send_now`)."""
        try:
            data = codec.encode_frame(frame)
        except (TypeError, ValueError):
            return "gone"
        return self._send_now(ident, data)

    async def _handle(self, ident: bytes, data: bytes) -> None:
        request_id = 0
        admin = False
        function: str | None = None
        try:
            msg = codec.decode_frame(data, self.limits, untrusted=True)
            request_id = msg.request_id
            admin = self.admin.is_admin(getattr(msg, "auth", None))
            function = getattr(msg, "function", None)
            subs = self.subscriptions
            subs.touch(ident)
            if isinstance(msg, Call):
                value, ts = await self.kernel.client_call(msg.function, msg.args, msg.kind,
                                                          self.admin.is_admin(msg.auth), msg.session, msg.request_id)
                if ts is not None and msg.kind != "query" and subs.has_subscriptions(ident):
                    await subs.reflect(ident, ts)  # read your writes: its subscriptions show this commit first
                self._send(ident, Result(request_id=request_id, ok=True, value=value, commit_ts=ts))
            elif isinstance(msg, Subscribe):
                if msg.function is None:
                    subs.unsubscribe(ident, msg.sub)
                else:
                    subs.subscribe(ident, msg.sub, msg.function, msg.args, self.admin.is_admin(msg.auth))
                self._send(ident, Result(request_id=request_id, ok=True, value={"sub": msg.sub}))
            elif isinstance(msg, Admin):
                value = await self.admin.run(msg.op, msg.args, msg.auth)
                self._send(ident, Result(request_id=request_id, ok=True, value=value))
            else:
                raise ProtocolError(f"clients send 'call' or 'admin' frames, not {msg.type.value!r}")
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            err = error_of(exc)
            wire = err.to_wire()
            trace = err.fields.get("traceback")
            if function is not None and not isinstance(exc, ProtocolError):
                # every failed call is in `bulkhead logs`, with the server-side traceback where there is one
                self.kernel.logs.add("", function, f"ERROR call failed ({type(err).__name__}): {err.message}"
                                     + (f"\n{trace}" if trace else ""), f"client-{request_id}")
            if trace is not None and not admin:  # only the admin key sees server paths and source lines
                wire["fields"] = {k: v for k, v in wire["fields"].items() if k != "traceback"}
            self._send(ident, Result(request_id=request_id, ok=False, error=wire))
