"""The single committer: OCC validation and group commit.

One thread owns every LMDB write.  Each round it takes every transaction
waiting (up to ``commit_batch_max_txns``), validates each read set against the
write log — the durable commits after its snapshot *and* the ones accepted
earlier in the same round — assigns strictly increasing commit timestamps
(``max(last + 1, time_ns())``), writes the whole round in one LMDB write
transaction with one fsync, then publishes the round to the write log and
listeners, and only then resolves the callers' futures.  Acknowledged means
durable; a failed write fails every transaction of its round, none partially.

**Retry lanes.**  A transaction that conflicted retries in the lane of the key
it conflicted on (one holder per key at a time, first come first served, see
the kernel's runner) and *reserves* what it read, with a ticket number from
when it got its lane: until it commits, any transaction whose writes fall in
the reservation is bounced at validation (a ConflictError, after which it
queues in a lane too) unless it holds an older ticket.  So the oldest holder
cannot be overtaken by anyone, every holder becomes the oldest in turn, and
nothing starves; holders of lanes of unrelated keys run side by side.
Bouncing is always safe: validation still decides every commit, so
serializability does not depend on the lanes.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from runtime.errors import ConflictError, SnapshotTooOld, StorageError
from runtime.limits import DEFAULT, Limits
from runtime.storage import CommitRecord, Storage
from runtime.transactions.readset import ReadSet
from runtime.transactions.transaction import Prepared
from runtime.transactions.write_log import WriteLog

Listener = Callable[[int, dict[int, list[bytes]]], None]
"""Called on the committer thread after each durable commit: ``(commit_ts, write_keys)``."""

_STOP = object()


class Ticket:
    """One submitted transaction: wait on it for its commit ts (or its error).

    Waiters are woken once per committer round, not once per transaction: a
    per-commit ``Future`` (lock + notify each) cost more than the LMDB puts.
    """

    __slots__ = ("prepared", "ts", "error", "done", "_committer", "loop_future")

    def __init__(self, prepared: Prepared, committer: Committer | None) -> None:
        self.prepared = prepared
        self.ts: int | None = None
        self.error: BaseException | None = None
        self.done = committer is None
        self._committer = committer
        self.loop_future: tuple[asyncio.AbstractEventLoop, asyncio.Future[int]] | None = None

    def result(self, timeout: float | None = 30.0) -> int:
        """Block until committed; return the commit ts or raise the commit's error."""
        if not self.done:
            assert self._committer is not None
            with self._committer._done:
                if not self._committer._done.wait_for(lambda: self.done, timeout):
                    raise TimeoutError("commit did not finish in time")
        if self.error is not None:
            raise self.error
        assert self.ts is not None
        return self.ts


def wait_all(tickets: Iterable[Ticket], timeout: float | None = 60.0) -> None:
    """Wait until every ticket is done; commit errors stay on the tickets, a timeout raises."""
    for t in tickets:
        try:
            t.result(timeout)
        except TimeoutError:
            raise
        except Exception:
            pass


class Committer:
    """Owns the write path of one :class:`Storage`.  Start it, submit, stop it."""

    def __init__(self, storage: Storage, limits: Limits = DEFAULT) -> None:
        self.storage = storage
        self.limits = limits
        self.write_log = WriteLog(storage.last_ts, limits.write_log_window_s, limits.write_log_max_entries)
        self.last_ts = storage.last_ts
        self.listeners: list[Listener] = []
        self.announcers: list[Listener] = []
        """Called with each accepted transaction *before* its round is written, so before any snapshot can
        include it (the commit feed to workers' caches).  Must not raise; a round that then fails to write
        was announced for nothing, which only costs a cache entry."""
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._done = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="bulkhead-committer", daemon=True)
        self.rounds = 0
        """Number of LMDB write transactions made (for benchmarks: commits / rounds = grouping)."""
        self.conflicts = 0
        self.bounced = 0
        """Transactions refused because they wrote into the lane holder's reservation."""
        self._reservations: dict[object, tuple[int, ReadSet]] = {}
        """Lane holder -> (ticket, reserved reads); replaced, never changed in place (the thread reads it)."""
        self._last_prune = time.monotonic()

    def start(self) -> Committer:
        """Start the committer thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Finish the queued work and stop the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def __enter__(self) -> Committer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reserve(self, owner: object, reads: ReadSet, ticket: int = 0) -> None:
        """Bounce every transaction that writes into ``reads`` until :meth:`release`, except ``owner``'s and
        those of holders with an older (smaller) ``ticket``.  ``reads`` is not changed afterwards: pass a
        fresh, compiled read set (see :meth:`ReadSet.merged`)."""
        self._reservations = {**self._reservations, owner: (ticket, reads)}

    def release(self, owner: object) -> None:
        """End ``owner``'s reservation (nothing if it holds none)."""
        if owner in self._reservations:
            self._reservations = {k: v for k, v in self._reservations.items() if k is not owner}

    @property
    def reservations(self) -> int:
        """Reservations held now (one per lane holder)."""
        return len(self._reservations)

    def submit(self, prepared: Prepared) -> Ticket:
        """Queue a transaction; its ticket gives the commit ts or raises ConflictError/SnapshotTooOld."""
        return self._enqueue(prepared, None)

    def _enqueue(
        self, prepared: Prepared, loop_future: tuple[asyncio.AbstractEventLoop, asyncio.Future[int]] | None
    ) -> Ticket:
        if prepared.is_read_only:
            ticket = Ticket(prepared, None)
            ticket.ts = prepared.snapshot_ts
            return ticket
        ticket = Ticket(prepared, self)
        ticket.loop_future = loop_future
        self._queue.put(ticket)
        return ticket

    def commit(self, prepared: Prepared, timeout: float | None = 30.0) -> int:
        """Submit and wait; return the commit ts."""
        return self.submit(prepared).result(timeout)

    async def commit_async(self, prepared: Prepared) -> int:
        """Submit and await without blocking the event loop."""
        if prepared.is_read_only:
            return prepared.snapshot_ts
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._enqueue(prepared, (loop, fut))
        return await fut

    # --- the committer thread -------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            batch = [item]
            while len(batch) < self.limits.commit_batch_max_txns:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)
            self._round(batch)  # type: ignore[arg-type]
            self._maybe_prune()

    def _round(self, batch: list[Ticket]) -> None:
        accepted: list[Ticket] = []
        records: list[CommitRecord] = []
        for ticket in batch:
            prepared = ticket.prepared
            err = self._validate(prepared, accepted)
            if err is not None:
                self.conflicts += 1
                ticket.error = err
                continue
            ts = max(self.last_ts + 1, time.time_ns())
            self.last_ts = ticket.ts = ts
            accepted.append(ticket)
            records.append(
                CommitRecord(ts, prepared.doc_puts, prepared.doc_deletes, prepared.index_puts,
                             prepared.index_deletes, prepared.log_value, prepared.meta_puts)
            )
        if records:
            for announce in self.announcers:
                for t in accepted:
                    announce(t.ts, t.prepared.write_keys)  # type: ignore[arg-type]
            try:
                self.storage.apply(records)
            except Exception as exc:
                self.last_ts = self.storage.last_ts
                err = StorageError(f"commit failed, nothing of it was written: {exc}")
                for ticket in accepted:
                    ticket.ts, ticket.error = None, err
                accepted = []
            else:
                self.rounds += 1
                self.write_log.extend([(t.ts, t.prepared.write_keys, t.prepared.tables) for t in accepted])  # type: ignore[misc]
                for listener in self.listeners:
                    for t in accepted:
                        listener(t.ts, t.prepared.write_keys)  # type: ignore[arg-type]
        self._finish(batch)

    def _finish(self, batch: list[Ticket]) -> None:
        by_loop: dict[Any, list[Ticket]] = {}
        with self._done:
            for ticket in batch:
                ticket.done = True
                if ticket.loop_future is not None:
                    by_loop.setdefault(ticket.loop_future[0], []).append(ticket)
            self._done.notify_all()
        for loop, tickets in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, tickets)
            except RuntimeError:
                pass  # that loop is closed; nobody is waiting any more

    def _validate(self, prepared: Prepared, accepted: list[Ticket]) -> Exception | None:
        if prepared.snapshot_ts < self.write_log.horizon:
            return SnapshotTooOld(
                f"transaction began at {prepared.snapshot_ts}, before the oldest commit kept for validation "
                f"({self.write_log.horizon}); it ran longer than write_log_window_s",
                snapshot_ts=prepared.snapshot_ts,
            )
        reservations = self._reservations
        if reservations:
            mine = reservations.get(prepared.lane) if prepared.lane is not None else None
            my_ticket = mine[0] if mine is not None else None
            for owner, (ticket, reads) in reservations.items():
                if owner is prepared.lane or (my_ticket is not None and ticket > my_ticket):
                    continue
                found = reads.first_overlap(prepared.write_keys)
                if found is not None:
                    self.bounced += 1
                    table = prepared.tables.get(found[0], "?")
                    err = ConflictError(f"table {table!r}: a retried transaction that read what this one writes "
                                        "commits first (the retry lane)", table=table)
                    err.lane_key = found  # type: ignore[attr-defined]
                    return err
        if not prepared.read_set.count:
            return None  # blind writes conflict with nobody
        hit = self.write_log.conflict(prepared.snapshot_ts, prepared.read_set)
        if hit is None:
            for other in accepted:
                found = prepared.read_set.first_overlap(other.prepared.write_keys)
                if found is not None:
                    hit = (other.ts or 0, found[0], found[1], other.prepared.tables.get(found[0], "?"))
                    break
        if hit is None:
            return None
        ts, index, key, table = hit
        err = ConflictError(
            f"documents read from or written to table {table!r} changed while this transaction ran "
            f"(conflicting commit {ts})",
            table=table,
            conflicting_ts=ts,
        )
        err.lane_key = (index, key)  # type: ignore[attr-defined]
        return err

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < 60:
            return
        self._last_prune = now
        cutoff = time.time_ns() - int(self.limits.log_retention_s * 1e9)
        if cutoff > 0:
            self.storage.prune_log(cutoff)


def _resolve(tickets: list[Ticket]) -> None:
    """Runs on an asyncio loop: settle the futures of ``commit_async`` callers."""
    for t in tickets:
        assert t.loop_future is not None
        fut = t.loop_future[1]
        if fut.done():
            continue
        if t.error is not None:
            fut.set_exception(t.error)
        else:
            fut.set_result(t.ts)  # type: ignore[arg-type]
