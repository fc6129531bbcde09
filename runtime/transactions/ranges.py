"""Index range expressions and their translation into index-local key bounds.

A range is zero or more ``eq`` on a prefix of the index fields, in order, then at
most one lower bound (``gt``/``gte``) and one upper bound (``lt``/``lte``) on the
next field.  Any other shape is refused with an error that says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import ValidationError
from runtime.keycodec import encode, encode_tuple, prefix_end
from runtime.storage.catalog import IndexInfo
from runtime.values import check_value

LOWER_OPS = ("gt", "gte")
UPPER_OPS = ("lt", "lte")


@dataclass(frozen=True)
class IndexRange:
    """A range over an index, in field terms."""

    eq: tuple[tuple[str, Any], ...] = ()
    lower: tuple[str, str, Any] | None = None
    """``(op, field, value)`` with op ``gt`` or ``gte``."""
    upper: tuple[str, str, Any] | None = None
    """``(op, field, value)`` with op ``lt`` or ``lte``."""

    @classmethod
    def from_ops(cls, ops: Sequence[Sequence[Any]]) -> IndexRange:
        """Build from a list of ``(op, field, value)`` as the worker's query builder sends them."""
        eq: list[tuple[str, Any]] = []
        lower = upper = None
        for op, fld, value in ops:
            if op == "eq":
                if lower or upper:
                    raise ValidationError(f"index range: eq({fld!r}) must come before the bounds")
                eq.append((fld, value))
            elif op in LOWER_OPS:
                if lower:
                    raise ValidationError("index range: at most one lower bound (gt/gte)")
                lower = (op, fld, value)
            elif op in UPPER_OPS:
                if upper:
                    raise ValidationError("index range: at most one upper bound (lt/lte)")
                upper = (op, fld, value)
            else:
                raise ValidationError(f"index range: unknown operator {op!r} (use eq, gt, gte, lt, lte)")
        return cls(tuple(eq), lower, upper)

    def bounds(self, index: IndexInfo) -> tuple[bytes, bytes]:
        """The half-open ``[lo, hi)`` of index-local keys this range covers."""
        fields = index.fields
        for i, (fld, value) in enumerate(self.eq):
            if i >= len(fields) or fields[i] != fld:
                raise ValidationError(
                    f"index range on {index.name!r}: eq({fld!r}) is not field {i + 1} of the index; "
                    f"its fields, in order, are {list(fields)}"
                )
            check_value(value)
        prefix = encode_tuple([v for _, v in self.eq])
        lo, hi = prefix, prefix_end(prefix)
        nxt = len(self.eq)
        for bound in (self.lower, self.upper):
            if bound is None:
                continue
            op, fld, value = bound
            if nxt >= len(fields) or fields[nxt] != fld:
                want = fields[nxt] if nxt < len(fields) else "nothing (every field is fixed by eq)"
                raise ValidationError(
                    f"index range on {index.name!r}: {op}({fld!r}) must be on the field after the eq prefix: {want!r}"
                )
            check_value(value)
            key = prefix + encode(value)
            if op == "gt":
                lo = prefix_end(key)
            elif op == "gte":
                lo = key
            elif op == "lt":
                hi = key
            else:
                hi = prefix_end(key)
        return lo, hi

    def describe(self) -> list[list[Any]]:
        """The ops form (inverse of :meth:`from_ops`)."""
        ops: list[list[Any]] = [["eq", f, v] for f, v in self.eq]
        ops += [list(b) for b in (self.lower, self.upper) if b is not None]
        return ops


ALL = IndexRange()
"""The whole index."""


@dataclass
class IndexPage:
    """One page of a paginated index range, as the transaction reads it (ctx sees it as :class:`runtime.Page`)."""

    page: list[dict[str, Any]]
    is_done: bool
    continue_cursor: str
    extra: dict[str, Any] = field(default_factory=dict)
