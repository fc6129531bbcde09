"""Internal: the coordinator's LMDB storage.  The only package that imports ``lmdb``.

:class:`Storage` is the facade: open a data directory, take snapshots, define
tables and indexes (with backfill), apply batches of already-validated commits
in one durable LMDB write transaction, and read the transaction log.  It knows
nothing of OCC; :mod:`runtime.transactions` builds on it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime import values
from runtime.errors import StorageError
from runtime.limits import DEFAULT, Limits
from runtime.storage import keys
from runtime.storage.catalog import Catalog, IndexInfo, TableInfo, check_index_spec
from runtime.storage.env import Env, open_env
from runtime.storage.snapshot import Snapshot

__all__ = ["Storage", "CommitRecord", "Snapshot", "Catalog", "TableInfo", "IndexInfo"]


@dataclass
class CommitRecord:
    """Everything one validated transaction writes, already encoded."""

    ts: int
    doc_puts: list[tuple[bytes, bytes]] = field(default_factory=list)
    doc_deletes: list[bytes] = field(default_factory=list)
    index_puts: list[bytes] = field(default_factory=list)
    index_deletes: list[bytes] = field(default_factory=list)
    log_value: bytes = b""
    meta_puts: list[tuple[bytes, bytes]] = field(default_factory=list)


class Storage:
    """An open data directory."""

    def __init__(self, env: Env, limits: Limits) -> None:
        self.env = env
        self.limits = limits
        self.write_lock = threading.Lock()
        """Held by whoever has the single LMDB write transaction open."""
        self.catalog = self._load_catalog()
        with env.lmdb.begin(write=True) as txn:
            meta = env.dbs[keys.DB_META]
            if txn.get(keys.META_FORMAT, db=meta) is None:
                txn.put(keys.META_FORMAT, values.pack(keys.FORMAT_VERSION), db=meta)
                txn.put(keys.META_CURSOR_SECRET, values.pack(os.urandom(32)), db=meta)
            elif values.unpack(txn.get(keys.META_FORMAT, db=meta)) != keys.FORMAT_VERSION:
                raise StorageError(f"data directory {env.path} has an unknown format version")
            self.cursor_secret: bytes = values.unpack(txn.get(keys.META_CURSOR_SECRET, db=meta))
            raw = txn.get(keys.META_LAST_TS, db=meta)
            self.last_ts: int = values.unpack(raw) if raw is not None else 0

    @classmethod
    def open(cls, path: str | os.PathLike[str], limits: Limits = DEFAULT) -> Storage:
        """Open (or create) the data directory at ``path``."""
        return cls(open_env(path, limits), limits)

    @property
    def path(self) -> Path:
        """The data directory."""
        return self.env.path

    def close(self) -> None:
        """Close the environment."""
        self.env.close()

    # --- reads -------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """A consistent view at the latest durable commit."""
        return Snapshot(self.env)

    def log_since(self, after_ts: int) -> Iterator[tuple[int, list[Any]]]:
        """Committed write sets with ``ts > after_ts``, oldest first."""
        with self.env.lmdb.begin(write=False) as txn, txn.cursor(db=self.env.dbs[keys.DB_LOG]) as cur:
            ok = cur.set_range(keys.log_key(after_ts + 1))
            while ok:
                yield keys.log_ts(cur.key()), values.unpack(cur.value())
                ok = cur.next()

    def meta_get(self, name: str) -> Any:
        """A coordinator-owned meta value, or None."""
        with self.env.lmdb.begin(write=False) as txn:
            raw = txn.get(keys.META_USER_PREFIX + name.encode(), db=self.env.dbs[keys.DB_META])
        return None if raw is None else values.unpack(raw)

    def meta_put(self, name: str, value: Any) -> None:
        """Write a coordinator-owned meta value outside any transaction (deployments, schemas); durable."""
        with self.write_lock, self.env.lmdb.begin(write=True) as txn:
            txn.put(keys.META_USER_PREFIX + name.encode(), values.pack(value), db=self.env.dbs[keys.DB_META])

    # --- writes --------------------------------------------------------------------

    def apply(self, records: list[CommitRecord]) -> None:
        """Write validated commits in one LMDB write transaction and one fsync.

        Returns only once the data is durable.  Either every record is written
        or none is.  Records apply in order; their net effect is written with
        one ``putmulti`` per sub-database (a later record may overwrite or
        delete what an earlier one wrote in the same round, so rounds with
        deletes are reduced to their net effect first).
        """
        if not records:
            return
        log_items: list[tuple[bytes, bytes]] = []
        meta_items: list[tuple[bytes, bytes]] = []
        for rec in records:
            log_items.append((keys.log_key(rec.ts), rec.log_value))
            for key, value in rec.meta_puts:
                meta_items.append((keys.META_USER_PREFIX + key, value))
        if any(rec.doc_deletes or rec.index_deletes for rec in records):
            index_deletes, index_puts, doc_deletes, doc_puts = self._net_effect(records)
        else:  # only puts: applying them in order is their net effect
            index_deletes, doc_deletes = [], []
            index_puts = [(k, b"") for rec in records for k in rec.index_puts]
            doc_puts = [(k, v + keys.ts_suffix(rec.ts)) for rec in records for k, v in rec.doc_puts]
        meta_items.append((keys.META_LAST_TS, values.pack(records[-1].ts)))
        dbs = self.env.dbs
        with self.write_lock:
            with self.env.lmdb.begin(write=True) as txn:
                for key in index_deletes:
                    txn.delete(key, db=dbs[keys.DB_INDEXES])
                txn.cursor(db=dbs[keys.DB_INDEXES]).putmulti(index_puts)
                for key in doc_deletes:
                    txn.delete(key, db=dbs[keys.DB_DOCUMENTS])
                txn.cursor(db=dbs[keys.DB_DOCUMENTS]).putmulti(doc_puts)
                txn.cursor(db=dbs[keys.DB_LOG]).putmulti(log_items, append=True)
                txn.cursor(db=dbs[keys.DB_META]).putmulti(meta_items)
            self.last_ts = records[-1].ts

    @staticmethod
    def _net_effect(
        records: list[CommitRecord],
    ) -> tuple[list[bytes], list[tuple[bytes, bytes]], list[bytes], list[tuple[bytes, bytes]]]:
        """Deletes and puts a round amounts to, applying its records in order."""
        docs_final: dict[bytes, bytes | None] = {}
        index_final: dict[bytes, bool] = {}
        for rec in records:
            index_final.update(dict.fromkeys(rec.index_deletes, False))
            index_final.update(dict.fromkeys(rec.index_puts, True))
            docs_final.update(dict.fromkeys(rec.doc_deletes))
            suffix = keys.ts_suffix(rec.ts)
            for key, packed in rec.doc_puts:
                docs_final[key] = packed + suffix
        return (
            [k for k, present in index_final.items() if not present],
            [(k, b"") for k, present in index_final.items() if present],
            [k for k, v in docs_final.items() if v is None],
            [(k, v) for k, v in docs_final.items() if v is not None],
        )

    def prune_log(self, before_ts: int) -> int:
        """Delete transaction-log entries older than ``before_ts``; return how many."""
        n = 0
        with self.write_lock, self.env.lmdb.begin(write=True) as txn, txn.cursor(db=self.env.dbs[keys.DB_LOG]) as cur:
            ok = cur.first()
            while ok and keys.log_ts(cur.key()) < before_ts:
                ok = cur.delete()
                n += 1
        return n

    # --- tables ----------------------------------------------------------------------

    def _load_catalog(self) -> Catalog:
        tables = {}
        with self.env.lmdb.begin(write=False) as txn, txn.cursor(db=self.env.dbs[keys.DB_TABLES]) as cur:
            for key, raw in cur:
                mount, name = keys.split_table_key(key)
                tables[(mount, name)] = TableInfo.from_record(mount, name, values.unpack(raw))
        return Catalog(tables)

    def define_table(self, mount: str, name: str, indexes: dict[str, list[str]], system: bool = False) -> TableInfo:
        """Create a table or bring its indexes to ``indexes``, backfilling new ones.

        Removed indexes are deleted with their entries.  Runs in one durable
        write transaction: on any error nothing changes.  ``system`` tables
        (``_scheduled``, ``_crons``) are the runtime's own, named with a ``_``.
        """
        check_index_spec(name, indexes, system)
        dbs = self.env.dbs
        with self.write_lock, self.env.lmdb.begin(write=True) as txn:
            meta = dbs[keys.DB_META]

            def next_number(counter: bytes) -> int:
                raw = txn.get(counter, db=meta)
                n = values.unpack(raw) if raw is not None else 1
                txn.put(counter, values.pack(n + 1), db=meta)
                return int(n)

            old = self.catalog.tables.get((mount, name))
            if old is None:
                ixs = {
                    keys.BY_ID: IndexInfo(keys.BY_ID, next_number(keys.META_NEXT_INDEX), ("_id",)),
                    keys.BY_CREATION_TIME: IndexInfo(keys.BY_CREATION_TIME, next_number(keys.META_NEXT_INDEX), ()),
                }
                table = TableInfo(mount, name, next_number(keys.META_NEXT_TABLE), ixs)
            else:
                table = old
            wanted = dict(table.indexes)
            for ix_name, ix in table.indexes.items():
                if ix_name not in keys.SYSTEM_INDEXES and tuple(indexes.get(ix_name, ())) != ix.fields:
                    self._drop_index_entries(txn, ix)
                    del wanted[ix_name]
            added = []
            for ix_name, fields in indexes.items():
                if ix_name not in wanted:
                    wanted[ix_name] = IndexInfo(ix_name, next_number(keys.META_NEXT_INDEX), tuple(fields))
                    added.append(wanted[ix_name])
            table = TableInfo(mount, name, table.number, wanted, read_only=False)
            if added and old is not None:
                self._backfill(txn, table, added)
            txn.put(keys.table_key(mount, name), values.pack(table.to_record()), db=dbs[keys.DB_TABLES])
        tables = dict(self.catalog.tables)
        tables[(mount, name)] = table
        self.catalog = Catalog(tables)
        return table

    def set_read_only(self, mount: str, read_only: bool) -> None:
        """Mark every table of ``mount`` read-only (unmounted) or writable again."""
        with self.write_lock, self.env.lmdb.begin(write=True) as txn:
            tables = dict(self.catalog.tables)
            for t in self.catalog.mount_tables(mount):
                nt = TableInfo(t.mount, t.name, t.number, t.indexes, read_only)
                txn.put(keys.table_key(t.mount, t.name), values.pack(nt.to_record()), db=self.env.dbs[keys.DB_TABLES])
                tables[(t.mount, t.name)] = nt
        self.catalog = Catalog(tables)

    def _drop_index_entries(self, txn: Any, index: IndexInfo) -> None:
        prefix = keys.index_prefix(index.number)
        with txn.cursor(db=self.env.dbs[keys.DB_INDEXES]) as cur:
            ok = cur.set_range(prefix)
            while ok and cur.key().startswith(prefix):
                ok = cur.delete()

    def _backfill(self, txn: Any, table: TableInfo, indexes: list[IndexInfo]) -> None:
        prefix = keys.table_documents_prefix(table.number)
        idx = self.env.dbs[keys.DB_INDEXES]
        with txn.cursor(db=self.env.dbs[keys.DB_DOCUMENTS]) as cur:
            ok = cur.set_range(prefix)
            while ok and cur.key().startswith(prefix):
                doc = keys.unpack_document(cur.value())[0]
                for ix in indexes:
                    txn.put(keys.index_entry_key(ix.number, keys.index_local_key(ix.fields, doc)), b"", db=idx)
                ok = cur.next()
