"""A plain (blocking-API) ZeroMQ socket driven by an asyncio loop's reader callback.

``zmq.asyncio`` turns every ``recv`` into a future, a poller event and a task
wake-up; measured on this machine that roughly doubles a round trip (an echo
ROUTER: ≈ 57 µs with a blocking loop, ≈ 125 µs with ``zmq.asyncio``, ≈ 66 µs
with this).  Small frames are copied (see :data:`ZERO_COPY_BYTES`).  Here the socket's file descriptor is watched with
``loop.add_reader``; the callback drains every waiting message with
``NOBLOCK`` and hands each to ``on_message`` synchronously.  Sends are
``NOBLOCK`` too (a full pipe raises ``zmq.Again`` instead of blocking the loop).

ZeroMQ's descriptor is edge-triggered and a send may consume the edge of a
message that arrived meanwhile, so after every send the socket's ``EVENTS`` are
checked and a drain is scheduled if a message is waiting.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import Callable
from typing import Any

import zmq

from runtime.limits import ZERO_COPY_BYTES


class LoopSocket:
    """Receive through ``on_message(msg)`` (bytes, or a list of frames when ``multipart``); send without blocking."""

    def __init__(self, sock: zmq.Socket[bytes], on_message: Callable[[Any], None], multipart: bool = False,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.sock = sock
        self.on_message = on_message
        self.multipart = multipart
        self.loop = loop or asyncio.get_running_loop()
        self.closed = False
        self._scheduled = False
        self._fd = int(sock.getsockopt(zmq.FD))
        self.loop.add_reader(self._fd, self._drain)
        self.loop.call_soon(self._drain)  # anything that arrived before the reader was set

    def _drain(self) -> None:
        self._scheduled = False
        sock = self.sock
        recv = sock.recv_multipart if self.multipart else sock.recv
        while not self.closed:
            try:
                if not int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:  # cheaper than the zmq.Again a recv would raise
                    return
                msg = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:
                self.close()
                return
            try:
                self.on_message(msg)
            except Exception:
                traceback.print_exc(file=sys.stderr)

    def _check(self) -> None:
        if self._scheduled or self.closed:
            return
        try:
            ready = int(self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN
        except zmq.ZMQError:
            return
        if ready:
            self._scheduled = True
            self.loop.call_soon(self._drain)

    def send(self, data: bytes) -> None:
        """Send one frame now; ``zmq.Again`` if the pipe is full, ``zmq.ZMQError`` if the socket is gone."""
        try:
            self.sock.send(data, zmq.NOBLOCK, copy=len(data) < ZERO_COPY_BYTES)
        finally:
            self._check()

    def send_multipart(self, frames: list[bytes]) -> None:
        try:
            self.sock.send_multipart(frames, zmq.NOBLOCK, copy=sum(map(len, frames)) < ZERO_COPY_BYTES)
        finally:
            self._check()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.loop.remove_reader(self._fd)
        except (ValueError, OSError, RuntimeError):
            pass
        self.sock.close(linger=0)
