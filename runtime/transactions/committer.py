"""The single committer: OCC validation and group commit.

One thread owns every LMDB write.  Each round it takes every transaction
waiting (up to ``commit_batch_max_txns``), validates each read set against the
write log — the durable commits after its snapshot *and* the ones accepted
earlier in the same round — assigns strictly increasing commit timestamps
(``max(last + 1, time_ns())``), writes the whole round in one LMDB write
transaction with one fsync, then publishes the round to the write log and
listeners, and only then resolves the callers' futures.  Acknowledged means
durable; a failed write fails every transaction of its round, none partially.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from runtime.errors import ConflictError, SnapshotTooOld, StorageError
from runtime.limits import DEFAULT, Limits
from runtime.storage import CommitRecord, Storage, keys
from runtime.transactions.transaction import Prepared
from runtime.transactions.write_log import WriteLog

Listener = Callable[[int, dict[int, list[bytes]]], None]
"""Called on the committer thread after each durable commit: ``(commit_ts, write_keys)``."""

_STOP = object()


class Committer:
    """Owns the write path of one :class:`Storage`.  Start it, submit, stop it."""

    def __init__(self, storage: Storage, limits: Limits = DEFAULT) -> None:
        self.storage = storage
        self.limits = limits
        self.write_log = WriteLog(storage.last_ts, limits.write_log_window_s, limits.write_log_max_entries)
        self.last_ts = storage.last_ts
        self.listeners: list[Listener] = []
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="bulkhead-committer", daemon=True)
        self.rounds = 0
        """Number of LMDB write transactions made (for benchmarks: commits / rounds = grouping)."""
        self.conflicts = 0
        self._last_prune = time.monotonic()

    def start(self) -> "Committer":
        """Start the committer thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Finish the queued work and stop the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def __enter__(self) -> "Committer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def submit(self, prepared: Prepared) -> Future[int]:
        """Queue a transaction; the future gives its commit ts or raises ConflictError/SnapshotTooOld."""
        fut: Future[int] = Future()
        if prepared.is_read_only:
            fut.set_result(prepared.snapshot_ts)
            return fut
        self._queue.put((prepared, fut))
        return fut

    def commit(self, prepared: Prepared, timeout: float | None = 30.0) -> int:
        """Submit and wait; return the commit ts."""
        return self.submit(prepared).result(timeout)

    async def commit_async(self, prepared: Prepared) -> int:
        """Submit and await without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(prepared))

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

    def _round(self, batch: list[tuple[Prepared, Future[int]]]) -> None:
        accepted: list[tuple[Prepared, Future[int], CommitRecord]] = []
        for prepared, fut in batch:
            if not fut.set_running_or_notify_cancel():
                continue
            err = self._validate(prepared, accepted)
            if err is not None:
                self.conflicts += 1
                fut.set_exception(err)
                continue
            ts = max(self.last_ts + 1, time.time_ns())
            self.last_ts = ts
            record = CommitRecord(
                ts=ts,
                doc_puts=[(k, keys.document_value(v, ts)) for k, v in prepared.doc_puts],
                doc_deletes=prepared.doc_deletes,
                index_puts=prepared.index_puts,
                index_deletes=prepared.index_deletes,
                log_value=prepared.log_value,
                meta_puts=prepared.meta_puts,
            )
            accepted.append((prepared, fut, record))
        if not accepted:
            return
        try:
            self.storage.apply([rec for _, _, rec in accepted])
        except Exception as exc:  # noqa: BLE001 - every waiter must hear about it
            self.last_ts = self.storage.last_ts
            err = StorageError(f"commit failed, nothing of it was written: {exc}")
            for _, fut, _ in accepted:
                fut.set_exception(err)
            return
        self.rounds += 1
        for prepared, fut, rec in accepted:
            self.write_log.append((rec.ts, prepared.write_keys, prepared.tables))
            for listener in self.listeners:
                listener(rec.ts, prepared.write_keys)
            fut.set_result(rec.ts)

    def _validate(
        self, prepared: Prepared, accepted: list[tuple[Prepared, Future[int], CommitRecord]]
    ) -> Exception | None:
        if prepared.snapshot_ts < self.write_log.horizon:
            return SnapshotTooOld(
                f"transaction began at {prepared.snapshot_ts}, before the oldest commit kept for validation "
                f"({self.write_log.horizon}); it ran longer than write_log_window_s",
                snapshot_ts=prepared.snapshot_ts,
            )
        hit = self.write_log.conflict(prepared.snapshot_ts, prepared.read_set)
        if hit is None:
            for other, _, rec in accepted:
                found = prepared.read_set.first_overlap(other.write_keys)
                if found is not None:
                    hit = (rec.ts, found[0], found[1], other.tables.get(found[0], "?"))
                    break
        if hit is None:
            return None
        ts, _index, _key, table = hit
        return ConflictError(
            f"documents read from or written to table {table!r} changed while this transaction ran "
            f"(conflicting commit {ts})",
            table=table,
            conflicting_ts=ts,
        )

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < 60:
            return
        self._last_prune = now
        cutoff = time.time_ns() - int(self.limits.log_retention_s * 1e9)
        if cutoff > 0:
            self.storage.prune_log(cutoff)
