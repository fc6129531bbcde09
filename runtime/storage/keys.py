"""The LMDB keyspace: every sub-database and every key layout, in one place.

No other module builds LMDB keys by hand; they call the functions here.

=============  ==============================================  ==========================================
sub-database   key                                             value (msgpack)
=============  ==============================================  ==========================================
``meta``       ASCII name (see ``META_*``)                     any value
``tables``     mount path, ``0x00``, table name (UTF-8)        table info: number, indexes {name: number, fields}
``documents``  table number (u32 BE), Id (ASCII)               document, then its commit ts (u64 BE)
``indexes``    index number (u32 BE), index-local key          empty
``log``        commit timestamp (u64 BE)                       write set ``[[table, id, document or None], ...]``
=============  ==============================================  ==========================================

An *index-local key* is what read sets and conflict checks compare (the index
number is kept beside it, not inside it): for ``by_id`` it is ``encode(id)``;
for every other index ``encode_tuple(field values) + encode(_creation_time) +
encode(_id)``, so every index order is total.
"""

from __future__ import annotations

import struct
from typing import Any

from runtime.keycodec import MISSING, encode, encode_tuple
from runtime.values import unpack

DB_META = b"meta"
DB_TABLES = b"tables"
DB_DOCUMENTS = b"documents"
DB_INDEXES = b"indexes"
DB_LOG = b"log"
ALL_DBS = (DB_META, DB_TABLES, DB_DOCUMENTS, DB_INDEXES, DB_LOG)

META_FORMAT = b"format_version"
META_LAST_TS = b"last_commit_ts"
META_NEXT_TABLE = b"next_table_number"
META_NEXT_INDEX = b"next_index_number"
META_CURSOR_SECRET = b"cursor_secret"
META_USER_PREFIX = b"user:"
"""Keys under this prefix belong to the coordinator (mounts, deployments, sessions)."""

FORMAT_VERSION = 1

BY_ID = "by_id"
BY_CREATION_TIME = "by_creation_time"
SYSTEM_INDEXES = (BY_ID, BY_CREATION_TIME)

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def table_key(mount: str, table: str) -> bytes:
    """Key of a table's registry entry."""
    return mount.encode("utf-8") + b"\x00" + table.encode("utf-8")


def split_table_key(key: bytes) -> tuple[str, str]:
    """Inverse of :func:`table_key`."""
    mount, _, table = bytes(key).partition(b"\x00")
    return mount.decode("utf-8"), table.decode("utf-8")


def document_key(table_number: int, doc_id: str) -> bytes:
    """Key of a document."""
    return _U32.pack(table_number) + doc_id.encode("ascii")


def table_documents_prefix(table_number: int) -> bytes:
    """Prefix of every document key of a table."""
    return _U32.pack(table_number)


def index_prefix(index_number: int) -> bytes:
    """Prefix of every entry of one index."""
    return _U32.pack(index_number)


def index_entry_key(index_number: int, local_key: bytes) -> bytes:
    """Full key of one index entry."""
    return _U32.pack(index_number) + local_key


def id_local_key(doc_id: str) -> bytes:
    """Index-local key of a document on ``by_id``."""
    return encode(doc_id)


def field_value(doc: dict[str, Any], path: str) -> Any:
    """Value at a dotted ``path`` of a document, or :data:`MISSING`."""
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def index_local_key(fields: list[str] | tuple[str, ...], doc: dict[str, Any]) -> bytes:
    """Index-local key of a document on an index over ``fields`` (empty for ``by_creation_time``)."""
    return encode_tuple([field_value(doc, f) for f in fields]) + encode(doc["_creation_time"]) + encode(doc["_id"])


def log_key(commit_ts: int) -> bytes:
    """Key of a transaction-log entry."""
    return _U64.pack(commit_ts)


def log_ts(key: bytes) -> int:
    """Commit timestamp of a transaction-log key."""
    return int(_U64.unpack(bytes(key))[0])


def ts_suffix(commit_ts: int) -> bytes:
    """What follows a document's msgpack bytes in its stored form: the commit ts that wrote it."""
    return _U64.pack(commit_ts)


def unpack_document(raw: bytes) -> tuple[dict[str, Any], int]:
    """Split a stored document (msgpack bytes + :func:`ts_suffix`): ``(document, commit_ts)``."""
    return unpack(raw[:-8]), int(_U64.unpack(raw[-8:])[0])
