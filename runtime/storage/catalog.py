"""The tables registry: which tables each mount has, their numbers and indexes.

Table and index numbers are global and never reused, so an Id (which encodes
its table number) names exactly one mount's table forever.  The registry lives
in the ``tables`` sub-database; :class:`Catalog` is its immutable in-memory
copy, replaced wholesale when a deploy changes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import NotFoundError, ValidationError
from runtime.limits import FIELDS_PER_INDEX_MAX, INDEXES_PER_TABLE_MAX
from runtime.storage import keys

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class IndexInfo:
    """One index of a table: its global number and the fields it orders by."""

    name: str
    number: int
    fields: tuple[str, ...]


@dataclass(frozen=True)
class TableInfo:
    """One table of one mount."""

    mount: str
    name: str
    number: int
    indexes: dict[str, IndexInfo] = field(default_factory=dict)
    read_only: bool = False

    def index(self, name: str) -> IndexInfo:
        """The named index, or a NotFoundError listing the ones that exist."""
        try:
            return self.indexes[name]
        except KeyError:
            raise NotFoundError(
                f"table {self.name!r} of mount {self.mount or '(app)'!r} has no index {name!r}; "
                f"its indexes are {sorted(self.indexes)}"
            ) from None

    def user_indexes(self) -> list[IndexInfo]:
        """Every index whose entries are stored (all but ``by_id``)."""
        return [ix for ix in self.indexes.values() if ix.name != keys.BY_ID]

    def to_record(self) -> dict[str, Any]:
        """The msgpack-able form stored in the ``tables`` sub-database."""
        return {
            "number": self.number,
            "read_only": self.read_only,
            "indexes": {n: {"number": ix.number, "fields": list(ix.fields)} for n, ix in self.indexes.items()},
        }

    @classmethod
    def from_record(cls, mount: str, name: str, rec: dict[str, Any]) -> TableInfo:
        """Inverse of :meth:`to_record`."""
        indexes = {n: IndexInfo(n, int(d["number"]), tuple(d["fields"])) for n, d in rec["indexes"].items()}
        return cls(mount, name, int(rec["number"]), indexes, bool(rec.get("read_only", False)))


def check_index_spec(table: str, indexes: dict[str, list[str]], system: bool = False) -> None:
    """Refuse bad table/index names and field lists, naming the mistake.

    ``system``: a ``_name`` table of the runtime.
    """
    if not system and not _NAME.match(table):
        raise ValidationError(f"table name {table!r} must be an identifier of at most 64 characters, "
                              "not starting with '_'")
    if len(indexes) > INDEXES_PER_TABLE_MAX:
        raise ValidationError(f"table {table!r} declares {len(indexes)} indexes; at most {INDEXES_PER_TABLE_MAX}")
    for name, fields in indexes.items():
        if name in keys.SYSTEM_INDEXES:
            raise ValidationError(f"index name {name!r} of table {table!r} is reserved")
        if not _NAME.match(name):
            raise ValidationError(f"index name {name!r} of table {table!r} must be an identifier not starting with '_'")
        if not fields or len(fields) > FIELDS_PER_INDEX_MAX:
            raise ValidationError(f"index {name!r} of table {table!r} needs 1 to {FIELDS_PER_INDEX_MAX} fields")
        if len(set(fields)) != len(fields):
            raise ValidationError(f"index {name!r} of table {table!r} repeats a field")
        for f in fields:
            if not isinstance(f, str) or not _FIELD.match(f) or f.startswith("_"):
                raise ValidationError(f"index {name!r} of table {table!r}: {f!r} is not a user field path")


@dataclass(frozen=True)
class Catalog:
    """Immutable snapshot of the registry: lookups by (mount, name) and by number."""

    tables: dict[tuple[str, str], TableInfo] = field(default_factory=dict)

    def __post_init__(self) -> None:
        by_number = {t.number: t for t in self.tables.values()}
        by_index = {ix.number: t for t in self.tables.values() for ix in t.indexes.values()}
        object.__setattr__(self, "_by_number", by_number)
        object.__setattr__(self, "_by_index", by_index)

    def table(self, mount: str, name: str) -> TableInfo:
        """The table ``name`` of ``mount``, or NotFoundError."""
        try:
            return self.tables[(mount, name)]
        except KeyError:
            known = sorted(n for (m, n) in self.tables if m == mount)
            raise NotFoundError(f"mount {mount or '(app)'!r} has no table {name!r}; its tables are {known}") from None

    def by_number(self, number: int) -> TableInfo | None:
        """The table with this global number, if any."""
        return self._by_number.get(number)  # type: ignore[attr-defined,no-any-return]

    def table_of_index(self, number: int) -> TableInfo | None:
        """The table an index (by its global number) belongs to, if any."""
        return self._by_index.get(number)  # type: ignore[attr-defined,no-any-return]

    def mount_tables(self, mount: str) -> list[TableInfo]:
        """Every table of one mount, by name."""
        return sorted((t for (m, _), t in self.tables.items() if m == mount), key=lambda t: t.name)
