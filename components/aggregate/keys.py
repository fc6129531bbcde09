"""Item positions and bounds as order-preserving bytes (pure; no I/O).

An aggregate item is ``(key, id, sum_value)``.  Its *position* is
``encode(key) + encode(id)``: the bytes of the key followed by the bytes of
the id.  Encodings are self-delimiting, so comparing positions as bytes
compares ``(key, id)`` pairs — ties on key broken by id — in the value order
of DESIGN.md::

    missing < None < numbers < bool < str < bytes < list < dict

:func:`encode` produces exactly the bytes of ``runtime.storage.keycodec.encode``
(a property test pins that), re-implemented here because component code may
not import ``runtime.storage``.

Bounds (see :func:`bounds_range`) become one half-open byte range
``[lo, hi)`` (``None`` = unbounded):

- ``{"lower": {"key", "id"?, "inclusive"}, "upper": {...}}`` — without an id a
  bound covers every id of that key (inclusive) or none of them (exclusive);
- ``{"prefix": [k1, ...]}`` — tuple (list) keys starting with these elements;
- ``{"eq": key}`` — exactly this key, any id.
"""


import math
import struct
from typing import Any

T_NONE, T_NUMBER, T_BOOL, T_STR, T_BYTES, T_LIST, T_DICT = 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80
_END, _ENTRY = 0x00, 0x01
_N_NEG_INF, _N_NEG, _N_ZERO, _N_POS, _N_POS_INF, _N_NAN = 1, 2, 3, 4, 5, 6
_EXP_BIAS = 1100
_FRAC_MASK = (1 << 64) - 1
_NUM = struct.Struct(">BBHQB")

ABOVE = b"\xff"
"""Appended to an encoded prefix: sorts after every continuation of it (no tag is 0xff)."""

Range = tuple[bytes | None, bytes | None]
"""``(lo, hi)``: positions ``p`` with ``lo <= p < hi``; ``None`` leaves that side open."""


def _escape(raw: bytes) -> bytes:
    return raw.replace(b"\x00", b"\x00\xff") + b"\x00"


def _number(x: int | float) -> bytes:
    kind = 1 if isinstance(x, float) else 0
    if kind:
        if math.isnan(x):
            return bytes((T_NUMBER, _N_NAN, kind))
        if math.isinf(x):
            return bytes((T_NUMBER, _N_POS_INF if x > 0 else _N_NEG_INF, kind))
    if x == 0:
        return bytes((T_NUMBER, _N_ZERO, kind))
    mag = -x if x < 0 else x
    if kind == 0:
        lead = int(mag).bit_length()
        frac = (int(mag) - (1 << (lead - 1))) << (65 - lead)
    else:
        m, lead = math.frexp(mag)
        frac = (int(m * (1 << 53)) - (1 << 52)) << 12
    exp = lead + _EXP_BIAS
    if x < 0:
        return _NUM.pack(T_NUMBER, _N_NEG, 0xFFFF - exp, _FRAC_MASK ^ frac, kind)
    return _NUM.pack(T_NUMBER, _N_POS, exp, frac, kind)


def _encode_into(value: Any, out: bytearray) -> None:
    if value is None:
        out.append(T_NONE)
    elif value is True or value is False:
        out += bytes((T_BOOL, 1 if value else 0))
    elif isinstance(value, (int, float)):
        out += _number(value)
    elif isinstance(value, str):
        out.append(T_STR)
        out += _escape(value.encode("utf-8"))
    elif isinstance(value, (bytes, bytearray)):
        out.append(T_BYTES)
        out += _escape(bytes(value))
    elif isinstance(value, (list, tuple)):
        out.append(T_LIST)
        for item in value:
            _encode_into(item, out)
        out.append(_END)
    elif isinstance(value, dict):
        out.append(T_DICT)
        for key in sorted(value):
            out.append(_ENTRY)
            out += _escape(key.encode("utf-8"))
            _encode_into(value[key], out)
        out.append(_END)
    else:
        raise TypeError(f"an aggregate key cannot hold a {type(value).__name__} ({value!r})")


def encode(value: Any) -> bytes:
    """Order-preserving bytes of one value."""
    out = bytearray()
    _encode_into(value, out)
    return bytes(out)


def position(key: Any, id: Any) -> bytes:
    """The position of item ``(key, id)``: ordered by key, then by id."""
    out = bytearray()
    _encode_into(key, out)
    _encode_into(id, out)
    return bytes(out)


def key_start(key: Any) -> bytes:
    """Lowest position of any item with this key (below every id)."""
    return encode(key)


def key_end(key: Any) -> bytes:
    """Just above every position with this key."""
    return encode(key) + ABOVE


def prefix_start(prefix: list[Any]) -> bytes:
    """Lowest position of a list key starting with the elements ``prefix``."""
    out = bytearray((T_LIST,))
    for item in prefix:
        _encode_into(item, out)
    return bytes(out)


def _bound(b: dict[str, Any], lower: bool) -> bytes:
    if not isinstance(b, dict) or "key" not in b:
        raise ValueError(f"a {'lower' if lower else 'upper'} bound is {{'key': ..., 'id'?: ..., 'inclusive': bool}}, not {b!r}")
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
