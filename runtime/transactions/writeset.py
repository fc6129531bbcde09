"""The stack of write frames that makes sub-transactions.

The bottom frame belongs to the top-level transaction; every nested mutation
call pushes a frame.  A frame that succeeds is merged into its parent; one that
raises is discarded with everything its own callees merged into it.  Reads are
never part of a frame (see :mod:`runtime.transactions.readset`): a discarded
frame's reads stay recorded, because the caller's control flow depended on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.errors import BulkheadError
from runtime.storage.catalog import TableInfo


@dataclass(frozen=True)
class PendingWrite:
    """The newest version a transaction wrote for one document (None: deleted)."""

    table: TableInfo
    doc: dict[str, Any] | None


class WriteFrames:
    """A stack of ``{id: PendingWrite}`` frames; lookups go top-down."""

    def __init__(self) -> None:
        self._frames: list[dict[str, PendingWrite]] = [{}]
        self._tokens: list[int] = [0]
        self._next_token = 1
        self._effective: dict[str, PendingWrite] | None = {}

    @property
    def depth(self) -> int:
        """Number of nested frames above the bottom one."""
        return len(self._frames) - 1

    def begin_nested(self) -> int:
        """Push a frame; return the token that must end it."""
        token = self._next_token
        self._next_token += 1
        self._frames.append({})
        self._tokens.append(token)
        return token

    def _pop(self, token: int) -> dict[str, PendingWrite]:
        if len(self._tokens) < 2 or self._tokens[-1] != token:
            raise BulkheadError(f"write frame {token} is not the innermost open sub-transaction")
        self._tokens.pop()
        self._effective = None
        return self._frames.pop()

    def commit_nested(self, token: int) -> None:
        """Merge the innermost frame into its parent."""
        frame = self._pop(token)
        self._frames[-1].update(frame)

    def rollback_nested(self, token: int) -> None:
        """Discard the innermost frame and every write in it."""
        self._pop(token)

    def put(self, doc_id: str, write: PendingWrite) -> None:
        """Record a write in the innermost frame."""
        self._frames[-1][doc_id] = write
        if self._effective is not None:
            self._effective[doc_id] = write

    def lookup(self, doc_id: str) -> PendingWrite | None:
        """The newest pending write of a document, if any."""
        for frame in reversed(self._frames):
            found = frame.get(doc_id)
            if found is not None:
                return found
        return None

    def effective(self) -> dict[str, PendingWrite]:
        """Every pending write, newest version per document."""
        if self._effective is None:
            merged: dict[str, PendingWrite] = {}
            for frame in self._frames:
                merged.update(frame)
            self._effective = merged
        return self._effective
