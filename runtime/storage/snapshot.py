"""A read-only view of the data at one commit timestamp.

A :class:`Snapshot` wraps one LMDB read transaction; LMDB's MVCC keeps it
consistent while the committer writes.  ``ts`` is the commit timestamp it
shows (read from ``meta`` inside the same read transaction).  Close it when the
Bulkhead transaction ends: an open reader pins pages of the map.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from runtime import values
from runtime.errors import StorageError
from runtime.storage import keys
from runtime.storage.catalog import IndexInfo
from runtime.storage.env import Env


class Snapshot:
    """Consistent reads at commit timestamp :attr:`ts`."""

    def __init__(self, env: Env) -> None:
        self._env = env
        self._txn = env.lmdb.begin(write=False, buffers=False)
        raw = self._txn.get(keys.META_LAST_TS, db=env.dbs[keys.DB_META])
        self.ts: int = values.unpack(raw) if raw is not None else 0
        self.closed = False

    def get(self, table_number: int, doc_id: str) -> tuple[dict[str, Any] | None, int]:
        """The document and its encoded size, or ``(None, 0)``."""
        self._check()
        raw = self._txn.get(keys.document_key(table_number, doc_id), db=self._env.dbs[keys.DB_DOCUMENTS])
        if raw is None:
            return None, 0
        return keys.unpack_document(raw)[0], len(raw)

    def scan(
        self, table_number: int, index: IndexInfo, lo: bytes, hi: bytes, reverse: bool
    ) -> Iterator[tuple[bytes, dict[str, Any], int]]:
        """Yield ``(local_key, document, size)`` for entries with ``lo <= local_key < hi``, in order."""
        self._check()
        prefix = keys.index_prefix(index.number)
        start, stop = prefix + lo, prefix + hi
        plen = len(prefix)
        cursor = self._txn.cursor(db=self._env.dbs[keys.DB_INDEXES])
        docs = self._env.dbs[keys.DB_DOCUMENTS]
        try:
            if reverse:
                positioned = cursor.set_range(stop)
                ok = cursor.prev() if positioned else cursor.last()
                while ok:
                    key = cursor.key()
                    if key < start:
                        break
                    if key < stop:
                        yield self._entry(key[plen:], table_number, docs)
                    ok = cursor.prev()
            else:
                ok = cursor.set_range(start)
                while ok:
                    key = cursor.key()
                    if key >= stop:
                        break
                    yield self._entry(key[plen:], table_number, docs)
                    ok = cursor.next()
        finally:
            cursor.close()

    def _entry(self, local: bytes, table_number: int, docs: Any) -> tuple[bytes, dict[str, Any], int]:
        doc_id = local[-(values.ID_LENGTH + 1) : -1].decode("ascii")
        raw = self._txn.get(keys.document_key(table_number, doc_id), db=docs)
        if raw is None:
            raise StorageError(f"index entry points at a missing document {doc_id} (corrupt index)")
        return local, keys.unpack_document(raw)[0], len(raw)

    def count_table(self, table_number: int) -> int:
        """Number of documents in a table (a full key scan; for tools and tests)."""
        self._check()
        prefix = keys.table_documents_prefix(table_number)
        n = 0
        with self._txn.cursor(db=self._env.dbs[keys.DB_DOCUMENTS]) as cur:
            ok = cur.set_range(prefix)
            while ok and cur.key().startswith(prefix):
                n += 1
                ok = cur.next()
        return n

    def _check(self) -> None:
        if self.closed:
            raise StorageError("snapshot used after its transaction ended")

    def close(self) -> None:
        """End the read transaction."""
        if not self.closed:
            self.closed = True
            self._txn.abort()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
