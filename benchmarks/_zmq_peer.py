"""Child-process ends of the zmq limits, run as a script: ``python _zmq_peer.py ROLE ENDPOINT...``.

Started fresh with ``sys.executable`` (never forked) by ``suite_limits``; it
imports nothing but pyzmq and the standard library.  Roles:

- ``echo BIND``: a REP bound at ``BIND`` sends every request straight back
  (REQ clients, or DEALER clients that add the empty delimiter frame).
- ``relay FRONT BACK``: a ROUTER bound at ``FRONT`` for clients and a ROUTER
  bound at ``BACK`` for one worker, relayed by a plain Python poll loop (the
  shape of the coordinator's routing, minus decoding).
- ``worker CONNECT``: a DEALER (identity ``w``) connected to a relay's ``BACK``,
  says hello, then echoes every message (the client's envelope included) back.

Each role prints ``ready`` on stdout once it can serve, and exits when its
parent goes away (checked once a second while idle) or on SIGTERM.
"""

from __future__ import annotations

import os
import sys

import zmq

IDLE_MS = 1000
WORKER_ID = b"w"


def _socket(ctx: zmq.Context[zmq.Socket[bytes]], kind: int) -> zmq.Socket[bytes]:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    return sock


def _ready() -> None:
    sys.stdout.write("ready\n")
    sys.stdout.flush()


def _orphaned(parent: int) -> bool:
    return os.getppid() != parent


def echo(ctx: zmq.Context[zmq.Socket[bytes]], bind: str, parent: int) -> None:
    """Echo every request on a bound REP."""
    sock = _socket(ctx, zmq.REP)
    sock.setsockopt(zmq.RCVTIMEO, IDLE_MS)
    sock.bind(bind)
    _ready()
    recv, send = sock.recv, sock.send
    while True:
        try:
            message = recv()
        except zmq.Again:
            if _orphaned(parent):
                return
            continue
        send(message)


def worker(ctx: zmq.Context[zmq.Socket[bytes]], connect: str, parent: int) -> None:
    """Echo each message over a DEALER connected to a relay."""
    sock = _socket(ctx, zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, WORKER_ID)
    sock.setsockopt(zmq.RCVTIMEO, IDLE_MS)
    sock.connect(connect)
    sock.send(b"hello")
    _ready()
    recv, send = sock.recv_multipart, sock.send_multipart
    while True:
        try:
            frames = recv()
        except zmq.Again:
            if _orphaned(parent):
                return
            continue
        send(frames)


def relay(ctx: zmq.Context[zmq.Socket[bytes]], front_bind: str, back_bind: str, parent: int) -> None:
    """Route client requests to the one worker and its replies back, in Python."""
    front = _socket(ctx, zmq.ROUTER)
    back = _socket(ctx, zmq.ROUTER)
    back.setsockopt(zmq.ROUTER_MANDATORY, 1)
    front.bind(front_bind)
    back.bind(back_bind)
    while not back.poll(IDLE_MS):  # wait for the worker's hello
        if _orphaned(parent):
            return
    back.recv_multipart()
    _ready()
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    poller.register(back, zmq.POLLIN)
    while True:
        events = dict(poller.poll(IDLE_MS))
        if not events:
            if _orphaned(parent):
                return
            continue
        if front in events:
            back.send_multipart([WORKER_ID, *front.recv_multipart()])
        if back in events:
            front.send_multipart(back.recv_multipart()[1:])


def main(argv: list[str]) -> int:
    """Run one role until orphaned or terminated."""
    parent = os.getppid()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        role = argv[0] if argv else ""
        if role == "echo" and len(argv) == 2:
            echo(ctx, argv[1], parent)
        elif role == "worker" and len(argv) == 2:
            worker(ctx, argv[1], parent)
        elif role == "relay" and len(argv) == 3:
            relay(ctx, argv[1], argv[2], parent)
        else:
            sys.stderr.write("usage: _zmq_peer.py echo BIND | worker CONNECT | relay FRONT BACK\n")
            return 2
    except KeyboardInterrupt:
        pass
    finally:
        ctx.destroy(linger=0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
