"""One Bulkhead transaction: a snapshot, a read set, a stack of write frames, limits.

Reads go through :meth:`Transaction._record` (the single choke point that
feeds the read set) and see the transaction's own pending writes.  Writes are
validated (value model, size, schema hook) when made and encoded once, so the
committer only concatenates bytes.  Every operation names the mount it runs in;
an Id or cursor of another mount is refused.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack

from runtime import values
from runtime.errors import IsolationError, LimitExceeded, NotFoundError, StorageError, ValidationError
from runtime.keycodec import successor
from runtime.limits import DEFAULT, Limits
from runtime.protocol import signing
from runtime.storage import Storage, keys
from runtime.storage.catalog import IndexInfo, TableInfo
from runtime.transactions.ranges import ALL, IndexPage, IndexRange
from runtime.transactions.readset import ReadSet
from runtime.transactions.writeset import PendingWrite, WriteFrames

SchemaHook = Callable[[str, str, dict[str, Any]], dict[str, Any]]
"""``(mount, table, document without system fields) -> document``; raise ValidationError to refuse."""


@dataclass
class Prepared:
    """What the committer needs of a finished transaction."""

    snapshot_ts: int
    read_set: ReadSet
    write_keys: dict[int, list[bytes]]
    """Old and new index-local keys of every write, per index number (the conflict keys)."""
    doc_puts: list[tuple[bytes, bytes]] = field(default_factory=list)
    """Document keys and their packed documents (the commit ts is appended at commit)."""
    doc_deletes: list[bytes] = field(default_factory=list)
    index_puts: list[bytes] = field(default_factory=list)
    index_deletes: list[bytes] = field(default_factory=list)
    log_value: bytes = b""
    tables: dict[int, str] = field(default_factory=dict)
    """Index number -> "mount/table" of every written index, to name a conflict."""
    meta_puts: list[tuple[bytes, bytes]] = field(default_factory=list)
    lane: object | None = None
    """The retry lane this transaction commits in (its reservation never bounces it), if any."""

    @property
    def is_read_only(self) -> bool:
        """Whether nothing was written."""
        return not self.write_keys and not self.meta_puts


class Transaction:
    """Reads and writes at one snapshot; see the module docstring."""

    def __init__(
        self,
        storage: Storage,
        *,
        now: float,
        limits: Limits = DEFAULT,
        schema_hook: SchemaHook | None = None,
        random_bytes: Callable[[int], bytes] | None = None,
    ) -> None:
        self.storage = storage
        self.catalog = storage.catalog
        self.snapshot = storage.snapshot()
        self.ts = self.snapshot.ts
        """The snapshot's commit timestamp."""
        self.now = now
        """Frozen time of the transaction, seconds since the epoch."""
        self.limits = limits
        self.schema_hook = schema_hook
        self._random_bytes = random_bytes
        self.reads = ReadSet()
        self.last_read: tuple[int, bytes, bytes] = (0, b"", b"")
        """The range the latest read recorded."""
        self.frames = WriteFrames()
        self._base: dict[str, dict[str, Any] | None] = {}
        self._creation_seq = itertools.count()
        self.scanned = 0
        self.bytes_read = 0
        self.bytes_written = 0
        self.docs_written = 0
        self._meta_puts: list[tuple[bytes, bytes]] = []

    # --- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Release the snapshot (idempotent)."""
        self.snapshot.close()

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def begin_nested(self) -> int:
        """Start a sub-transaction; return its token."""
        return self.frames.begin_nested()

    def commit_nested(self, token: int) -> None:
        """Merge a sub-transaction's writes into its parent."""
        self.frames.commit_nested(token)

    def rollback_nested(self, token: int) -> None:
        """Discard a sub-transaction's writes; its reads stay in the read set."""
        self.frames.rollback_nested(token)

    # --- limits ----------------------------------------------------------------------

    def _record(self, index_number: int, lo: bytes, hi: bytes) -> None:
        if self.reads.count >= self.limits.txn_index_ranges:
            raise LimitExceeded("txn_index_ranges", self.reads.count + 1, self.limits.txn_index_ranges)
        self.reads.add(index_number, lo, hi)
        self.last_read = (index_number, lo, hi)

    def _count_read(self, size: int) -> None:
        self.scanned += 1
        self.bytes_read += size
        if self.scanned > self.limits.txn_scanned_documents:
            raise LimitExceeded("txn_scanned_documents", self.scanned, self.limits.txn_scanned_documents)
        if self.bytes_read > self.limits.txn_read_bytes:
            raise LimitExceeded("txn_read_bytes", self.bytes_read, self.limits.txn_read_bytes)

    # --- reads -------------------------------------------------------------------------

    def table_of_id(self, mount: str, doc_id: object) -> TableInfo:
        """The table an Id names; an Id of another mount's table is refused (IsolationError)."""
        number = values.id_table(doc_id)
        table = self.catalog.by_number(number)
        if table is None:
            raise NotFoundError(f"Id {doc_id!r} names a table that does not exist")
        if table.mount != mount:
            raise IsolationError(
                f"Id {doc_id!r} belongs to a table of another mount; mount {mount or '(app)'!r} cannot use it"
            )
        return table

    def _stored(self, table: TableInfo, doc_id: str) -> dict[str, Any] | None:
        if doc_id not in self._base:
            doc, size = self.snapshot.get(table.number, doc_id)
            self._count_read(size)
            self._base[doc_id] = doc
        return self._base[doc_id]

    def get(self, mount: str, doc_id: str) -> dict[str, Any] | None:
        """The document with this Id as this transaction sees it, or None."""
        return self.get_in_table(mount, doc_id)[0]

    def get_in_table(self, mount: str, doc_id: str) -> tuple[dict[str, Any] | None, TableInfo]:
        """:meth:`get`, with the table the Id names (found once, for the caller too)."""
        table = self.table_of_id(mount, doc_id)
        key = keys.id_local_key(doc_id)
        self._record(table.indexes[keys.BY_ID].number, key, successor(key))
        pending = self.frames.lookup(doc_id)
        if pending is not None:
            return pending.doc, table
        return self._stored(table, doc_id), table

    def note_cached_reads(self, mount: str, reads: list[tuple[int, bytes, bytes, int, int]]) -> None:
        """Reads a worker answered from its cache, each ``(index number, lo, hi, documents, bytes)`` as the
        read itself reported it: into the read set and the read budget exactly as the read put them.  A range
        on an index of another mount is refused."""
        for number, lo, hi, docs, size in reads:
            table = self.catalog.table_of_index(number)
            if table is None or table.mount != mount:
                raise IsolationError(f"a cached read names index {number}, which is not one of mount "
                                     f"{mount or '(app)'!r}'s")
            self._record(number, lo, hi)
            self.scanned += max(0, docs - 1)
            self.bytes_read += max(0, size)
            self._count_read(0)

    def cache_report(self, before: tuple[int, int]) -> tuple[int, bytes, bytes, int, int]:
        """What the last read put in the read set and the budget since ``before`` (:meth:`budget`), for a
        worker's cache to report again when it answers the same read."""
        number, lo, hi = self.last_read
        return number, lo, hi, self.scanned - before[0], self.bytes_read - before[1]

    def budget(self) -> tuple[int, int]:
        """Documents and bytes read so far."""
        return self.scanned, self.bytes_read

    def table(self, mount: str, name: str) -> TableInfo:
        """A table of ``mount`` by name."""
        return self.catalog.table(mount, name)

    def scan(
        self,
        mount: str,
        table: str,
        index: str = keys.BY_CREATION_TIME,
        rng: IndexRange = ALL,
        order: str = "asc",
        limit: int | None = None,
        after: bytes | None = None,
    ) -> tuple[list[dict[str, Any]], bytes | None, bool]:
        """Read documents in index order, own writes included.

        Returns ``(documents, last_key, done)``: ``last_key`` is the index-local
        key of the last document returned (pass it as ``after`` to continue);
        ``done`` tells whether the range was exhausted.  Exactly the consumed
        part of the range enters the read set: up to the last document when
        ``limit`` stopped the scan, the whole (remaining) range otherwise.
        """
        if order not in ("asc", "desc"):
            raise ValidationError(f"order must be 'asc' or 'desc', not {order!r}")
        info = self.catalog.table(mount, table)
        ix = info.index(index)
        if ix.name == keys.BY_ID:
            raise ValidationError("query by_id with get(id), not with a range scan")
        lo, hi = rng.bounds(ix)
        reverse = order == "desc"
        if after is not None:
            if reverse:
                hi = min(hi, after)
            else:
                lo = max(lo, successor(after))
        docs: list[dict[str, Any]] = []
        last: bytes | None = None
        done = True
        if limit is not None and limit < 1:
            raise ValidationError(f"limit must be at least 1, not {limit!r}")
        for key, doc in self._merged(info, ix, lo, hi, reverse):
            docs.append(doc)
            last = key
            if limit is not None and len(docs) >= limit:
                done = False
                break
        if done or last is None:
            self._record(ix.number, lo, hi)
        elif reverse:
            self._record(ix.number, last, hi)
        else:
            self._record(ix.number, lo, successor(last))
        return docs, last, done

    def _merged(
        self, table: TableInfo, ix: IndexInfo, lo: bytes, hi: bytes, reverse: bool
    ) -> Iterator[tuple[bytes, dict[str, Any]]]:
        pending = self.frames.effective()
        overlay = []
        for _doc_id, w in pending.items():
            if w.doc is not None and w.table.number == table.number:
                key = keys.index_local_key(ix.fields, w.doc)
                if lo <= key < hi:
                    overlay.append((key, w.doc))
        overlay.sort(key=lambda kv: kv[0], reverse=reverse)
        j = 0
        for key, doc, size in self.snapshot.scan(table.number, ix, lo, hi, reverse):
            self._count_read(size)
            if doc["_id"] in pending:
                continue  # superseded by this transaction's own write
            while j < len(overlay) and ((overlay[j][0] < key) != reverse):
                yield overlay[j]
                j += 1
            yield key, doc
        yield from overlay[j:]

    def paginate(
        self,
        mount: str,
        table: str,
        index: str = keys.BY_CREATION_TIME,
        rng: IndexRange = ALL,
        order: str = "asc",
        cursor: str | None = None,
        num_items: int = 100,
    ) -> IndexPage:
        """One page of a query; the cursor is bound to this exact query and mount."""
        if not isinstance(num_items, int) or num_items < 1 or num_items > self.limits.page_size_items:
            raise ValidationError(f"num_items must be an int from 1 to {self.limits.page_size_items}, "
                                  f"not {num_items!r}")
        info = self.catalog.table(mount, table)
        ix = info.index(index)
        lo, hi = rng.bounds(ix)
        fingerprint = hashlib.sha256(msgpack.packb([mount, info.number, ix.number, lo, hi, order])).digest()[:16]
        after = self._open_cursor(cursor, fingerprint) if cursor else None
        if after == b"":  # the end marker: an exhausted query
            self._record(ix.number, lo, lo)
            return IndexPage([], True, cursor or "")
        docs, last, done = self.scan(mount, table, index, rng, order, num_items, after)
        if done:
            return IndexPage(docs, True, self._make_cursor(fingerprint, b""))
        assert last is not None
        return IndexPage(docs, False, self._make_cursor(fingerprint, last))

    def _cursor_key(self) -> bytes:
        return hashlib.sha256(b"cursors" + self.storage.cursor_secret).digest()

    def _make_cursor(self, fingerprint: bytes, position: bytes) -> str:
        return signing.sign(self._cursor_key(), [fingerprint, position])

    def _open_cursor(self, cursor: str, fingerprint: bytes) -> bytes:
        payload = signing.verify(self._cursor_key(), cursor, "pagination cursor") if isinstance(cursor, str) else None
        if not (isinstance(payload, list) and len(payload) == 2 and all(isinstance(p, bytes) for p in payload)):
            raise ValidationError(f"{str(cursor)[:32]!r} is not a cursor made by this deployment")
        made_for, position = payload
        if made_for != fingerprint:
            raise IsolationError("this cursor was made by a different query or mount; "
                                 "cursors work only for the query that made them")
        return bytes(position)

    # --- writes ----------------------------------------------------------------------------

    def _writable(self, table: TableInfo) -> None:
        if table.read_only:
            raise IsolationError(f"table {table.name!r} of unmounted component {table.mount!r} is read-only")

    def _checked(self, mount: str, table: TableInfo, doc: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise ValidationError(f"a document must be a dict, not {type(doc).__name__}")
        values.check_document_fields(doc)
        doc = values.check_value(doc, self.limits)
        if self.schema_hook is not None:
            doc = self.schema_hook(mount, table.name, doc)
        return doc

    def _put(self, table: TableInfo, doc_id: str, doc: dict[str, Any] | None) -> None:
        self.docs_written += 1
        if self.docs_written > self.limits.txn_written_documents:
            raise LimitExceeded("txn_written_documents", self.docs_written, self.limits.txn_written_documents)
        self.frames.put(doc_id, PendingWrite(table, doc))

    def _size(self, doc: dict[str, Any]) -> int:
        size = len(values.pack(doc))
        if size > self.limits.document_size_bytes:
            raise LimitExceeded("document_size_bytes", size, self.limits.document_size_bytes, "document")
        self.bytes_written += size
        if self.bytes_written > self.limits.txn_write_bytes:
            raise LimitExceeded("txn_write_bytes", self.bytes_written, self.limits.txn_write_bytes)
        return size

    def insert(self, mount: str, table: str, doc: dict[str, Any], doc_id: str | None = None) -> str:
        """Insert a document; return its new Id.

        ``doc_id``: an Id the caller minted (a worker buffering its inserts).  It must name this table and be
        new: the check reads it, so a concurrent insert of the same Id conflicts at commit.
        """
        info = self.catalog.table(mount, table)
        self._writable(info)
        body = self._checked(mount, info, doc)
        if doc_id is None:
            rnd = self._random_bytes(values.ID_RANDOM_BYTES) if self._random_bytes else None
            doc_id = values.make_id(info.number, self.now, rnd)
        else:
            if values.id_table(doc_id) != info.number:
                raise ValidationError(f"Id {doc_id!r} does not name a document of table {table!r}")
            key = keys.id_local_key(doc_id)
            self._record(info.indexes[keys.BY_ID].number, key, successor(key))
            if self.frames.lookup(doc_id) is not None or self._stored(info, doc_id) is not None:
                raise ValidationError(f"Id {doc_id!r} is already in use: an insert needs a new Id")
        full = {**body, "_id": doc_id, "_creation_time": self.now + next(self._creation_seq) * 1e-6}
        self._size(full)
        self._base[doc_id] = None
        self._put(info, doc_id, full)
        return doc_id

    def _existing(self, mount: str, doc_id: str, verb: str) -> tuple[TableInfo, dict[str, Any]]:
        current = self.get(mount, doc_id)
        if current is None:
            raise NotFoundError(f"cannot {verb} {doc_id!r}: no such document")
        table = self.table_of_id(mount, doc_id)
        self._writable(table)
        return table, current

    def patch(self, mount: str, doc_id: str, fields: dict[str, Any]) -> None:
        """Shallow-merge ``fields`` into a document."""
        table, current = self._existing(mount, doc_id, "patch")
        if not isinstance(fields, dict):
            raise ValidationError(f"patch fields must be a dict, not {type(fields).__name__}")
        body = {k: v for k, v in current.items() if not k.startswith("_")}
        body.update(fields)
        self._replace_body(mount, table, current, body)

    def replace(self, mount: str, doc_id: str, doc: dict[str, Any]) -> None:
        """Replace a document's user fields entirely."""
        table, current = self._existing(mount, doc_id, "replace")
        self._replace_body(mount, table, current, doc)

    def _replace_body(self, mount: str, table: TableInfo, current: dict[str, Any], body: dict[str, Any]) -> None:
        body = self._checked(mount, table, body)
        full = {**body, "_id": current["_id"], "_creation_time": current["_creation_time"]}
        self._size(full)
        self._put(table, current["_id"], full)

    def delete(self, mount: str, doc_id: str) -> None:
        """Delete a document."""
        table, current = self._existing(mount, doc_id, "delete")
        self._put(table, current["_id"], None)

    def has_writes(self) -> bool:
        """Whether committing this transaction would write anything (documents or metadata)."""
        return bool(self._meta_puts) or bool(self.frames.effective())

    def meta_put(self, name: str, value: Any) -> None:
        """Write a coordinator-owned meta value in this transaction (idempotency records)."""
        self._meta_puts.append((name.encode(), values.pack(value)))

    # --- commit preparation ------------------------------------------------------------------

    def prepare(self) -> Prepared:
        """Encode everything the committer writes; the transaction stays open for reads."""
        if self.frames.depth:
            raise StorageError("cannot commit with a sub-transaction still open")
        prepared = Prepared(self.ts, self.reads, {}, meta_puts=list(self._meta_puts))
        wk = prepared.write_keys
        packer = msgpack.Packer(use_bin_type=True)
        log_parts: list[bytes] = []
        for doc_id, w in self.frames.effective().items():
            old = self._base.get(doc_id)
            new = w.doc
            if old is None and new is None:
                continue  # inserted and deleted again: nothing happened
            table = w.table
            id_ix = table.indexes[keys.BY_ID].number
            wk.setdefault(id_ix, []).append(keys.id_local_key(doc_id))
            prepared.tables[id_ix] = f"{table.mount}/{table.name}" if table.mount else table.name
            for ix in table.user_indexes():
                old_key = keys.index_local_key(ix.fields, old) if old is not None else None
                new_key = keys.index_local_key(ix.fields, new) if new is not None else None
                bucket = wk.setdefault(ix.number, [])
                prepared.tables[ix.number] = prepared.tables[id_ix]
                if old_key == new_key:
                    # The entry stays where it is, but the document it points at changed: whoever read
                    # this key through the index read the old document, so the key is a conflict key.
                    bucket.append(old_key)  # type: ignore[arg-type]
                    continue
                if old_key is not None:
                    bucket.append(old_key)
                    prepared.index_deletes.append(keys.index_entry_key(ix.number, old_key))
                if new_key is not None:
                    bucket.append(new_key)
                    prepared.index_puts.append(keys.index_entry_key(ix.number, new_key))
            dkey = keys.document_key(table.number, doc_id)
            if new is None:
                prepared.doc_deletes.append(dkey)
                packed = packer.pack(None)
            else:
                packed = packer.pack(new)
                prepared.doc_puts.append((dkey, packed))
            log_parts.append(packer.pack_array_header(3) + packer.pack(table.number) + packer.pack(doc_id) + packed)
        prepared.log_value = packer.pack_array_header(len(log_parts)) + b"".join(log_parts)
        return prepared
