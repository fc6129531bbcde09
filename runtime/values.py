"""The document value model, Ids, and the msgpack codec for stored values.

A *value* is ``None``, ``bool``, a 64-bit ``int``, ``float``, ``str`` (valid
Unicode), ``bytes``, ``list`` of values, or ``dict`` with ``str`` keys.  Tuples
are accepted on the way in and stored as lists.  Ids are plain strings.

:func:`check_value` enforces the value limits of :mod:`runtime.limits` and
raises :class:`~runtime.errors.LimitExceeded` or
:class:`~runtime.errors.ValidationError` naming the path of the offending part.
:func:`pack` / :func:`unpack` are the only msgpack calls for stored values;
decoding always passes explicit ``max_*_len`` limits and accepts no ext types.

An :class:`Id` encodes the number of the table it belongs to, so an Id handed to
another mount (whose tables have other numbers) is recognised and refused.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
from typing import Any

import msgpack

from runtime.errors import LimitExceeded, ValidationError
from runtime.limits import DEFAULT, Limits

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

MAX_CONTAINER_ITEMS = 1_000_000
"""Most elements in one decoded msgpack list or entries in one map (frames and stored values alike)."""

SYSTEM_FIELDS = ("_id", "_creation_time")
"""Top-level fields every stored document carries; user fields may not start with ``_``."""


# --- Ids ---------------------------------------------------------------------

_ID_TIME_BYTES = 6
ID_RANDOM_BYTES = 6
_ID_CHECK_BYTES = 2
_ID_RAW_BYTES = 4 + _ID_TIME_BYTES + ID_RANDOM_BYTES + _ID_CHECK_BYTES
ID_LENGTH = len(base64.b32encode(b"\0" * _ID_RAW_BYTES).rstrip(b"="))
"""Every Id string has exactly this many characters (lower-case base32)."""


def _id_check(body: bytes) -> bytes:
    return hashlib.blake2s(body, digest_size=_ID_CHECK_BYTES).digest()


def make_id(table_number: int, now_s: float, random_bytes: bytes | None = None) -> str:
    """Mint a new Id for a document of table ``table_number`` inserted at time ``now_s``.

    Layout: table number (4 bytes), milliseconds since the epoch (6 bytes),
    random (6 bytes), checksum (2 bytes), as lower-case base32.  The time prefix
    makes consecutive inserts land next to each other in the documents B-tree
    (far fewer dirty pages per commit than random keys); the random part keeps
    Ids unguessable-ish and unique (48 bits within one millisecond).
    """
    rnd = os.urandom(ID_RANDOM_BYTES) if random_bytes is None else random_bytes
    if len(rnd) != ID_RANDOM_BYTES:
        raise ValueError(f"an Id needs {ID_RANDOM_BYTES} random bytes")
    millis = max(0, int(now_s * 1000)) & ((1 << 48) - 1)
    body = table_number.to_bytes(4, "big") + millis.to_bytes(_ID_TIME_BYTES, "big") + rnd
    return base64.b32encode(body + _id_check(body)).decode("ascii").rstrip("=").lower()


_B32_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_AS_INT_DIGITS = str.maketrans(_B32_ALPHABET, "0123456789abcdefghijklmnopqrstuv")
"""Our base32 spelling as the digits ``int(s, 32)`` reads: an Id's characters become one integer in C."""
_ID_SHAPE = re.compile(f"[{_B32_ALPHABET[:26]}{_B32_ALPHABET[26:]}]{{{ID_LENGTH}}}")
_SPARE_BITS = ID_LENGTH * 5 - _ID_RAW_BYTES * 8
"""Bits the last character carries beyond the Id's bytes: zero in the one canonical spelling."""
ID_CACHE_ENTRIES = 4096
"""Valid Ids whose table number is remembered (a get or replace names one Id 2-4 times)."""


def id_table(value: object) -> int:
    """Return the table number encoded in an Id, or raise ValidationError if it is not one.

    A pure function of the string, so recent answers are cached: only the first
    look at an Id parses it.
    """
    if not isinstance(value, str) or len(value) != ID_LENGTH:
        raise ValidationError(f"{value!r} is not a document Id", issues=[{"path": "", "error": "not an Id"}])
    return _table_number(value)


@functools.lru_cache(maxsize=ID_CACHE_ENTRIES)
def _table_number(value: str) -> int:
    lower = value.lower()
    if _ID_SHAPE.fullmatch(lower) is None:
        raise ValidationError(f"{value!r} is not a document Id", issues=[{"path": "", "error": "not an Id"}])
    bits = int(lower.translate(_AS_INT_DIGITS), 32)
    if lower != value or bits & ((1 << _SPARE_BITS) - 1):
        # upper case, or the last character's spare bit set: only the canonical spelling names the document
        raise ValidationError(f"{value!r} is not a document Id (not canonical)",
                              issues=[{"path": "", "error": "not canonical"}])
    raw = (bits >> _SPARE_BITS).to_bytes(_ID_RAW_BYTES, "big")
    body, check = raw[:-_ID_CHECK_BYTES], raw[-_ID_CHECK_BYTES:]
    if _id_check(body) != check:
        raise ValidationError(f"{value!r} is not a document Id (bad checksum)",
                              issues=[{"path": "", "error": "bad checksum"}])
    return int.from_bytes(body[:4], "big")


# --- value checks --------------------------------------------------------------


def _fail(path: str, message: str) -> ValidationError:
    where = path or "value"
    return ValidationError(f"{where}: {message}", issues=[{"path": path, "error": message}])


def check_value(value: Any, limits: Limits = DEFAULT, path: str = "") -> Any:
    """Check ``value`` against the value model and limits; return it with tuples turned into lists.

    Raises:
        ValidationError: a type outside the value model, a non-str key, an int
            outside 64 bits, or a string that is not valid Unicode.
        LimitExceeded: too deep, too many fields or elements, key too long.
    """
    return _check(value, limits, path, 0)


def _check(value: Any, limits: Limits, path: str, depth: int) -> Any:
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise _fail(path, f"integer {value} does not fit in 64 bits")
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _fail(path, "string is not valid Unicode (unpaired surrogate)") from None
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        if depth >= limits.document_depth:
            raise LimitExceeded("document_depth", depth + 1, limits.document_depth, path or "value")
        if len(value) > limits.array_elements_count:
            raise LimitExceeded("array_elements_count", len(value), limits.array_elements_count, path or "value")
        return [_check(v, limits, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if depth >= limits.document_depth:
            raise LimitExceeded("document_depth", depth + 1, limits.document_depth, path or "value")
        if len(value) > limits.document_fields_count:
            raise LimitExceeded("document_fields_count", len(value), limits.document_fields_count, path or "value")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _fail(path, f"dict key {k!r} is not a str")
            if len(k) > limits.field_name_length:
                raise LimitExceeded("field_name_length", len(k), limits.field_name_length, f"{path}.{k[:20]}…")
            out[k] = _check(v, limits, f"{path}.{k}" if path else k, depth + 1)
        return out
    raise _fail(path, f"{type(value).__name__} is not a storable value "
                      "(use None, bool, int, float, str, bytes, list, dict)")


def check_limits(value: Any, limits: Limits = DEFAULT, what: str = "value") -> None:
    """Refuse a decoded value (of msgpack types already) that is deeper than ``document_depth`` or holds a list
    longer than ``array_elements_count`` or a dict with more than ``document_fields_count`` entries, naming the
    limit and where (``what[3].key``).  Unlike :func:`check_value` it copies nothing: the coordinator runs it on
    what a worker returns and on nested-call arguments, which the worker's own checks (bypassable by escaped
    code) already passed."""
    if type(value) is list or type(value) is dict:
        where: list[str | int] = []
        try:
            _limits(value, limits.document_depth, limits.array_elements_count, limits.document_fields_count, where)
        except _Over as over:
            path = what + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where)
            raise LimitExceeded(over.limit, over.value, over.maximum, path) from None


class _Over(Exception):
    def __init__(self, limit: str, value: int, maximum: int) -> None:
        self.limit, self.value, self.maximum = limit, value, maximum


def _limits(value: Any, depth_max: int, elements_max: int, fields_max: int, where: list[str | int]) -> None:
    """The walk of :func:`check_limits`; ``where`` holds the path to ``value`` (formatted only on a refusal)."""
    if len(where) >= depth_max:
        raise _Over("document_depth", len(where) + 1, depth_max)
    if type(value) is list:
        if len(value) > elements_max:
            raise _Over("array_elements_count", len(value), elements_max)
        for i, item in enumerate(value):
            t = type(item)
            if t is list or t is dict:
                where.append(i)
                _limits(item, depth_max, elements_max, fields_max, where)
                where.pop()
        return
    if len(value) > fields_max:
        raise _Over("document_fields_count", len(value), fields_max)
    for key, item in value.items():
        t = type(item)
        if t is list or t is dict:
            where.append(str(key))
            _limits(item, depth_max, elements_max, fields_max, where)
            where.pop()


def check_document_fields(doc: dict[str, Any]) -> None:
    """Refuse user fields that start with ``_`` (reserved for system fields)."""
    for key in doc:
        if key.startswith("_"):
            raise _fail(key, "field names starting with '_' are reserved for system fields")


# --- codec ---------------------------------------------------------------------


def pack(value: Any) -> bytes:
    """Encode a checked value as msgpack (bin type for bytes, no ext types)."""
    return msgpack.packb(value, use_bin_type=True)


def _no_ext(code: int, data: bytes) -> Any:
    raise ValidationError(f"msgpack ext type {code} is not accepted", issues=[{"path": "", "error": "ext type"}])


def unpack(data: bytes, max_bytes: int = 64 * 1024 * 1024) -> Any:
    """Decode msgpack produced by :func:`pack`, with explicit length limits and no ext types."""
    if len(data) > max_bytes:
        raise LimitExceeded("frame_bytes", len(data), max_bytes)
    try:
        return _unpackb(data, max_bytes)
    except ValidationError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ValidationError(f"malformed msgpack data: {exc}", issues=[{"path": "", "error": str(exc)}]) from None


def _unpackb(data: bytes, max_bytes: int) -> Any:
    return msgpack.unpackb(
        data,
        raw=False,
        strict_map_key=True,
        ext_hook=_no_ext,
        max_str_len=max_bytes,
        max_bin_len=max_bytes,
        max_array_len=MAX_CONTAINER_ITEMS,
        max_map_len=MAX_CONTAINER_ITEMS,
        max_ext_len=0,
    )


# --- the value order as bytes (for components that keep their own orderings) ------------------------------


def order_key(*parts: Any) -> bytes:
    """Bytes that sort as ``parts`` do in the value order of DESIGN.md (the encoding index keys use).

    ``order_key(a) < order_key(b)`` exactly when ``a`` sorts before ``b``;
    several parts are compared one after another, as a tuple.  Encodings are
    self-delimiting, so a key's bytes are a prefix of the bytes of any longer
    tuple that starts with it.
    """
    from runtime.keycodec import encode_tuple

    return encode_tuple(parts)


def order_list_prefix(items: list[Any]) -> bytes:
    """The bytes every list key starting with ``items`` begins with (a list's bytes without its end marker)."""
    from runtime.keycodec import T_LIST, encode_tuple

    return bytes((T_LIST,)) + encode_tuple(items)

