"""The worker's cache of its mount's documents: reads by Id answered without a round trip.

Correct by construction, not by timing:

- An entry is a document (or its absence) as of a snapshot ``T``, handed out
  by the coordinator with that ``T`` (it says so only for a value read from
  the snapshot itself, never one the transaction wrote).  It is valid for every
  snapshot ``S`` with ``T <= S < valid_to``.
- The coordinator announces every commit that changes a document of this
  mount *before* the commit becomes visible, and ships the announcements with
  the next ``invoke`` frame on the same ordered socket.  So by the time an
  invocation with snapshot ``S`` starts, every commit ``<= S`` that changed a
  document of this mount has been applied here: an entry that names no
  ``valid_to`` is current at ``S``.
- A value can arrive *after* the announcement of a later change of it (the
  read's reply overtook nothing, but the announcement rode an earlier
  invoke).  :attr:`_changed` remembers when each Id last changed, so such a
  value is stored with its end already known; once that memory is trimmed,
  values older than what it forgot are not stored at all.

A hit is still a read: the invocation reports the Id (and its size) with its
next frame and the coordinator records it in the read set, so commit-time
validation, subscriptions and the query cache see exactly what they saw before.
Entries hold the encoded document: every hit decodes a fresh copy, so user code
mutating what it got cannot change the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from runtime import values

_CHANGED_KEPT = 65_536
"""Ids whose last change time is remembered (past it the memory is cleared and its horizon raised)."""


class _Entry:
    __slots__ = ("table", "raw", "valid_from", "valid_to")

    def __init__(self, table: str, raw: bytes, valid_from: int, valid_to: int | None) -> None:
        self.table = table
        self.raw = raw
        self.valid_from = valid_from
        self.valid_to = valid_to


class ReadCache:
    """Documents of this mount by Id, each with the snapshots it is valid for; bounded in count and bytes."""

    def __init__(self, max_docs: int, max_bytes: int) -> None:
        self.max_docs = max_docs
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._changed: dict[str, int] = {}
        self._forgot_before = 0
        """Changes at or before this timestamp may no longer be in :attr:`_changed`."""
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_docs > 0 and self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    # --- what the coordinator tells ----------------------------------------------------------

    def changed(self, commits: list[Any], lost_through: int = 0) -> None:
        """Apply announced commits (``[ts, [ids]]``, oldest first).

        ``lost_through``: announcements of commits up to that timestamp were dropped (too many piled up while
        this worker was idle), so nothing held can be trusted and nothing read before it may be stored.
        """
        if lost_through:
            self._entries.clear()
            self._bytes = 0
            self._changed.clear()
            self._forgot_before = max(self._forgot_before, lost_through)
        for ts, ids in commits:
            for doc_id in ids:
                entry = self._entries.get(doc_id)
                if entry is not None and entry.valid_to is None and ts > entry.valid_from:
                    entry.valid_to = ts
                if self._changed.get(doc_id, 0) < ts:
                    self._changed[doc_id] = ts
        if len(self._changed) > _CHANGED_KEPT:
            self._forgot_before = max(self._forgot_before, max(self._changed.values()))
            self._changed.clear()

    # --- reads ---------------------------------------------------------------------------------

    def lookup(self, doc_id: str, snapshot: int) -> tuple[str, Any, int] | None:
        """``(table, document or None, size)`` as of ``snapshot``, or None on a miss."""
        entry = self._entries.get(doc_id)
        if entry is None or entry.valid_from > snapshot or (entry.valid_to is not None and snapshot >= entry.valid_to):
            self.misses += 1
            return None
        self._entries.move_to_end(doc_id)
        self.hits += 1
        return entry.table, values.unpack(entry.raw), len(entry.raw)

    def store(self, doc_id: str, table: str, doc: Any, snapshot: int) -> None:
        """Keep ``doc`` (or None: no such document) of ``table`` as read at ``snapshot``."""
        if not self.enabled or snapshot < self._forgot_before:
            return
        later = self._changed.get(doc_id)
        valid_to = later if later is not None and later > snapshot else None
        current = self._entries.get(doc_id)
        if current is not None:
            if current.valid_from >= snapshot:
                return  # what we hold is as new or newer
            self._drop(doc_id)
        raw = values.pack(doc)
        if len(raw) > self.max_bytes // 8:
            return  # a giant document would flush everything else
        self._entries[doc_id] = _Entry(table, raw, snapshot, valid_to)
        self._bytes += len(raw)
        while len(self._entries) > self.max_docs or self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    def _drop(self, doc_id: str) -> None:
        entry = self._entries.pop(doc_id)
        self._bytes -= len(entry.raw)
