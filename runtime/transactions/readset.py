"""Read sets: the index ranges a transaction observed, and the overlap test.

Every read is recorded as a half-open interval ``[lo, hi)`` of index-local keys
on one index (a point ``get`` is ``[k, k + b"\\x00")`` on ``by_id``).  Misses are
recorded like hits, so "not found" and phantoms are protected too.

:func:`ReadSet.first_overlap` is the one overlap test of Bulkhead: OCC commit
validation uses it, and so will subscription invalidation.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable


class ReadSet:
    """Intervals of index-local keys, per index number."""

    __slots__ = ("_ranges", "_compiled", "count")

    def __init__(self) -> None:
        self._ranges: dict[int, list[tuple[bytes, bytes]]] = {}
        self._compiled: dict[int, tuple[list[bytes], list[bytes]]] | None = None
        self.count = 0
        """Number of intervals recorded (each get or query adds one)."""

    def add(self, index_number: int, lo: bytes, hi: bytes) -> None:
        """Record that ``[lo, hi)`` of ``index_number`` was observed."""
        self.count += 1
        if lo < hi:
            self._ranges.setdefault(index_number, []).append((lo, hi))
            self._compiled = None

    def merged(self, other: ReadSet) -> ReadSet:
        """A new read set holding the intervals of both, compiled (safe to hand to another thread)."""
        out = ReadSet()
        for source in (self, other):
            for ix, ranges in source._ranges.items():
                out._ranges.setdefault(ix, []).extend(ranges)
            out.count += source.count
        out._compile()
        return out

    def indexes(self) -> Iterable[int]:
        """Index numbers with at least one interval."""
        return self._ranges.keys()

    def intervals(self, index_number: int) -> list[tuple[bytes, bytes]]:
        """Merged, sorted intervals of one index."""
        starts, ends = self._compile().get(index_number, ([], []))
        return list(zip(starts, ends, strict=True))

    def _compile(self) -> dict[int, tuple[list[bytes], list[bytes]]]:
        if self._compiled is None:
            compiled = {}
            for ix, ranges in self._ranges.items():
                starts: list[bytes] = []
                ends: list[bytes] = []
                for lo, hi in sorted(ranges):
                    if ends and lo <= ends[-1]:
                        if hi > ends[-1]:
                            ends[-1] = hi
                    else:
                        starts.append(lo)
                        ends.append(hi)
                compiled[ix] = (starts, ends)
            self._compiled = compiled
        return self._compiled

    def first_overlap(self, writes: dict[int, list[bytes]]) -> tuple[int, bytes] | None:
        """The first ``(index, key)`` of a write set that falls in this read set, if any.

        ``writes`` maps index numbers to the old and new index-local keys of
        every document a commit wrote.
        """
        compiled = self._compile()
        for ix, keys in writes.items():
            found = compiled.get(ix)
            if found is None:
                continue
            starts, ends = found
            for key in keys:
                i = bisect_right(starts, key) - 1
                if i >= 0 and key < ends[i]:
                    return ix, key
        return None
