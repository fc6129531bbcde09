"""Calls through a real daemon: what process isolation costs per call, beside its limits.

Every figure drives a real coordinator (started for the suite in a temp dir)
with real worker processes, through :class:`runtime.client.Client`:

- ``query.one_doc`` (µs): a client query reading one document through an
  index (a new argument each call, so the query cache never answers it).
  Baseline ``limit.zmq_rtt_1hop`` (suite ``limits``, same run).  Each
  such call is three round trips: client → coordinator, coordinator → worker
  (invoke), worker → coordinator (the read).
- ``peer.inprocess_query_one_doc`` (µs): the same read done in-process with no
  isolation (a Transaction on the same kind of storage): what the isolation
  and the wire add is the difference.
- ``mutation.one_doc`` (µs): read one document, patch it, commit (fsync).
  Baseline ``limit.zmq_rtt_1hop``.
- ``call.app_to_component`` (µs): an app mutation calling a component mutation
  that reads and patches one document.  Baseline ``limit.zmq_rtt_2hop``.
- ``call.nested3`` (µs): app query → component → its child, which reads one
  document.  Baseline ``limit.zmq_rtt_2hop``.
- ``throughput.disjoint_8`` / ``throughput.conflicting_8`` (mutations/s): 8
  client threads patching their own rows / 2 shared rows.  Baseline
  ``peer.inprocess_8``: the same transactions run in-process from 8 threads
  against the same storage engine and committer, no isolation.
- ``worker.cold_start`` (ms): spawn a worker, harden it, load a one-table
  component, receive its manifest.  Baseline ``worker.cold_start_unhardened``.
- ``worker.idle_rss`` (MiB): resident memory of an idle worker.
- ``hardening.query_one_doc`` (µs): ``query.one_doc`` with the OS layer off
  (``BULKHEAD_SANDBOX_HARDENING=0``); the ratio of ``query.one_doc`` to it is
  the per-call cost of the layer.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import BenchContext
from runtime.errors import ConflictError
from runtime.storage import Storage
from runtime.testing import RunningDaemon
from runtime.transactions import Committer, IndexRange, Transaction

NAME = "calls"
DESCRIPTION = "calls through a real daemon and workers: latency, nested calls, 8-client throughput, worker start"
ORDER = 30

APP = Path(__file__).parent / "apps" / "calls"
KEYS = [f"k{i}" for i in range(16)]


def _daemon(ctx: BenchContext, env: dict[str, str] | None = None) -> RunningDaemon:
    d = RunningDaemon(ctx.tmpdir("bh-calls-") / "data", env).start()
    ctx.defer(d.stop)
    d.deploy(APP)
    with d.client() as c:
        c.mutation("seed", keys=KEYS)
    return d


def _throughput(d: RunningDaemon, keys_of: Any, per_thread: int) -> tuple[float, int]:
    done = [0] * 8
    failed = [0] * 8

    def run(i: int) -> None:
        with d.client() as c:
            for k in range(per_thread):
                try:
                    c.mutation("bump", key=keys_of(i, k))
                    done[i] += 1
                except ConflictError:
                    failed[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - t0), sum(failed)


def _inprocess(ctx: BenchContext, per_thread: int, reps: int) -> list[float]:
    storage = Storage.open(ctx.tmpdir("bh-calls-inproc-"))
    ctx.defer(storage.close)
    storage.define_table("", "rows", {"by_key": ["key"]})
    committer = Committer(storage).start()
    ctx.defer(committer.stop)
    with Transaction(storage, now=time.time()) as t:
        for k in KEYS:
            t.insert("", "rows", {"key": k, "value": 0})
        committer.commit(t.prepare())
    rng = IndexRange.from_ops

    def bump(key: str) -> None:
        for _ in range(5):
            with Transaction(storage, now=time.time()) as t:
                docs, _, _ = t.scan("", "rows", "by_key", rng([["eq", "key", key]]), "asc", 2)
                t.patch("", docs[0]["_id"], {"value": docs[0]["value"] + 1})
                try:
                    committer.commit(t.prepare())
                    return
                except ConflictError:
                    continue

    out = []
    for _ in range(reps):
        threads = [threading.Thread(target=lambda i=i: [bump(KEYS[i]) for _ in range(per_thread)]) for i in range(8)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out.append(8 * per_thread / (time.perf_counter() - t0))
    return out


def _inprocess_read(ctx: BenchContext, n: int) -> list[float]:
    storage = Storage.open(ctx.tmpdir("bh-calls-read-"))
    ctx.defer(storage.close)
    storage.define_table("", "rows", {"by_key": ["key"]})
    with Committer(storage) as committer, Transaction(storage, now=time.time()) as t:
        for k in KEYS:
            t.insert("", "rows", {"key": k, "value": 0})
        committer.commit(t.prepare())
    rng = IndexRange.from_ops([["eq", "key", "k3"]])

    def read() -> None:
        with Transaction(storage, now=time.time()) as t:
            t.scan("", "rows", "by_key", rng, "asc", 2)

    return ctx.measure_latency(read, n)


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


def run(ctx: BenchContext) -> None:
    n = ctx.pick(1000, 150)
    reps = ctx.repeats(5, 3)
    per_thread = ctx.pick(100, 20)

    d = _daemon(ctx)
    with d.client() as c:
        nonce = itertools.count()
        ctx.record("query.one_doc", "us",
                   ctx.measure_latency(lambda: c.query("get_one", key="k3", nonce=next(nonce)), n, reps),
                   baseline="limit.zmq_rtt_1hop")
        ctx.record("peer.inprocess_query_one_doc", "us", _inprocess_read(ctx, n), baseline="query.one_doc",
                   note="the same indexed read in-process, no isolation")
        ctx.record("mutation.one_doc", "us", ctx.measure_latency(lambda: c.mutation("bump", key="k5"), n // 2, reps),
                   baseline="limit.zmq_rtt_1hop", note="includes the fsync of its commit")
        ctx.record("call.app_to_component", "us",
                   ctx.measure_latency(lambda: c.mutation("bump_in_component", key="k7"), n // 2, reps),
                   baseline="limit.zmq_rtt_2hop")
        ctx.record("call.nested3", "us", ctx.measure_latency(lambda: c.query("nested3", key="k"), n // 2, reps),
                   baseline="limit.zmq_rtt_2hop", note="app -> component -> its child (reads one document)")

    ctx.record("peer.inprocess_8", "mutations/s", _inprocess(ctx, per_thread, reps), better="higher",
               note="8 threads, disjoint rows, in-process Transaction + Committer, no isolation")
    retries_before = d.status()["stats"]["conflict_retries"]
    samples, failed = [], 0
    for _ in range(reps):
        rate, f = _throughput(d, lambda i, k: KEYS[i], per_thread)
        samples.append(rate)
        failed += f
    ctx.record("throughput.disjoint_8", "mutations/s", samples, better="higher", baseline="peer.inprocess_8")
    samples, fails = [], []
    for _ in range(reps):
        rate, f = _throughput(d, lambda i, k: KEYS[(i + k) % 2], per_thread)
        samples.append(rate)
        fails.append(float(f))
    retries = d.status()["stats"]["conflict_retries"] - retries_before
    ctx.record("throughput.conflicting_8", "mutations/s", samples, better="higher", baseline="peer.inprocess_8",
               note=f"8 clients on 2 rows: {retries} conflict re-runs (the retry lane), {sum(fails):.0f} calls failed")
    ctx.record("throughput.conflicting_8.failed", "calls", fails,
               note="calls of throughput.conflicting_8 that failed (target 0), per repeat")
    d.stop()

    bare = _daemon(ctx, {"BULKHEAD_SANDBOX_HARDENING": "0"})
    with bare.client() as c:
        nonce = itertools.count()
        ctx.record("hardening.query_one_doc", "us",
                   ctx.measure_latency(lambda: c.query("get_one", key="k3", nonce=next(nonce)), n, reps),
                   baseline="query.one_doc", note="query.one_doc with the OS layer off")
    bare.stop()

    run_dir = ctx.tmpdir("bh-w-")
    starts: dict[int, list[float]] = {0: [], 1: []}
    rss: list[float] = []
    for _ in range(reps):
        for hardening in (0, 1):
            ms, kib, _layers = asyncio.run(cold_start_worker(run_dir, hardening))
            starts[hardening].append(ms)
            if hardening:
                rss.append(kib / 1024)
    ctx.record("worker.cold_start_unhardened", "ms", starts[0])
    ctx.record("worker.cold_start", "ms", starts[1], baseline="worker.cold_start_unhardened",
               note="fresh interpreter, OS layer, load a one-table component, manifest received")
    ctx.record("worker.idle_rss", "MiB", rss, note="resident memory of an idle hardened worker")
