"""Order-preserving encoding of values into index-key bytes.

``encode(a) < encode(b)`` (as bytes) exactly when ``a`` sorts before ``b`` in the
value order of DESIGN.md::

    missing < None < numbers < bool < str < bytes < list < dict

* Numbers compare by exact value, ints and floats together, as Python compares
  them (``1 < 1.5 < 2``, also for ints beyond 2**53).  An int and an equal float
  tie-break int first.  ``-0.0`` keys as ``0.0``.  NaN sorts after every number.
* bool has its own rank (after every number) although Python treats it as int.
* str compares by code point (UTF-8 byte order), bytes by byte.
* lists compare element-wise, a prefix first; dicts compare as the list of their
  ``(key, value)`` items sorted by key (so equal dicts key equally).

Every encoding is self-delimiting (fixed width, or escaped and terminated), so
the concatenation of several encoded fields is itself order-preserving, and
``encode(v)`` followed by any continuation stays below ``encode(v) + b"\\xff"``
— the property index range bounds rely on.

Layout of a number: ``0x30, sub`` then for finite non-zero values a 2-byte
biased binary exponent and an 8-byte left-aligned mantissa fraction (bitwise
inverted for negatives), then one byte: 0 for int, 1 for float.
"""

from __future__ import annotations

import math
import struct
from typing import Any

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
"""Stands for an absent field in an index key; sorts before every value."""

T_MISSING = 0x10
T_NONE = 0x20
T_NUMBER = 0x30
T_BOOL = 0x40
T_STR = 0x50
T_BYTES = 0x60
T_LIST = 0x70
T_DICT = 0x80
END = 0x00
ENTRY = 0x01

N_NEG_INF, N_NEG, N_ZERO, N_POS, N_POS_INF, N_NAN = 1, 2, 3, 4, 5, 6
_EXP_BIAS = 1100  # leading-bit positions run from -1073 (subnormals) to 1024
_FRAC_MASK = (1 << 64) - 1
_KIND_INT, _KIND_FLOAT = 0, 1
_NUM = struct.Struct(">BBHQB")


def _escape(raw: bytes) -> bytes:
    return raw.replace(b"\x00", b"\x00\xff") + b"\x00"


def _number(x: int | float) -> bytes:
    kind = _KIND_FLOAT if isinstance(x, float) else _KIND_INT
    if kind == _KIND_FLOAT:
        if math.isnan(x):
            return bytes((T_NUMBER, N_NAN, kind))
        if math.isinf(x):
            return bytes((T_NUMBER, N_POS_INF if x > 0 else N_NEG_INF, kind))
    if x == 0:
        return bytes((T_NUMBER, N_ZERO, kind))
    mag = -x if x < 0 else x
    if kind == _KIND_INT:
        lead = int(mag).bit_length()
        frac = (int(mag) - (1 << (lead - 1))) << (65 - lead)
    else:
        m, lead = math.frexp(mag)  # mag = m * 2**lead, 0.5 <= m < 1
        frac = (int(m * (1 << 53)) - (1 << 52)) << 12
    exp = lead + _EXP_BIAS
    if x < 0:
        return _NUM.pack(T_NUMBER, N_NEG, 0xFFFF - exp, _FRAC_MASK ^ frac, kind)
    return _NUM.pack(T_NUMBER, N_POS, exp, frac, kind)


def encode(value: Any) -> bytes:
    """Encode one value (or :data:`MISSING`) as order-preserving bytes."""
    out = bytearray()
    _encode_into(value, out)
    return bytes(out)


def encode_tuple(values: list[Any] | tuple[Any, ...]) -> bytes:
    """Encode several values one after another (an index key's fields)."""
    out = bytearray()
    for v in values:
        _encode_into(v, out)
    return bytes(out)


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
        out.append(END)
    elif isinstance(value, dict):
        out.append(T_DICT)
        for key in sorted(value):
            out.append(ENTRY)
            out += _escape(key.encode("utf-8"))
            _encode_into(value[key], out)
        out.append(END)
    elif value is MISSING:
        out.append(T_MISSING)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} in an index key")


def decode(data: bytes) -> Any:
    """Decode bytes made by :func:`encode` (exactly one value)."""
    value, pos = _decode_at(data, 0)
    if pos != len(data):
        raise ValueError("trailing bytes after an encoded value")
    return value


def decode_tuple(data: bytes) -> list[Any]:
    """Decode a concatenation made by :func:`encode_tuple`."""
    values, pos = [], 0
    while pos < len(data):
        value, pos = _decode_at(data, pos)
        values.append(value)
    return values


def _unescape(data: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    while True:
        end = data.index(b"\x00", pos)
        out += data[pos:end]
        if end + 1 < len(data) and data[end + 1] == 0xFF:
            out.append(0)
            pos = end + 2
        else:
            return bytes(out), end + 1


def _decode_at(data: bytes, pos: int) -> tuple[Any, int]:
    tag = data[pos]
    pos += 1
    if tag == T_NONE:
        return None, pos
    if tag == T_MISSING:
        return MISSING, pos
    if tag == T_BOOL:
        return data[pos] == 1, pos + 1
    if tag == T_STR:
        raw, pos = _unescape(data, pos)
        return raw.decode("utf-8"), pos
    if tag == T_BYTES:
        return _unescape(data, pos)
    if tag == T_LIST:
        items = []
        while data[pos] != END:
            item, pos = _decode_at(data, pos)
            items.append(item)
        return items, pos + 1
    if tag == T_DICT:
        obj = {}
        while data[pos] != END:
            raw, pos = _unescape(data, pos + 1)
            obj[raw.decode("utf-8")], pos = _decode_at(data, pos)
        return obj, pos + 1
    if tag == T_NUMBER:
        return _decode_number(data, pos)
    raise ValueError(f"unknown key tag 0x{tag:02x} at {pos - 1}")


def _decode_number(data: bytes, pos: int) -> tuple[Any, int]:
    sub = data[pos]
    if sub in (N_NAN, N_POS_INF, N_NEG_INF, N_ZERO):
        kind = data[pos + 1]
        special = {N_NAN: math.nan, N_POS_INF: math.inf, N_NEG_INF: -math.inf, N_ZERO: 0.0}[sub]
        return (0 if sub == N_ZERO and kind == _KIND_INT else special), pos + 2
    _, _, exp, frac, kind = _NUM.unpack_from(data, pos - 1)
    if sub == N_NEG:
        exp, frac = 0xFFFF - exp, _FRAC_MASK ^ frac
    lead = exp - _EXP_BIAS
    if kind == _KIND_INT:
        mag: int | float = (1 << (lead - 1)) + (frac >> (65 - lead))
    else:
        mag = math.ldexp((1 << 52) + (frac >> 12), lead - 53)
    return (-mag if sub == N_NEG else mag), pos + _NUM.size - 1


def successor(key: bytes) -> bytes:
    """The smallest byte string greater than ``key`` (turns inclusive bounds exclusive)."""
    return key + b"\x00"


def prefix_end(prefix: bytes) -> bytes:
    """An exclusive upper bound above every key that extends the encoded fields ``prefix``."""
    return prefix + b"\xff"
