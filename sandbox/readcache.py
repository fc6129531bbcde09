"""The worker's cache of read answers: gets and index scans of its mount answered without a round trip.

Correct by construction, not by timing:

- An entry is the coordinator's answer to one read (``get`` or ``scan``, by
  its exact arguments) at a snapshot ``T``, with the index range that read
  put in the read set.  The coordinator offers it for keeping only when the
  answer is the snapshot's own (the transaction had written nothing).  It is
  valid for every snapshot ``S`` with ``T <= S < valid_to``.
- The coordinator announces every commit that writes an index of this
  mount's tables — its index-local keys, old and new, per index — *before* the
  commit becomes visible, and ships the announcements with the next ``invoke``
  frame on the same ordered socket.  So by the time an invocation with
  snapshot ``S`` starts, every commit ``<= S`` that could change an answer has
  been applied here: a commit writing a key inside an entry's range ends it.
- An answer can arrive *after* the announcement of a later commit that
  changes it.  The recent announcements are kept (bounded), so such an answer
  is stored with its end already known; answers older than what was trimmed
  are not stored at all.

A hit is still a read: the invocation reports the entry's range (and the
documents and bytes it read) with its next frame, and the coordinator records
it in the read set and the read budget exactly as the read itself would have,
so commit-time validation, subscriptions and the query cache see what they saw
before.  Entries hold the encoded answer: every hit decodes a fresh copy, so
user code changing what it got cannot change the cache.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from runtime import values

Report = tuple[int, bytes, bytes, int, int]
"""``(index number, lo, hi, documents read, bytes read)``: one read as it enters the read set."""

Writes = list[tuple[int, list[bytes]]]
"""One commit's written index-local keys, per index number."""

_RANGE_ENTRIES = 1024
"""Live entries over a range wider than one key (each commit writing their index tests them one by one)."""

_RECENT_KEYS = 65_536
"""Written keys of recent commits kept, to date answers that arrive after news of a later change."""


class _Entry:
    __slots__ = ("key", "raw", "report", "valid_from", "valid_to")

    def __init__(self, key: bytes, raw: bytes, report: Report, valid_from: int, valid_to: int | None) -> None:
        self.key = key
        self.raw = raw
        self.report = report
        self.valid_from = valid_from
        self.valid_to = valid_to


def _hits(report: Report, writes: Writes) -> bool:
    ix, lo, hi = report[0], report[1], report[2]
    for number, keys in writes:
        if number == ix:
            for k in keys:
                if lo <= k < hi:
                    return True
    return False


class ReadCache:
    """Answers by read, each with the snapshots it is valid for; bounded in count and bytes."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._points: dict[tuple[int, bytes], set[bytes]] = {}
        """``(index, k)`` -> live entries whose range is the one key ``k`` (a get): found by the written key."""
        self._by_index: dict[int, set[bytes]] = {}
        """Index number -> live entries over wider ranges of it, tested one by one against its writes."""
        self._ranges = 0
        self._bytes = 0
        self._recent: deque[tuple[int, Writes, int]] = deque()
        self._recent_keys = 0
        self._forgot_before = 0
        """Commits at or before this timestamp may have been forgotten: older answers are not stored."""
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    # --- what the coordinator tells ----------------------------------------------------------

    def changed(self, commits: list[Any], lost_through: int = 0) -> None:
        """Apply announced commits (``[ts, [[index, [keys]], ...]]``, oldest first).

        ``lost_through``: announcements of commits up to that timestamp were dropped (too many piled up while
        this worker was idle), so nothing held can be trusted and nothing read before it may be stored.
        """
        if lost_through:
            self._entries.clear()
            self._points.clear()
            self._by_index.clear()
            self._ranges = 0
            self._bytes = 0
            self._recent.clear()
            self._recent_keys = 0
            self._forgot_before = max(self._forgot_before, lost_through)
        for ts, writes in commits:
            size = 0
            for number, keys in writes:
                size += len(keys)
                if self._points:
                    for k in keys:
                        for ekey in list(self._points.get((number, k), ())):
                            self._end(self._entries[ekey], ts)
                live = self._by_index.get(number)
                if live:
                    for ekey in list(live):
                        entry = self._entries[ekey]
                        if _hits(entry.report, [(number, keys)]):
                            self._end(entry, ts)
            self._recent.append((ts, writes, size))
            self._recent_keys += size
        while self._recent_keys > _RECENT_KEYS and self._recent:
            ts, _w, size = self._recent.popleft()
            self._recent_keys -= size
            self._forgot_before = max(self._forgot_before, ts)

    def _end(self, entry: _Entry, ts: int) -> None:
        """A commit at ``ts`` changed what ``entry`` read (a commit at or before its snapshot is in it)."""
        if ts > entry.valid_from:
            entry.valid_to = ts if entry.valid_to is None else min(entry.valid_to, ts)
            self._unlink(entry)

    @staticmethod
    def _is_point(report: Report) -> bool:
        return report[2] == report[1] + b"\x00"

    def _link(self, entry: _Entry) -> bool:
        report = entry.report
        if self._is_point(report):
            self._points.setdefault((report[0], report[1]), set()).add(entry.key)
            return True
        if self._ranges >= _RANGE_ENTRIES:
            return False
        self._by_index.setdefault(report[0], set()).add(entry.key)
        self._ranges += 1
        return True

    def _unlink(self, entry: _Entry) -> None:
        report = entry.report
        if self._is_point(report):
            point = (report[0], report[1])
            live = self._points.get(point)
            if live is not None:
                live.discard(entry.key)
                if not live:
                    del self._points[point]
            return
        live = self._by_index.get(report[0])
        if live is not None and entry.key in live:
            live.discard(entry.key)
            self._ranges -= 1

    # --- reads ---------------------------------------------------------------------------------

    def lookup(self, key: bytes, snapshot: int) -> tuple[Any, Report] | None:
        """The answer to read ``key`` as of ``snapshot`` and what it read, or None on a miss."""
        entry = self._entries.get(key)
        if entry is None or entry.valid_from > snapshot or (entry.valid_to is not None and snapshot >= entry.valid_to):
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return values.unpack(entry.raw), entry.report

    def store(self, key: bytes, answer: Any, snapshot: int, report: Report) -> None:
        """Keep the answer to read ``key`` given at ``snapshot``, which read ``report``."""
        if not self.enabled or snapshot < self._forgot_before:
            return
        current = self._entries.get(key)
        if current is not None:
            if current.valid_from >= snapshot:
                return  # what we hold is as new or newer
            self._drop(key)
        raw = values.pack(answer)
        if len(raw) > self.max_bytes // 8:
            return  # a giant answer would flush everything else
        valid_to = None
        for ts, writes, _size in self._recent:
            if ts > snapshot and _hits(report, writes):
                valid_to = ts
                break
        entry = _Entry(key, raw, report, snapshot, valid_to)
        if valid_to is None and not self._link(entry):
            return  # too many range entries to test against every write: not kept
        self._entries[key] = entry
        self._bytes += len(raw)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key)
        self._bytes -= len(entry.raw)
        if entry.valid_to is None:
            self._unlink(entry)
