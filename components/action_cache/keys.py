"""Cache keys: one string per (cache name, exact arguments), the same in every process and run.

An argument set is encoded canonically — every value tagged with its type, dict keys sorted — and
hashed with SHA-256.  *Exact* means what a Python caller would not always expect:

* ``1``, ``1.0`` and ``True`` are three different keys (the action may well treat them differently);
* ``0.0`` and ``-0.0`` differ, every NaN is the same;
* ``{"a": 1, "b": 2}`` and ``{"b": 2, "a": 1}`` are one key (keyword arguments have no order);
* a list and a tuple are one key (both travel as an array).

Pure: no database, no runtime imports, so it is property-tested on its own.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

KEY_VERSION = b"ac1"
"""Bumped if the encoding ever changes: old entries then simply miss."""


class UnkeyableArgs(ValueError):
    """An argument that is not a storable value (a set, an object, a dict with a non-str key...)."""


def _encode(value: Any, out: list[bytes], path: str) -> None:
    # bool before int: bool is a subclass of int
    if value is None:
        out.append(b"n")
    elif value is True:
        out.append(b"t")
    elif value is False:
        out.append(b"f")
    elif isinstance(value, int):
        out.append(b"i%d;" % value)
    elif isinstance(value, float):
        out.append(b"d" + (b"nan" if math.isnan(value) else repr(value).encode()) + b";")
    elif isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        out.append(b"s%d:" % len(raw) + raw)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        out.append(b"b%d:" % len(raw) + raw)
    elif isinstance(value, (list, tuple)):
        out.append(b"l%d[" % len(value))
        for i, item in enumerate(value):
            _encode(item, out, f"{path}[{i}]")
        out.append(b"]")
    elif isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise UnkeyableArgs(f"{path or 'args'}: dict keys must be strings, not {type(k).__name__} {k!r}")
        out.append(b"m%d{" % len(value))
        for k in sorted(value, key=lambda s: s.encode("utf-8", "surrogatepass")):
            _encode(k, out, path)
            _encode(value[k], out, f"{path}.{k}" if path else k)
        out.append(b"}")
    else:
        raise UnkeyableArgs(f"{path or 'args'}: {type(value).__name__} is not a value a cache key can hold "
                        "(None, bool, int, float, str, bytes, list, dict with str keys)")


def canonical(value: Any) -> bytes:
    """The canonical encoding of ``value`` (equal exactly when the values are equal *with their types*)."""
    out: list[bytes] = []
    _encode(value, out, "")
    return b"".join(out)


def cache_key(name: str, args: dict[str, Any]) -> str:
    """The key of ``args`` under cache ``name``: 64 hex digits.

    Raises:
        UnkeyableArgs: an argument is not a value (the message names it by path).

    Examples:
        >>> cache_key("f", {"a": 1, "b": 2}) == cache_key("f", {"b": 2, "a": 1})
        True
        >>> cache_key("f", {"a": 1}) == cache_key("f", {"a": 1.0})
        False
    """
    if not isinstance(args, dict):
        raise UnkeyableArgs(f"args must be a dict of keyword arguments, not {type(args).__name__}")
    h = hashlib.sha256(KEY_VERSION)
    h.update(canonical([name, args]))
    return h.hexdigest()
