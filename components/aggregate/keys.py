"""Item positions and bounds as order-preserving bytes (pure; no I/O).

An aggregate item is ``(key, id, sum_value)``.  Its *position* is
``encode(key) + encode(id)``: the bytes of the key followed by the bytes of
the id.  Encodings are self-delimiting, so comparing positions as bytes
compares ``(key, id)`` pairs — ties on key broken by id — in the value order
of DESIGN.md::

    missing < None < numbers < bool < str < bytes < list < dict

:func:`encode` is ``runtime.values.order_key``: the very encoding index keys
use (a property test pins that they agree).

Bounds (see :func:`bounds_range`) become one half-open byte range
``[lo, hi)`` (``None`` = unbounded):

- ``{"lower": {"key", "id"?, "inclusive"}, "upper": {...}}`` — without an id a
  bound covers every id of that key (inclusive) or none of them (exclusive);
- ``{"prefix": [k1, ...]}`` — tuple (list) keys starting with these elements;
- ``{"eq": key}`` — exactly this key, any id.
"""


from typing import Any

from runtime.values import order_key, order_list_prefix

ABOVE = b"\xff"
"""Appended to an encoded prefix: sorts after every continuation of it (no tag is 0xff)."""

Range = tuple[bytes | None, bytes | None]
"""``(lo, hi)``: positions ``p`` with ``lo <= p < hi``; ``None`` leaves that side open."""


def _checked(what: Any, fn: Any, *args: Any) -> bytes:
    try:
        return fn(*args)  # type: ignore[no-any-return]
    except TypeError:
        raise TypeError(f"an aggregate key cannot hold {what!r}") from None


def encode(value: Any) -> bytes:
    """Order-preserving bytes of one value."""
    return _checked(value, order_key, value)


def position(key: Any, id: Any) -> bytes:
    """The position of item ``(key, id)``: ordered by key, then by id."""
    return _checked((key, id), order_key, key, id)


def key_start(key: Any) -> bytes:
    """Lowest position of any item with this key (below every id)."""
    return encode(key)


def key_end(key: Any) -> bytes:
    """Just above every position with this key."""
    return encode(key) + ABOVE


def prefix_start(prefix: list[Any]) -> bytes:
    """Lowest position of a list key starting with the elements ``prefix``."""
    return _checked(prefix, order_list_prefix, list(prefix))


def _bound(b: dict[str, Any], lower: bool) -> bytes:
    if not isinstance(b, dict) or "key" not in b:
        raise ValueError(f"a {'lower' if lower else 'upper'} bound is "
                         f"{{'key': ..., 'id'?: ..., 'inclusive': bool}}, not {b!r}")
    inclusive = b.get("inclusive", True)
    if not isinstance(inclusive, bool):
        raise ValueError(f"bound 'inclusive' must be a bool, not {inclusive!r}")
    if "id" in b and b["id"] is not None:
        p = position(b["key"], b["id"])
        # p + b"\x00" is the least byte string above p; no position lies strictly between
        return p if lower == inclusive else p + b"\x00"
    return key_start(b["key"]) if lower == inclusive else key_end(b["key"])


def bounds_range(bounds: dict[str, Any] | None) -> Range:
    """Turn a bounds object into ``(lo, hi)`` (see the module docstring)."""
    if not bounds:
        return None, None
    if not isinstance(bounds, dict):
        raise ValueError(f"bounds must be a dict, not {type(bounds).__name__}")
    unknown = set(bounds) - {"lower", "upper", "prefix", "eq"}
    if unknown:
        raise ValueError(f"unknown bounds field(s) {sorted(unknown)}: use lower/upper, prefix or eq")
    if "prefix" in bounds:
        if set(bounds) != {"prefix"}:
            raise ValueError("prefix bounds cannot be combined with lower/upper/eq")
        prefix = bounds["prefix"]
        if not isinstance(prefix, (list, tuple)):
            raise ValueError(f"a prefix is a list of the leading key elements, not {prefix!r}")
        start = prefix_start(list(prefix))
        return start, start + ABOVE
    if "eq" in bounds:
        if set(bounds) != {"eq"}:
            raise ValueError("eq bounds cannot be combined with lower/upper/prefix")
        return key_start(bounds["eq"]), key_end(bounds["eq"])
    lo = _bound(bounds["lower"], True) if bounds.get("lower") is not None else None
    hi = _bound(bounds["upper"], False) if bounds.get("upper") is not None else None
    return lo, hi


def intersect(a: Range, b: Range) -> Range:
    """The intersection of two ranges."""
    lo = a[0] if b[0] is None else b[0] if a[0] is None else max(a[0], b[0])
    hi = a[1] if b[1] is None else b[1] if a[1] is None else min(a[1], b[1])
    return lo, hi


def is_empty(r: Range) -> bool:
    """Whether no position can lie in ``r``."""
    return r[0] is not None and r[1] is not None and r[0] >= r[1]
