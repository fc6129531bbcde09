"""Bulk loading through a real daemon: 100,000 documents in batched mutations, beside the same in-process.

- ``bulk.insert_100k`` (docs/s): 100,000 documents (quick: 20,000) inserted
  through the daemon (``benchmarks/apps/bulk``) by 4 client threads, each call
  the app mutation ``insert_batch`` inserting 250 documents (one ``ctx.db.insert``
  after another, the natural way to write it) in one transaction.  One sample
  per tenth of the load (docs/s over that window), so the spread shows whether
  the rate holds as the table grows.  Baseline ``peer.inprocess_bulk_insert``.
  Afterwards three groups are counted to check every document arrived.
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
from runtime.storage import Storage
from runtime.testing import RunningDaemon
from runtime.transactions import Committer, Transaction

NAME = "bulk"
DESCRIPTION = "100,000 documents inserted through the daemon in batched mutations, vs in-process"
ORDER = 80

APP = Path(__file__).parent / "apps" / "bulk" / "app.py"
BATCH = 250
"""Documents per mutation: well inside the 1 s limit (about 0.2 s each here) and the 16,000-write limit."""
THREADS = 4
WINDOWS = 10
GROUPS = 100


def _doc(i: int) -> dict[str, Any]:
    return {"seq": i, "group": i % GROUPS, "name": f"item-{i:07d}", "text": "x" * 40}


def _batches(start: int, count: int) -> list[list[dict[str, Any]]]:
    return [[_doc(i) for i in range(b, min(b + BATCH, start + count))] for b in range(start, start + count, BATCH)]


def _windows(total: int, load: Callable[[list[list[dict[str, Any]]]], None]) -> tuple[list[float], float]:
    """Load ``total`` documents in :data:`WINDOWS` windows; (docs/s of each window, seconds in all)."""
    per_window = total // WINDOWS
    rates, seconds = [], 0.0
    for w in range(WINDOWS):
        batches = _batches(w * per_window, per_window)
        t0 = time.perf_counter()
        load(batches)
        elapsed = time.perf_counter() - t0
        rates.append(per_window / elapsed)
        seconds += elapsed
    return rates, seconds


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


def _daemon_load(ctx: BenchContext, total: int, gathered: int) -> None:
    d = RunningDaemon(ctx.tmpdir("bh-bulk-") / "data").start()
    ctx.defer(d.stop)
    d.deploy(APP)
    clients = [d.client() for _ in range(THREADS)]
    for c in clients:
        ctx.defer(c.close)
    with d.client() as c:  # warm the worker (imports, validation) outside the clock
        c.mutation("insert_batch", docs=[{**_doc(0), "seq": -1, "group": -1}])

    def work(fn: str) -> Callable[[int, list[list[dict[str, Any]]]], None]:
        def one(i: int, mine: list[list[dict[str, Any]]]) -> None:
            for batch in mine:
                if clients[i].mutation(fn, docs=batch) != len(batch):
                    raise AssertionError(f"{fn} did not insert its whole batch")
        return one

    rates, seconds = _windows(total, lambda b: _threads(work("insert_batch"), b))
    with d.client() as c:
        for g in (1, 42, GROUPS - 1):
            got = c.query("count_group", group=g)
            if got != total // GROUPS:
                raise AssertionError(f"bulk.insert_100k: group {g} holds {got} documents, expected {total // GROUPS}")
    ctx.record("bulk.insert_100k", "docs/s", rates, better="higher", baseline="peer.inprocess_bulk_insert",
               note=f"{total:,} documents, {THREADS} clients, {BATCH} per mutation, one insert after another; "
                    f"{seconds:.1f} s in all ({total / seconds:,.0f} docs/s overall); one sample per tenth")

    def gathered_load(batches: list[list[dict[str, Any]]]) -> None:
        # shift the documents past the ones already there, so the counts above stay exact
        _threads(work("insert_batch_gathered"), [[{**doc, "seq": doc["seq"] + total} for doc in b] for b in batches])

    rates, seconds = _windows(gathered, gathered_load)
    ctx.record("bulk.insert_gathered", "docs/s", rates, better="higher", baseline="bulk.insert_100k",
               note=f"{gathered:,} documents the same way, each batch's inserts awaited together (asyncio.gather)")
    d.stop()


def _inprocess(ctx: BenchContext, total: int) -> None:
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

    rates, seconds = _windows(total, lambda b: _threads(work, b))
    ctx.record("peer.inprocess_bulk_insert", "docs/s", rates, better="higher",
               note=f"the same {total:,} documents in-process: {THREADS} threads, {BATCH} per transaction, "
                    f"Transaction + Committer, no isolation; {seconds:.1f} s in all")


def run(ctx: BenchContext) -> None:
    total = ctx.pick(100_000, 20_000)
    _inprocess(ctx, total)
    _daemon_load(ctx, total, total // 5)
