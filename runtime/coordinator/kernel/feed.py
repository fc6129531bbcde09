"""The commit feed: what each commit wrote of a mount's indexes, told to its workers before anyone can see it.

Workers answer reads by Id from a cache (:mod:`sandbox.readcache`).  For that
to be exact, a worker must have heard of every commit that changed one of its
mount's documents before it runs an invocation whose snapshot includes that
commit.  The committer calls :meth:`CommitFeed.announce` for each accepted
transaction *before* the round becomes visible to new snapshots; the written index keys
(per index, old and new) go into the outbox of each worker of the mount, and :meth:`CommitFeed.take` hands them
to the next ``invoke`` frame sent to that worker (the socket is ordered, so the
frame's reads follow them).  A worker idle for long gets, instead of an
unbounded list, the timestamp through which announcements were dropped, and
drops its cache.

The outbox is filled by the committer thread and drained by the loop: a lock
guards it (uncontended, ~0.1 us).  An outbox exists for a worker from its first
invoke on; reads answered before it existed (``snapshot < since``) are never
cached (see :meth:`since`).
"""

from __future__ import annotations

import threading
from typing import Any

from runtime.storage import Storage
from sandbox.supervisor import WorkerHandle


class _Outbox:
    __slots__ = ("mount", "since", "lock", "commits", "keys", "lost_through", "max_keys")

    def __init__(self, mount: str, since: int, max_keys: int) -> None:
        self.mount = mount
        self.max_keys = max_keys
        self.since = since
        self.lock = threading.Lock()
        self.commits: list[tuple[int, list[tuple[int, list[bytes]]]]] = []
        self.keys = 0
        self.lost_through = 0

    def push(self, ts: int, writes: list[tuple[int, list[bytes]]]) -> None:
        with self.lock:
            if self.lost_through:
                self.lost_through = ts
                return
            self.commits.append((ts, writes))
            self.keys += sum(len(keys) for _n, keys in writes)
            if self.keys > self.max_keys:
                self.commits, self.keys, self.lost_through = [], 0, ts

    def take(self) -> tuple[list[tuple[int, list[tuple[int, list[bytes]]]]], int]:
        with self.lock:
            out = self.commits, self.lost_through
            self.commits, self.keys, self.lost_through = [], 0, 0
        return out


class CommitFeed:
    """Outboxes of written index keys, one per worker that has been invoked."""

    def __init__(self, storage: Storage, last_ts: Any, max_keys: int) -> None:
        self._storage = storage
        self._max_keys = max_keys
        self._last_ts = last_ts
        """``() -> int``: the newest commit timestamp the committer has assigned (visible or about to be)."""
        self._by_worker: dict[WorkerHandle, _Outbox] = {}
        self._by_mount: dict[str, tuple[_Outbox, ...]] = {}
        """Replaced, never changed in place: the committer thread reads it without the loop's help."""

    def outbox(self, worker: WorkerHandle) -> _Outbox:
        """The worker's outbox, made at its first invoke (and dead workers' outboxes dropped then)."""
        box = self._by_worker.get(worker)
        if box is None:
            for old in [w for w in self._by_worker if w.dead]:
                del self._by_worker[old]
            # registered first, then ``since`` read: a commit announced before this saw no outbox, but its
            # timestamp was assigned before, so ``since`` covers it
            box = _Outbox(worker.mount, 0, self._max_keys)
            self._by_worker[worker] = box
            self._rebuild()
            box.since = self._last_ts()
        return box

    def _rebuild(self) -> None:
        by_mount: dict[str, list[_Outbox]] = {}
        for box in self._by_worker.values():
            by_mount.setdefault(box.mount, []).append(box)
        self._by_mount = {m: tuple(boxes) for m, boxes in by_mount.items()}

    def take(self, worker: WorkerHandle) -> tuple[int, list[tuple[int, list[tuple[int, list[bytes]]]]], int]:
        """``(since, commits, lost_through)`` for the next invoke frame to ``worker``."""
        box = self.outbox(worker)
        commits, lost = box.take()
        return box.since, commits, lost

    def announce(self, ts: int, write_keys: dict[int, list[bytes]]) -> None:
        """One accepted transaction's writes (committer thread, before they are visible)."""
        by_mount = self._by_mount
        if not by_mount:
            return
        catalog = self._storage.catalog
        per_mount: dict[str, list[tuple[int, list[bytes]]]] = {}
        for number, written in write_keys.items():
            table = catalog.table_of_index(number)
            if table is None or table.name.startswith("_") or table.mount not in by_mount:
                continue
            per_mount.setdefault(table.mount, []).append((number, written))
        for mount, writes in per_mount.items():
            for box in by_mount[mount]:
                box.push(ts, writes)
