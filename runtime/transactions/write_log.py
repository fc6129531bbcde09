"""The in-memory write log: conflict keys of recent commits, for OCC validation.

Each entry is ``(commit_ts, {index_number: [index-local keys]}, names)``.  A
transaction whose snapshot is older than :attr:`WriteLog.horizon` cannot be
validated (the commits after it may have been dropped) and is refused as
"snapshot too old".  Only the committer thread appends; readers take the lock.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_right
from collections.abc import Iterator

from runtime.transactions.readset import ReadSet

Entry = tuple[int, dict[int, list[bytes]], dict[int, str]]


class WriteLog:
    """Recent commits' conflict keys, oldest first."""

    def __init__(self, start_ts: int, window_s: float, max_entries: int) -> None:
        self.horizon = start_ts
        """Snapshots at or after this ts can be validated."""
        self.last_ts = start_ts
        """Every commit up to this ts is in the log (set after it is durable): what readers may advance to."""
        self._ts: list[int] = []
        self._entries: list[Entry] = []
        self._added_at: list[float] = []
        self._window_s = window_s
        self._max = max_entries
        self._lock = threading.Lock()

    def append(self, entry: Entry) -> None:
        """Add one durable commit."""
        self.extend([entry])

    def extend(self, entries: list[Entry]) -> None:
        """Add durable commits (in commit order) and drop what fell out of the window."""
        with self._lock:
            now = time.monotonic()
            self._ts.extend(e[0] for e in entries)
            self._entries.extend(entries)
            if entries:
                self.last_ts = max(self.last_ts, entries[-1][0])
            self._added_at.extend([now] * len(entries))
            drop = 0
            while drop < len(self._ts) and (
                len(self._ts) - drop > self._max or now - self._added_at[drop] > self._window_s
            ):
                drop += 1
            if drop:
                self.horizon = self._ts[drop - 1]
                del self._ts[:drop], self._entries[:drop], self._added_at[:drop]

    def since(self, ts: int) -> Iterator[Entry]:
        """Entries committed after ``ts``."""
        with self._lock:
            start = bisect_right(self._ts, ts)
            entries = self._entries[start:]
        return iter(entries)

    def conflict(self, snapshot_ts: int, reads: ReadSet) -> tuple[int, int, bytes, str] | None:
        """The first commit after ``snapshot_ts`` that wrote into ``reads``: ``(ts, index, key, table)``."""
        for ts, writes, names in self.since(snapshot_ts):
            hit = reads.first_overlap(writes)
            if hit is not None:
                return ts, hit[0], hit[1], names.get(hit[0], "?")
        return None

    def still_valid(self, ts: int, reads: ReadSet) -> bool:
        """Whether what ``reads`` observed at ``ts`` is unchanged by every commit in the log since."""
        return ts >= self.horizon and self.conflict(ts, reads) is None

    def __len__(self) -> int:
        return len(self._ts)
