"""Bulk loading through a real daemon: 100,000 documents in batched mutations, beside the same in-process.

- ``bulk.insert_100k`` (docs/s): 100,000 documents (quick: 10,000) inserted
  through the daemon (``benchmarks/apps/bulk``) by 4 client threads, each call
  the app mutation ``insert_batch`` inserting 100 documents (one ``ctx.db.insert``
  after another, the natural way to write it) in one transaction.  One sample
  per tenth of the load (docs/s over that window), so the spread shows whether
  the rate holds as the table grows.  Baseline ``peer.inprocess_bulk_insert``.
  Afterwards three groups are counted to check every document arrived.
  The three figures below load their windows alternately (a window of each in
  turn, after a warm-up window of each), so the in-process baseline and the
  daemon see the same machine and the same table sizes.
- ``peer.inprocess_bulk_insert`` (docs/s): the same documents in the same
  batches from 4 threads, in-process (Transaction + Committer on the same
  storage engine), no isolation, no validation, no wire.
- ``bulk.insert_gathered`` (docs/s): a fifth as many documents through
  ``insert_batch_gathered``, which awaits each batch's inserts together
  (``asyncio.gather``) instead of one after another.  Baseline
  ``bulk.insert_100k``: the ratio is how much of the bulk rate is the worker →
  coordinator round trip of each insert.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import BenchContext
from runtime.client import Client
from runtime.errors import BulkheadError
from runtime.storage import Storage
from runtime.testing import RunningDaemon
from runtime.transactions import Committer, Transaction

NAME = "bulk"
DESCRIPTION = "100,000 documents inserted through the daemon in batched mutations, vs in-process"
ORDER = 80

APP = Path(__file__).parent / "apps" / "bulk" / "app.py"
BATCH = 100
"""Documents per mutation: well inside the 1 s limit (about 0.08 s each here; 250 per mutation took 0.2 s
on an idle machine and passed 1 s under load) and the 16,000-write limit."""
THREADS = 4
WINDOWS = 10
WARMUP = 1
"""Discarded windows of each loader before the measured ones (their documents stay)."""
GROUPS = 100


def _doc(i: int) -> dict[str, Any]:
    return {"seq": i, "group": i % GROUPS, "name": f"item-{i:07d}", "text": "x" * 40}


def _batches(start: int, count: int) -> list[list[dict[str, Any]]]:
    return [[_doc(i) for i in range(b, min(b + BATCH, start + count))] for b in range(start, start + count, BATCH)]


def _threads(work: Callable[[int, list[list[dict[str, Any]]]], None], batches: list[list[dict[str, Any]]]) -> None:
    """Share ``batches`` round-robin between :data:`THREADS` threads; ``work(thread, its batches)``."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(i, batches[i::THREADS])
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


class _Loader:
    """Loads window after window of fresh documents with ``load(batches)``: one round of :meth:`round` each."""

    def __init__(self, load: Callable[[list[list[dict[str, Any]]]], None], per_window: int, offset: int = 0) -> None:
        self.load, self.per_window, self.offset = load, per_window, offset
        self.windows, self.seconds = 0, 0.0

    def round(self) -> list[float]:
        """Load the next window: [docs/s]."""
        batches = _batches(self.offset + self.windows * self.per_window, self.per_window)
        t0 = time.perf_counter()
        self.load(batches)
        elapsed = time.perf_counter() - t0
        self.windows += 1
        self.seconds += elapsed
        return [self.per_window / elapsed]


def _daemon(ctx: BenchContext) -> tuple[RunningDaemon, list[Client]]:
    d = RunningDaemon(ctx.tmpdir("bh-bulk-") / "data").start()
    ctx.defer(d.stop)
    d.deploy(APP)
    clients = [d.client() for _ in range(THREADS)]
    for c in clients:
        ctx.defer(c.close)
    with d.client() as c:  # warm the worker (imports, validation) outside the clock
        c.mutation("insert_batch", docs=[{**_doc(0), "seq": -1, "group": -1}])
    return d, clients


def _through(clients: list[Client], fn: str, failed: list[int]) -> Callable[[list[list[dict[str, Any]]]], None]:
    """Load batches from the clients' threads, each batch one call of mutation ``fn``; a failed call's batch
    size is appended to ``failed``."""
    def one(i: int, mine: list[list[dict[str, Any]]]) -> None:
        for batch in mine:
            try:
                inserted = clients[i].mutation(fn, docs=batch)
            except BulkheadError:  # a timeout under load: counted, and the group check allows for it
                failed.append(len(batch))
                continue
            if inserted != len(batch):
                raise AssertionError(f"{fn} did not insert its whole batch")

    return lambda batches: _threads(one, batches)


def _inprocess(ctx: BenchContext) -> Callable[[list[list[dict[str, Any]]]], None]:
    storage = Storage.open(ctx.tmpdir("bh-bulk-inproc-"))
    ctx.defer(storage.close)
    storage.define_table("", "items", {"by_group": ["group"]})
    committer = Committer(storage).start()
    ctx.defer(committer.stop)

    def work(_i: int, mine: list[list[dict[str, Any]]]) -> None:
        for batch in mine:
            with Transaction(storage, now=time.time()) as t:
                for doc in batch:
                    t.insert("", "items", doc)
                committer.commit(t.prepare())

    return lambda batches: _threads(work, batches)


def run(ctx: BenchContext) -> None:
    total = ctx.pick(100_000, 10_000)
    per_window = total // WINDOWS
    d, clients = _daemon(ctx)
    inproc = _Loader(_inprocess(ctx), per_window)
    failed: dict[str, list[int]] = {"bulk.insert_100k": [], "bulk.insert_gathered": []}
    bulk = _Loader(_through(clients, "insert_batch", failed["bulk.insert_100k"]), per_window)
    # the gathered documents' seq numbers come after every other one's
    gathered = _Loader(_through(clients, "insert_batch_gathered", failed["bulk.insert_gathered"]),
                       per_window // 5, offset=10 * total)
    got = ctx.interleave({"peer.inprocess_bulk_insert": inproc.round, "bulk.insert_100k": bulk.round,
                          "bulk.insert_gathered": gathered.round}, WINDOWS, warmup=WARMUP)
    loaded = bulk.windows * bulk.per_window + gathered.windows * gathered.per_window  # spread evenly over groups
    with d.client() as c:
        for g in (1, 42, GROUPS - 1):
            got_g = c.query("count_group", group=g)
            lost = sum(map(sum, failed.values()))  # failed batches spread unevenly: then only a bound holds
            if not loaded // GROUPS - lost <= got_g <= loaded // GROUPS:
                raise AssertionError(f"bulk.insert_100k: group {g} holds {got_g} documents, "
                                     f"expected {loaded // GROUPS}")
    ctx.record("peer.inprocess_bulk_insert", "docs/s", got["peer.inprocess_bulk_insert"], better="higher",
               note=f"the same documents in-process: {THREADS} threads, {BATCH} per transaction, Transaction + "
                    f"Committer, no isolation; {inproc.seconds:.1f} s in all")
    ctx.record("bulk.insert_100k", "docs/s", got["bulk.insert_100k"], better="higher",
               baseline="peer.inprocess_bulk_insert",
               note=f"{total:,} documents (+ a warm-up tenth), {THREADS} clients, {BATCH} per mutation, one insert "
                    f"after another; {bulk.seconds:.1f} s in all; one sample per tenth, alternating with the "
                    "in-process tenths")
    ctx.record("bulk.insert_gathered", "docs/s", got["bulk.insert_gathered"], better="higher",
               baseline="bulk.insert_100k",
               note=f"{gathered.windows * gathered.per_window:,} documents the same way, each batch's inserts awaited "
                    "together (asyncio.gather)")
    for name, docs in failed.items():
        ctx.record(f"{name}.failed", "calls", [float(len(docs))],
                   note=f"mutations of {name} that failed (a timeout under load; target 0), all windows")
    d.stop()
