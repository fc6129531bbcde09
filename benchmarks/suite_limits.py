"""Physical limits of this machine, measured in the same run as everything else.

Every other suite names one of these as its ``baseline``, so its ratio says how
far the runtime is from what the hardware and libraries allow:

- ``limit.inprocess_call``: a plain Python call with a dict argument — no isolation.
- ``limit.zmq_rtt_1hop``: pyzmq ipc REQ -> REP round trip to an echo in a fresh child process.
- ``limit.zmq_rtt_2hop``: client → Python relay process → echo worker process → back.
- ``limit.lmdb_commit_single``: raw LMDB, one small put per durable write transaction.
- ``limit.lmdb_commit_grouped``: raw LMDB, 100 puts of 100 bytes per durable commit.

Also recorded, as DESIGN.md quotes them: ``limit.inprocess_await``,
``limit.msgpack_roundtrip``, ``limit.zmq_pipelined_64`` and ``limit.lmdb_get``;
and, to show how much of ``zmq_rtt_1hop`` is scheduler placement,
``limit.zmq_rtt_1hop_samecpu`` / ``_crosscpu`` (both ends pinned to one / two vCPUs).
Children are started fresh with ``sys.executable`` and ended by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import select
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import lmdb
import msgpack  # type: ignore[import-untyped]
import zmq

from benchmarks.harness import BenchContext, raw_lmdb_grouped, stop_process

NAME = "limits"
DESCRIPTION = "physical limits: in-process call, zmq ipc round trips, raw LMDB commits"
ORDER = 0

__all__ = ["NAME", "DESCRIPTION", "ORDER", "run", "raw_lmdb_grouped", "lmdb_items", "wait_ready", "PEER",
           "PAYLOAD"]

PEER = Path(__file__).with_name("_zmq_peer.py")
PAYLOAD = b"x" * 100
VALUE_BYTES = 100
GROUP = 100
REPLY_TIMEOUT_MS = 5000
READY_TIMEOUT_S = 30.0
ARGS = {"name": "p1", "count": 1, "shards": 16}


def run(ctx: BenchContext) -> None:
    """Record every ``limit.*`` figure."""
    _inprocess(ctx)
    _zmq(ctx)
    _lmdb(ctx)


# --- in-process ---------------------------------------------------------------

def _handler(args: dict[str, object]) -> dict[str, object]:
    return args


async def _ahandler(args: dict[str, object]) -> dict[str, object]:
    return args


async def _await_loop(repeats: int, inner: int) -> list[float]:
    args = dict(ARGS)
    out: list[float] = []
    for _ in range(repeats + 1):  # the first pass warms up
        t0 = time.perf_counter()
        for _ in range(inner):
            await _ahandler(args)
        out.append((time.perf_counter() - t0) / inner * 1e6)
    return out[1:]


def _inprocess(ctx: BenchContext) -> None:
    reps, inner = ctx.repeats(30, 10), ctx.pick(200_000, 50_000)
    ctx.record("limit.inprocess_call", "us",
               ctx.time_samples("f(d)", reps, inner, globals={"f": _handler, "d": dict(ARGS)}),
               note="sync Python call f(dict), timeit loop included")
    ctx.record("limit.inprocess_await", "us", asyncio.run(_await_loop(reps, inner)),
               baseline="limit.inprocess_call", note="`await f(dict)` of an async def inside a coroutine")
    message = {"fn": "likes:add", "args": ARGS, "session": "s" * 16, "request": 123456}
    ctx.record("limit.msgpack_roundtrip", "us",
               ctx.time_samples("unpackb(packb(m))", reps, inner // 10,
                                globals={"packb": msgpack.packb, "unpackb": msgpack.unpackb, "m": message}),
               note="msgpack packb + unpackb of a ~90-byte request dict")


# --- zmq ----------------------------------------------------------------------

def wait_ready(proc: subprocess.Popen[bytes], what: str) -> None:
    """Block until ``proc`` (a ``_zmq_peer.py`` role) prints ``ready``; fail if it exits or takes too long."""
    assert proc.stdout is not None
    fd, buf = proc.stdout.fileno(), b""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while b"ready\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{what} (pid {proc.pid}) not ready after {READY_TIMEOUT_S:.0f} s")
        readable, _, _ = select.select([fd], [], [], left)
        if readable:
            chunk = os.read(fd, 256)
            if not chunk:
                raise RuntimeError(f"{what} (pid {proc.pid}) exited with {proc.wait(5)} before ready")
            buf += chunk


def _peer(ctx: BenchContext, *args: str) -> subprocess.Popen[bytes]:
    return ctx.spawn_python([str(PEER), *args], stdout=subprocess.PIPE)


def _round_trip(sock: zmq.Socket[bytes]) -> Callable[[], None]:
    send, recv = sock.send, sock.recv

    def rtt() -> None:
        send(PAYLOAD)
        recv()

    return rtt


def _zmq(ctx: BenchContext) -> None:
    tmp = ctx.tmpdir("bh-zmq-")
    zctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    ctx.defer(zctx.destroy, 0)
    n, reps = ctx.pick(10_000, 800), ctx.repeats()

    def client(kind: int, endpoint: str) -> zmq.Socket[bytes]:
        sock = zctx.socket(kind)
        socks.append(sock)
        for opt, val in ((zmq.LINGER, 0), (zmq.RCVTIMEO, REPLY_TIMEOUT_MS), (zmq.SNDTIMEO, REPLY_TIMEOUT_MS)):
            sock.setsockopt(opt, val)
        sock.connect(endpoint)
        return sock

    socks: list[zmq.Socket[bytes]] = []
    echo = _peer(ctx, "echo", f"ipc://{tmp}/echo")
    try:
        wait_ready(echo, "echo peer")
        req = client(zmq.REQ, f"ipc://{tmp}/echo")
        ctx.record("limit.zmq_rtt_1hop", "us", _timed_rtt(ctx, req, n, reps, echo),
                   note="REQ -> REP echo in a fresh child process, ipc, 100-byte payload")
        _pinned_rtts(ctx, req, n // 2, reps, echo)
        dealer = client(zmq.DEALER, f"ipc://{tmp}/echo")
        ctx.record("limit.zmq_pipelined_64", "ops/s", _pipelined(ctx, dealer, ctx.pick(500, 100), reps),
                   better="higher", note="round trips/s, DEALER keeping 64 requests in flight to the same echo")
    finally:
        _close(socks)
        stop_process(echo)

    relay = _peer(ctx, "relay", f"ipc://{tmp}/front", f"ipc://{tmp}/back")
    worker = _peer(ctx, "worker", f"ipc://{tmp}/back")
    try:
        wait_ready(worker, "echo worker")
        wait_ready(relay, "relay")
        req = client(zmq.REQ, f"ipc://{tmp}/front")
        ctx.record("limit.zmq_rtt_2hop", "us", _timed_rtt(ctx, req, n, reps, relay),
                   baseline="limit.zmq_rtt_1hop",
                   note="REQ -> ROUTER relay process (Python poll loop) -> DEALER echo worker process -> back")
    finally:
        _close(socks)
        stop_process(worker)
        stop_process(relay)


def _pinned_rtts(ctx: BenchContext, sock: zmq.Socket[bytes], n: int, reps: int,
                 peer: subprocess.Popen[bytes]) -> None:
    """The 1-hop round trip with every thread of both ends on one vCPU, then on two."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return
    for suffix, child_cpu, where in (("samecpu", cpus[0], "on one vCPU"),
                                     ("crosscpu", cpus[1], "on two different vCPUs")):
        with _pinned(os.getpid(), cpus[0]), _pinned(peer.pid, child_cpu):
            ctx.record(f"limit.zmq_rtt_1hop_{suffix}", "us", _timed_rtt(ctx, sock, n, reps, peer),
                       baseline="limit.zmq_rtt_1hop",
                       note=f"as zmq_rtt_1hop, all threads of both processes pinned {where}")


@contextlib.contextmanager
def _pinned(pid: int, cpu: int) -> Iterator[None]:
    """Pin every thread of ``pid`` (zmq I/O threads included) to ``cpu``; restore afterwards."""
    saved: dict[int, set[int]] = {}
    try:
        for tid in (int(t) for t in os.listdir(f"/proc/{pid}/task")):
            saved[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, {cpu})
        yield
    finally:
        for tid, cpus in saved.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)


def _close(socks: list[zmq.Socket[bytes]]) -> None:
    while socks:
        socks.pop().close(0)


def _timed_rtt(ctx: BenchContext, sock: zmq.Socket[bytes], n: int, reps: int,
               peer: subprocess.Popen[bytes]) -> list[float]:
    try:
        return ctx.measure_latency(_round_trip(sock), n, reps)
    except zmq.Again:
        raise RuntimeError(f"no reply within {REPLY_TIMEOUT_MS} ms (peer pid {peer.pid}, "
                           f"exit code {peer.poll()})") from None


def _pipelined(ctx: BenchContext, sock: zmq.Socket[bytes], bursts: int, reps: int) -> list[float]:
    send, recv = sock.send_multipart, sock.recv_multipart
    request = [b"", PAYLOAD]  # the empty delimiter a REP expects from a DEALER

    def batch() -> int:
        for _ in range(bursts):
            for _ in range(64):
                send(request)
            for _ in range(64):
                recv()
        return bursts * 64

    return ctx.measure_throughput(batch, repeats=reps)


# --- LMDB ---------------------------------------------------------------------

def lmdb_items(prefix: str, count: int, value_bytes: int = VALUE_BYTES,
               seed: int = 0) -> list[tuple[bytes, bytes]]:
    """``count`` (key, value) pairs: ascending keys ``prefix-00000001``, random values."""
    rng = random.Random(f"{prefix}/{seed}")
    return [(f"{prefix}-{i:08d}".encode(), rng.randbytes(value_bytes)) for i in range(count)]


def _lmdb(ctx: BenchContext) -> None:
    reps = ctx.repeats()
    base = ctx.tmpdir("bh-lmdb-")
    single, grouped = base / "single", base / "grouped"
    commits = ctx.pick(1_000, 100)
    raw_lmdb_grouped(single, lmdb_items("warm", 50), 1)
    ctx.record("limit.lmdb_commit_single", "commits/s",
               [raw_lmdb_grouped(single, lmdb_items(f"s{r}", commits), 1) for r in range(reps)],
               better="higher", note="raw LMDB, 1 put (16 B key, 100 B value) per durable write txn")

    puts = ctx.pick(200, 20) * GROUP
    raw_lmdb_grouped(grouped, lmdb_items("warm", GROUP * 5), GROUP)
    ctx.record("limit.lmdb_commit_grouped", "puts/s",
               [raw_lmdb_grouped(grouped, lmdb_items(f"g{r}", puts), GROUP) for r in range(reps)],
               better="higher", note=f"raw LMDB, {GROUP} puts of {VALUE_BYTES} B per durable write txn")

    env = lmdb.open(os.fspath(grouped), map_size=1 << 30, readonly=True, lock=True)
    try:
        keys = [k for k, _ in lmdb_items("g0", puts)]
        random.Random(1).shuffle(keys)
        with env.begin(buffers=False) as txn:
            ctx.record("limit.lmdb_get", "us",
                       ctx.time_samples("get(next(keys))", ctx.repeats(30, 10), ctx.pick(100_000, 20_000),
                                        globals={"get": txn.get, "next": next,
                                                 "keys": itertools.cycle(keys)}),
                       note=f"raw LMDB get of a random key among {puts + GROUP * 5} in an open read txn")
    finally:
        env.close()
