"""Calls through a real daemon, each figure measured alternately with its baseline.

Every figure drives a real coordinator (started for the suite in a temp dir)
with real worker processes, through :class:`runtime.client.Client`.  Figures
of one kind are taken in alternating rounds after a warm-up round
(``BenchContext.interleave``), so a burst of machine noise lands on a figure
and its baseline alike.  Three groups of rounds:

Latency (µs per call, every call timed on its own):

- ``baseline.zmq_rtt_1hop``: ``limit.zmq_rtt_1hop``'s round trip (REQ → REP
  echo in a fresh child, ipc, 100 bytes) in the same rounds as the calls below;
  its ratio to ``limit.zmq_rtt_1hop`` shows how far the machine moved.
- ``query.one_doc``: a client query reading one document through an index, a
  new argument each call so the query cache never answers (three round trips:
  client → coordinator, the invoke, the worker's read).  Baseline
  ``baseline.zmq_rtt_1hop``.
- ``query.cached``: the same query with the same argument every call, so the
  coordinator's read-set-validated cache answers.  Baseline
  ``baseline.zmq_rtt_1hop``.
- ``hardening.query_one_doc``: ``query.one_doc`` against a second daemon whose
  workers run with the OS layer off (``BULKHEAD_SANDBOX_HARDENING=0``).
  Baseline ``query.one_doc``.
- ``peer.inprocess_query_one_doc``: the same read in-process, no isolation.
- ``mutation.one_doc``: read one document, patch it, durable commit.  Baseline
  ``baseline.lmdb_commit_single``: one raw durable LMDB commit of one put
  (``1 / limit.lmdb_commit_single``, timed per commit in the same rounds).
- ``call.nested3``: app query → component → its child reading one document.
  Baseline ``limit.zmq_rtt_2hop``.
- ``call.app_to_component``: an app mutation calling a component mutation that
  reads and patches one document, alternating with ``peer.ray_actor_call``
  (``ray.get(actor.bump.remote(key))`` on a local Ray, see suite ``peers``),
  its baseline.  Without Ray the peer is listed as skipped, never missing.

Throughput (one sample per round):

- ``throughput.disjoint_8`` (mutations/s): 8 client threads patching their own
  rows.  Baseline ``peer.inprocess_8``: the same transactions from 8 threads
  in-process (Transaction + Committer on the same storage engine, no isolation).
- ``throughput.conflicting_8`` (mutations/s): 8 clients patching 2 shared rows.
  Baseline ``peer.sqlite_8``: the same read-modify-writes on SQLite (WAL,
  ``synchronous=FULL``, ``BEGIN IMMEDIATE``) from 8 threads.
- ``throughput.disjoint_8.failed`` / ``throughput.conflicting_8.failed``
  (calls per round): calls that failed after every retry (target 0).

Worker start (alternating hardened / unhardened spawns):

- ``worker.cold_start`` (ms): spawn a worker, harden it, load a one-table
  component, receive its manifest.  Baseline ``worker.cold_start_unhardened``.
- ``worker.idle_rss`` (MiB): resident memory of an idle hardened worker.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness import BenchContext, timed_threads
from benchmarks.suite_limits import PAYLOAD, wait_ready
from benchmarks.suite_limits import PEER as ZMQ_PEER
from benchmarks.suite_peers import HOT_KEYS, THREADS, RayPeer, bump, sqlite_burst, sqlite_db, sqlite_sum
from runtime.client import Client
from runtime.errors import BulkheadError, ConflictError
from runtime.storage import Storage
from runtime.testing import RunningDaemon
from runtime.transactions import Committer, IndexRange, Transaction

NAME = "calls"
DESCRIPTION = "calls through a real daemon and workers: latency, nested calls, 8-client throughput, worker start"
ORDER = 30

APP = Path(__file__).parent / "apps" / "calls"
KEYS = [f"k{i}" for i in range(16)]
WARMUP = 1
"""Discarded rounds of each figure before the measured ones."""


def _daemon(ctx: BenchContext, env: dict[str, str] | None = None) -> RunningDaemon:
    d = RunningDaemon(ctx.tmpdir("bh-calls-") / "data", env).start()
    ctx.defer(d.stop)
    d.deploy(APP)
    with d.client() as c:
        c.mutation("seed", keys=KEYS)
    return d


def _clients_round(d: RunningDaemon, clients: list[Client], keys_of: Callable[[int, int], str], per_thread: int,
                   failed: list[float]) -> list[float]:
    """One round of 8 client threads calling ``bump``: [ok mutations/s]; appends the failed calls to ``failed``."""
    done, fails = [0] * THREADS, [0] * THREADS

    def run(i: int, start: threading.Barrier) -> None:
        start.wait()
        for k in range(per_thread):
            try:
                clients[i].mutation("bump", key=keys_of(i, k))
                done[i] += 1
            except BulkheadError:  # ConflictError after every retry, or a timeout
                fails[i] += 1

    elapsed = timed_threads(THREADS, run)
    failed.append(float(sum(fails)))
    return [sum(done) / elapsed]


class _InProcess:
    """The no-isolation peer: the same table in-process, Transaction + Committer on the same engine."""

    def __init__(self, ctx: BenchContext) -> None:
        self.storage = Storage.open(ctx.tmpdir("bh-calls-inproc-"))
        ctx.defer(self.storage.close)
        self.storage.define_table("", "rows", {"by_key": ["key"]})
        self.committer = Committer(self.storage).start()
        ctx.defer(self.committer.stop)
        with Transaction(self.storage, now=time.time()) as t:
            for k in KEYS:
                t.insert("", "rows", {"key": k, "value": 0})
            self.committer.commit(t.prepare())
        self.one = IndexRange.from_ops([["eq", "key", "k3"]])

    def read(self) -> None:
        """``get_one``'s indexed read of one document."""
        with Transaction(self.storage, now=time.time()) as t:
            t.scan("", "rows", "by_key", self.one, "asc", 2)

    def bump(self, key: str) -> None:
        """``bump``: read one row by index, patch it, commit (re-run on a conflict, as the daemon does)."""
        for _ in range(5):
            with Transaction(self.storage, now=time.time()) as t:
                docs, _, _ = t.scan("", "rows", "by_key", IndexRange.from_ops([["eq", "key", key]]), "asc", 2)
                t.patch("", docs[0]["_id"], {"value": docs[0]["value"] + 1})
                try:
                    self.committer.commit(t.prepare())
                    return
                except ConflictError:
                    continue

    def round(self, per_thread: int) -> list[float]:
        """One round of 8 threads on their own rows: [mutations/s]."""
        def run(i: int, start: threading.Barrier) -> None:
            start.wait()
            for _ in range(per_thread):
                self.bump(KEYS[i])

        return [THREADS * per_thread / timed_threads(THREADS, run)]


def _echo(ctx: BenchContext) -> Callable[[], None]:
    """A round trip to a fresh ``_zmq_peer.py echo`` child (limit.zmq_rtt_1hop's), ended at suite end."""
    import zmq

    endpoint = f"ipc://{ctx.tmpdir('bh-calls-zmq-')}/echo"
    proc = ctx.spawn_python([str(ZMQ_PEER), "echo", endpoint], stdout=subprocess.PIPE)
    wait_ready(proc, "echo peer")
    zctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    ctx.defer(zctx.destroy, 0)
    sock = zctx.socket(zmq.REQ)
    for opt, val in ((zmq.LINGER, 0), (zmq.RCVTIMEO, 10_000), (zmq.SNDTIMEO, 10_000)):
        sock.setsockopt(opt, val)
    sock.connect(endpoint)
    send, recv = sock.send, sock.recv

    def rtt() -> None:
        send(PAYLOAD)
        recv()

    return rtt


def _raw_commit(ctx: BenchContext) -> Callable[[], None]:
    """One raw durable LMDB commit of one put (16-byte key, 100-byte value), limit.lmdb_commit_single's."""
    import lmdb

    env = lmdb.open(str(ctx.tmpdir("bh-calls-lmdb-")), map_size=1 << 28, sync=True, metasync=True, mode=0o600)
    ctx.defer(env.close)
    seq = itertools.count()
    value = b"v" * 100

    def commit() -> None:
        with env.begin(write=True) as txn:
            txn.put(f"c-{next(seq):012d}".encode(), value)

    return commit


async def cold_start_worker(run_dir: Path, hardening: int) -> tuple[float, int, dict[str, str]]:
    """Spawn one worker for the acct component: ms until its manifest, its RSS in KiB, its isolation layers."""
    import zmq.asyncio

    from runtime.limits import Limits
    from sandbox.supervisor import WorkerHandle

    zctx = zmq.asyncio.Context()
    code = {"kind": "component", "app_dir": str(APP), "module": "acct", "attr": "component", "explicit": False}
    w = WorkerHandle("acct", code, {}, Limits.from_env(sandbox_hardening=hardening), run_dir, zctx)

    t0 = time.perf_counter()
    await w.start(lambda *_: None, lambda *_: None)  # no syscalls before the manifest
    ms = (time.perf_counter() - t0) * 1000
    await asyncio.sleep(0.05)
    rss = 0
    for line in Path(f"/proc/{w.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    layers = dict(w.layers)
    await w.stop()
    zctx.destroy(linger=0)
    return ms, rss, layers


def _latency(ctx: BenchContext, d: RunningDaemon, bare: RunningDaemon, ray: RayPeer | None, n: int,
             rounds: int) -> None:
    inproc = _InProcess(ctx)
    rtt, commit = _echo(ctx), _raw_commit(ctx)
    nonce = itertools.count()
    with d.client() as c, bare.client() as cb:
        pair = {"call.app_to_component": lambda: ctx.time_calls(lambda: c.mutation("bump_in_component", key="k7"),
                                                                  n // 2)}
        if ray is not None:
            try:
                info = ray.ready()
            except (OSError, RuntimeError, TimeoutError) as exc:  # a broken peer is a visible skip, not a failure
                ctx.skip("peer.ray_actor_call", f"the Ray peer did not start: {exc}")
                ray.close()
                ray = None
            else:
                pair["peer.ray_actor_call"] = lambda: ray.round(n // 2) if ray else []
        got = ctx.interleave(pair, rounds)
        if ray is not None:
            ray.close()  # before the other rounds: Ray's idle processes would load the machine
            ctx.record("peer.ray_actor_call", "us", got["peer.ray_actor_call"],
                       note=f"Ray {info['ray']} local instance on 127.0.0.1 (2 CPUs, 80 MiB object store), "
                            f"ray.get(actor.bump.remote(key)), rounds alternating with call.app_to_component; "
                            f"ray.init + actor start took {info['init_s']:.1f} s")
        ctx.record("call.app_to_component", "us", got["call.app_to_component"], baseline="peer.ray_actor_call",
                   note="app mutation -> component mutation (read + patch one document), durable commit")

        hits0 = _cache_hits(d)
        got = ctx.interleave({
            "baseline.zmq_rtt_1hop": lambda: ctx.time_calls(rtt, n),
            "query.one_doc": lambda: ctx.time_calls(lambda: c.query("get_one", key="k3", nonce=next(nonce)), n),
            "query.cached": lambda: ctx.time_calls(lambda: c.query("get_one", key="k3", nonce=-1), n),
            "hardening.query_one_doc":
                lambda: ctx.time_calls(lambda: cb.query("get_one", key="k3", nonce=next(nonce)), n),
            "peer.inprocess_query_one_doc": lambda: ctx.time_calls(inproc.read, n),
            "baseline.lmdb_commit_single": lambda: ctx.time_calls(commit, n // 2),
            "mutation.one_doc": lambda: ctx.time_calls(lambda: c.mutation("bump", key="k5"), n // 2),
            "call.nested3": lambda: ctx.time_calls(lambda: c.query("nested3", key="k"), n // 2),
        }, rounds)
        hits = _cache_hits(d) - hits0
    ctx.record("baseline.zmq_rtt_1hop", "us", got["baseline.zmq_rtt_1hop"], baseline="limit.zmq_rtt_1hop",
               note="limit.zmq_rtt_1hop's echo round trip, taken in the same rounds as the calls it is the "
                    "baseline of")
    ctx.record("query.one_doc", "us", got["query.one_doc"], baseline="baseline.zmq_rtt_1hop",
               note="one document by index, a new argument each call (never cached)")
    ctx.record("query.cached", "us", got["query.cached"], baseline="baseline.zmq_rtt_1hop",
               note=f"the same argument every call: the query cache answers ({hits} cache hits in these rounds)")
    ctx.record("hardening.query_one_doc", "us", got["hardening.query_one_doc"], baseline="query.one_doc",
               note="query.one_doc against a daemon with the OS layer off, in the same rounds")
    ctx.record("peer.inprocess_query_one_doc", "us", got["peer.inprocess_query_one_doc"], baseline="query.one_doc",
               note="the same indexed read in-process, no isolation")
    ctx.record("baseline.lmdb_commit_single", "us", got["baseline.lmdb_commit_single"],
               note="one raw durable LMDB commit of one put (1 / limit.lmdb_commit_single, per commit), "
                    "in the same rounds as mutation.one_doc")
    ctx.record("mutation.one_doc", "us", got["mutation.one_doc"], baseline="baseline.lmdb_commit_single",
               note="read + patch one document + durable commit")
    ctx.record("call.nested3", "us", got["call.nested3"], baseline="limit.zmq_rtt_2hop",
               note="app -> component -> its child (reads one document)")


def _cache_hits(d: RunningDaemon) -> int:
    """The daemon's query-cache hits so far (0 if its status does not say)."""
    stats = d.status()
    cache = stats.get("query_cache") or stats.get("stats", {}).get("query_cache") or {}
    return int(cache.get("hits", 0)) if isinstance(cache, dict) else 0


def _throughput(ctx: BenchContext, d: RunningDaemon, per_thread: int, rounds: int) -> None:
    inproc = _InProcess(ctx)
    sqlite = sqlite_db(ctx, "bump", {k: 0 for k in HOT_KEYS})
    clients = [d.client() for _ in range(THREADS)]
    for client in clients:
        ctx.defer(client.close)
    failed: dict[str, list[float]] = {"disjoint": [], "conflicting": []}
    retries0 = d.status()["stats"]["conflict_retries"]
    got = ctx.interleave({
        "peer.inprocess_8": lambda: inproc.round(per_thread),
        "throughput.disjoint_8": lambda: _clients_round(d, clients, lambda i, k: KEYS[i], per_thread,
                                                        failed["disjoint"]),
        "peer.sqlite_8": lambda: [sqlite_burst(sqlite, per_thread, bump)],
        "throughput.conflicting_8": lambda: _clients_round(d, clients, lambda i, k: KEYS[(i + k) % 2], per_thread,
                                                           failed["conflicting"]),
    }, rounds, warmup=WARMUP)
    retries = d.status()["stats"]["conflict_retries"] - retries0
    if (total := sqlite_sum(sqlite)) != THREADS * per_thread * (rounds + WARMUP):
        raise AssertionError(f"peer.sqlite_8: counted {total}, expected {THREADS * per_thread * (rounds + WARMUP)}")
    fails = {k: v[WARMUP:] for k, v in failed.items()}
    ctx.record("peer.inprocess_8", "mutations/s", got["peer.inprocess_8"], better="higher",
               note="8 threads, disjoint rows, in-process Transaction + Committer, no isolation")
    ctx.record("throughput.disjoint_8", "mutations/s", got["throughput.disjoint_8"], better="higher",
               baseline="peer.inprocess_8", note=f"8 clients on their own rows, {per_thread} calls each per round")
    ctx.record("throughput.disjoint_8.failed", "calls", fails["disjoint"],
               note="calls of throughput.disjoint_8 that failed (target 0), per round")
    ctx.record("peer.sqlite_8", "mutations/s", got["peer.sqlite_8"], better="higher",
               note=f"in-process SQLite {sqlite3.sqlite_version}, WAL, synchronous=FULL, BEGIN IMMEDIATE; "
                    f"{THREADS} threads x {per_thread} read-modify-writes of 2 hot rows per round")
    ctx.record("throughput.conflicting_8", "mutations/s", got["throughput.conflicting_8"], better="higher",
               baseline="peer.sqlite_8",
               note=f"8 clients on 2 rows: {retries} conflict re-runs in all rounds (disjoint's included), "
                    f"{sum(fails['conflicting']):.0f} calls failed")
    ctx.record("throughput.conflicting_8.failed", "calls", fails["conflicting"],
               note="calls of throughput.conflicting_8 that failed (target 0), per round")


def _cold_starts(ctx: BenchContext, rounds: int) -> None:
    run_dir = ctx.tmpdir("bh-w-")
    rss: list[float] = []

    def start(hardening: int) -> list[float]:
        ms, kib, _layers = asyncio.run(cold_start_worker(run_dir, hardening))
        if hardening:
            rss.append(kib / 1024)
        return [ms]

    got = ctx.interleave({"worker.cold_start_unhardened": lambda: start(0), "worker.cold_start": lambda: start(1)},
                         rounds)
    ctx.record("worker.cold_start_unhardened", "ms", got["worker.cold_start_unhardened"])
    ctx.record("worker.cold_start", "ms", got["worker.cold_start"], baseline="worker.cold_start_unhardened",
               note="fresh interpreter, OS layer, load a one-table component, manifest received")
    ctx.record("worker.idle_rss", "MiB", rss[1:], note="resident memory of an idle hardened worker")


def run(ctx: BenchContext) -> None:
    """Record every figure of the module docstring."""
    n = ctx.pick(200, 40)
    rounds = ctx.repeats(8, 4)
    ray = RayPeer.start(ctx)  # Ray takes seconds to start: start the daemons meanwhile
    d = _daemon(ctx)
    bare = _daemon(ctx, {"BULKHEAD_SANDBOX_HARDENING": "0"})
    _latency(ctx, d, bare, ray, n, rounds)
    bare.stop()
    _throughput(ctx, d, ctx.pick(100, 10), rounds)
    d.stop()
    _cold_starts(ctx, ctx.repeats(8, 3))  # each round spawns two workers: ~0.5 s each under load
