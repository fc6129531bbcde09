"""Framing: bytes on a ZeroMQ socket <-> typed :mod:`~runtime.protocol.messages`.

Order of checks on the way in, cheapest first, so a hostile peer cannot make
the coordinator do more work than the frame size allows:

1. the frame's byte length against ``max_bytes`` (before any decoding);
2. one typed msgspec pass over :data:`~runtime.protocol.messages.Message`:
   the ``type`` tag picks the frame class; unknown fields, wrong types,
   out-of-range integers, the wrong ``version`` and over-long strings and
   lists of the typed fields are refused while decoding; ext types are refused
   wherever they appear (pickle is never involved anywhere);
3. inside the ``Any``-typed payload fields only (``args``, ``value``,
   ``error``, the buffered writes, ...): nesting depth, map keys (strings),
   element counts and value types, as :func:`runtime.values.unpack` enforces
   them.  msgspec leaves those unchecked; the walk is planned once per frame
   class from the type annotations, so a new field is covered without a line
   here.

No string or binary can be longer than the frame, so step 1 bounds them as
``values.unpack``'s ``max_str_len`` / ``max_bin_len`` did; a list or map of
more than :data:`~runtime.values.MAX_CONTAINER_ITEMS` is refused by step 3 (or
by its field's ``max_length`` in step 2).  msgspec allocates only what the
bytes hold, so the memory spent before step 3 is bounded by the frame size.

Every failure is a :class:`~runtime.errors.ProtocolError` naming what was wrong.
Errors take a slower path (a second, untyped decode) to say it well.
"""

from __future__ import annotations

import datetime
import gc
from collections.abc import Callable
from typing import Any

import msgspec
import msgspec.inspect as mi

from runtime.errors import ProtocolError
from runtime.limits import DEFAULT, FRAME_OVERHEAD_BYTES, Limits
from runtime.protocol.messages import Message
from runtime.values import MAX_CONTAINER_ITEMS


def max_frame_bytes(limits: Limits = DEFAULT) -> int:
    """The largest frame accepted: arguments or return value plus envelope."""
    return max(limits.arguments_size_bytes, limits.return_size_bytes) + FRAME_OVERHEAD_BYTES


class _ExtRefused(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _refuse_ext(code: int, data: memoryview) -> Any:
    raise _ExtRefused(code)


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Message, ext_hook=_refuse_ext)
_RAW_DECODER = msgspec.msgpack.Decoder(ext_hook=_refuse_ext)
"""Untyped: used only once a frame was refused, to say why in the frame's own terms."""


def encode_frame(message: msgspec.Struct) -> bytes:
    """Encode a frame as msgpack (a map, its ``type`` tag first; fields at their default are left out).

    Raises:
        TypeError: the frame holds a value msgpack cannot carry.
        OverflowError: an integer outside ``[-2**63, 2**64)``.
    """
    return _ENCODER.encode(message)


def check_fields(data: bytes) -> None:
    """Refuse an encoded frame whose fields its receiver would refuse, with the receiver's reason.

    Frames are checked when decoded, not when built; a sender whose frame carries
    what a user typed (a client: the function name, the session) calls this, so a
    bad field fails at once rather than as a reply the daemon cannot address.  Size
    and payload depth are left to the receiver, whose limits may differ.

    Raises:
        ProtocolError: naming the field and the problem.
    """
    _decode_typed(data, DEFAULT.document_depth + 2)


_bounds: tuple[Limits, int, int] = (DEFAULT, max_frame_bytes(DEFAULT), DEFAULT.document_depth + 2)
"""The last limits decoded with, its frame cap and its depth levels (the frame envelope (2) + ``document_depth``)."""


def decode_frame(data: bytes, limits: Limits = DEFAULT, untrusted: bool = False) -> Any:
    """Decode and validate one frame; raise ProtocolError naming the problem.

    ``untrusted`` (frames from a client or a worker, decoded by the coordinator): the frame's lists and maps
    are counted in its bytes first (:func:`count_containers`), and more than ``frame_containers_count`` is
    refused before anything is built."""
    global _bounds
    known, cap, levels = _bounds
    if limits is not known:  # each process decodes with one Limits object: computed once, not per frame
        cap, levels = max_frame_bytes(limits), limits.document_depth + 2
        _bounds = (limits, cap, levels)
    if len(data) > cap:
        raise ProtocolError(f"frame of {len(data)} bytes exceeds the {cap}-byte maximum", size=len(data), maximum=cap)
    if untrusted and len(data) > limits.frame_containers_count:  # a smaller frame cannot hold more
        most = limits.frame_containers_count
        raw = data if isinstance(data, bytes) else bytes(data)
        if len(raw.translate(None, _NOT_CONTAINER_HEADS)) > most and count_containers(raw, most) > most:
            raise ProtocolError(f"frame holds more than frame_containers_count={most} lists and maps",
                                limit="frame_containers_count", maximum=most)
    if len(data) > _GC_PAUSE_BYTES and gc.isenabled():
        gc.disable()  # every container built would count toward a collection of the whole heap: 5-10x the decode
        try:
            msg = _decode_typed(data, levels)
        finally:
            gc.enable()
    else:
        msg = _decode_typed(data, levels)
    for name, check in _PLANS[type(msg)]:
        problem = check(getattr(msg, name), levels - 1)
        if problem is not None:
            if problem is _DEEP:
                raise ProtocolError(f"frame nests deeper than {levels} levels (in {name!r})")
            raise ProtocolError(f"invalid {msg.type.value!r} frame: {name}: {problem}")
    return msg


_GC_PAUSE_BYTES = 64 * 1024
"""Frames larger than this decode with the cyclic garbage collector paused (msgpack values hold no cycles)."""

_CONTAINER_HEADS = bytes([*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF])
_NOT_CONTAINER_HEADS = bytes(b for b in range(256) if b not in _CONTAINER_HEADS)
"""``data.translate(None, _NOT_CONTAINER_HEADS)`` keeps the bytes that could open a list or map: an upper bound
on the frame's containers, in C (~1 ms a MiB); only a frame over the limit by it is walked exactly."""

def _steps() -> list[int]:
    """For each msgpack head byte: the element's whole size if fixed (> 0), minus its header's size if it opens a
    list or map (< 0), or 0 if a length follows (str8-32, bin8-32, ext8-32; 0xc1, never used, also 0)."""
    steps = [1] * 256  # fixints, nil, false, true
    for b in range(0x80, 0xA0):
        steps[b] = -1  # fixmap, fixarray
    for b in range(0xA0, 0xC0):
        steps[b] = 1 + (b & 0x1F)  # fixstr
    for head, size in ((0xCA, 5), (0xCB, 9), (0xCC, 2), (0xCD, 3), (0xCE, 5), (0xCF, 9), (0xD0, 2), (0xD1, 3),
                       (0xD2, 5), (0xD3, 9), (0xD4, 3), (0xD5, 4), (0xD6, 6), (0xD7, 10), (0xD8, 18),
                       (0xDC, -3), (0xDD, -5), (0xDE, -3), (0xDF, -5)):
        steps[head] = size
    for head in (0xC1, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xD9, 0xDA, 0xDB):
        steps[head] = 0
    return steps


_STEPS = _steps()
_SIZED = {0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0), 0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0),
          0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1)}
"""Head byte -> (width of the length that follows, bytes before the body besides it: an ext's type)."""


def count_containers(data: bytes, stop_after: int) -> int:
    """How many lists and maps the msgpack ``data`` holds (counting stops once past ``stop_after``).

    msgpack is a pre-order walk laid out flat, so one pass over the element heads counts them without
    building anything or tracking nesting: a container's head is followed by its first element, a string's
    or binary's by the next element.  Bytes inside strings are jumped over, never read.  Truncated or invalid
    data ends the count (the decoder then says what is wrong).  ~50-100 ns an element."""
    count, i, n = 0, 0, len(data)
    steps, sized = _STEPS, _SIZED
    while i < n:
        step = steps[data[i]]
        if step > 0:
            i += step
        elif step < 0:
            count += 1
            if count > stop_after:
                break
            i -= step
        else:
            head = data[i]
            if head not in sized:
                break
            width, extra = sized[head]
            i += 1 + width + extra + int.from_bytes(data[i + 1:i + 1 + width], "big")
    return count


def _decode_typed(data: bytes, levels: int) -> Any:
    """Step 2: the typed msgspec pass, every failure a ProtocolError."""
    try:
        return _DECODER.decode(data)
    except msgspec.ValidationError as exc:
        raise _explain(data, str(exc), levels) from None
    except _ExtRefused as exc:
        raise ProtocolError(f"undecodable frame: msgpack ext type {exc.code} is not accepted") from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"undecodable frame: {exc}") from None
    except RecursionError:
        raise ProtocolError(f"frame nests deeper than {levels} levels") from None


def _explain(data: bytes, error: str, levels: int) -> ProtocolError:
    """The ProtocolError for a frame the typed decoder refused (said in terms of the raw frame)."""
    try:
        raw = _RAW_DECODER.decode(data)
    except _ExtRefused as exc:
        return ProtocolError(f"undecodable frame: msgpack ext type {exc.code} is not accepted")
    except (msgspec.DecodeError, ValueError) as exc:
        return ProtocolError(f"undecodable frame: {exc}")
    except RecursionError:
        return ProtocolError(f"frame nests deeper than {levels} levels")
    if not isinstance(raw, dict):
        return ProtocolError(f"a frame must be a map, not {_kind(raw)}")
    tag = raw.get("type", "untyped")
    shown = tag[:64] if isinstance(tag, str) else type(tag).__name__
    return ProtocolError(f"invalid {shown!r} frame: {error[:300]}")


# --- the payload walk ------------------------------------------------------------------------------
#
# A check takes a decoded value and its *room*: how many levels may still lie below it (the frame
# itself has ``levels``, each of its fields one less).  A container with elements needs room >= 1.
# It returns None when the value is fine, _DEEP when it nests too deep, or a message.

Check = Callable[[Any, int], "str | None"]

_DEEP = "nests too deep"
_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})


def _any(value: Any, room: int) -> str | None:
    """Check an ``Any``-typed value: depth, key types, element counts, and the msgpack value types.

    Plain loops that recurse only into containers: measured faster than set tricks
    (``issuperset(map(type, ...))``) or an explicit stack for the small payloads frames carry.
    """
    t = type(value)
    if t is dict:
        if not value:
            return None
        if room < 1:
            return _DEEP
        if len(value) > MAX_CONTAINER_ITEMS:
            return f"a map of {len(value)} entries exceeds the {MAX_CONTAINER_ITEMS}-entry maximum"
        for key, item in value.items():
            tk = type(key)
            if tk is not str and tk is not bytes:
                return f"map keys must be strings, not {_kind(key)}"
            ti = type(item)
            if ti is dict or ti is list:
                problem = _any(item, room - 1)
                if problem is not None:
                    return problem
            elif ti not in _SCALARS:
                return f"{_kind(item)} is not accepted"
        return None
    if t is list:
        if not value:
            return None
        if room < 1:
            return _DEEP
        if len(value) > MAX_CONTAINER_ITEMS:
            return f"a list of {len(value)} elements exceeds the {MAX_CONTAINER_ITEMS}-element maximum"
        for item in value:
            ti = type(item)
            if ti is dict or ti is list:
                problem = _any(item, room - 1)
                if problem is not None:
                    return problem
            elif ti not in _SCALARS:
                return f"{_kind(item)} is not accepted"
        return None
    if t in _SCALARS:
        return None
    return f"{_kind(value)} is not accepted"


def _kind(value: object) -> str:
    if isinstance(value, datetime.datetime):
        return "msgpack ext type -1 (timestamp)"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, (list, tuple)):  # an array decodes to a tuple where it is a map key
        return "a list"
    return type(value).__name__


def _plan(t: mi.Type) -> Check | None:
    """The check of a value of type ``t``, or None if ``t`` holds no container at all."""
    if isinstance(t, mi.AnyType):
        return _any
    if isinstance(t, mi.DictType):
        if isinstance(t.value_type, mi.AnyType):
            return _any  # dict[str, Any] decodes to a dict: the generic walk is the fastest
        return _each(_plan(t.value_type), dict.values)
    if isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        return _each(_plan(t.item_type), iter)
    if isinstance(t, mi.TupleType):
        return _positions([_plan(x) for x in t.item_types])
    if isinstance(t, mi.StructType):
        return _fields([(f.name, _plan(f.type)) for f in t.fields])
    if isinstance(t, mi.UnionType):
        plans = [p for p in map(_plan, t.types) if p is not None]
        if len(plans) > 1:
            raise TypeError(f"frame field type {t} has more than one container alternative: the codec cannot walk it")
        if not plans:
            return None
        return plans[0] if plans[0] is _any else _or_none(plans[0])  # _any takes None in its stride
    if isinstance(t, (mi.StrType, mi.BytesType, mi.IntType, mi.FloatType, mi.BoolType, mi.NoneType, mi.LiteralType)):
        return None
    raise TypeError(f"frame field type {t} is not one the codec can walk (use msgpack values)")


def _each(inner: Check | None, items: Callable[[Any], Any]) -> Check:
    def check(value: Any, room: int) -> str | None:
        if not value:
            return None
        if room < 1:
            return _DEEP
        if inner is not None:
            for item in items(value):
                problem = inner(item, room - 1)
                if problem is not None:
                    return problem
        return None
    return check


def _positions(inner: list[Check | None]) -> Check:
    def check(value: Any, room: int) -> str | None:
        if room < 1:
            return _DEEP
        for item, sub in zip(value, inner, strict=True):
            if sub is not None:
                problem = sub(item, room - 1)
                if problem is not None:
                    return problem
        return None
    return check


def _fields(inner: list[tuple[str, Check | None]]) -> Check:
    def check(value: Any, room: int) -> str | None:
        if room < 1:
            return _DEEP
        for name, sub in inner:
            if sub is not None:
                problem = sub(getattr(value, name), room - 1)
                if problem is not None:
                    return problem
        return None
    return check


def _or_none(inner: Check) -> Check:
    def check(value: Any, room: int) -> str | None:
        return None if value is None else inner(value, room)
    return check


def _frame_plans() -> dict[type, tuple[tuple[str, Check], ...]]:
    """For each frame class, the checks of its fields that hold a container (planned from the annotations)."""
    union = mi.type_info(Message)
    assert isinstance(union, mi.UnionType)
    plans: dict[type, tuple[tuple[str, Check], ...]] = {}
    for struct in union.types:
        assert isinstance(struct, mi.StructType)
        checks = []
        for f in struct.fields:
            check = _plan(f.type)
            if check is not None and not _shallow(f.type):
                checks.append((f.name, check))
        plans[struct.cls] = tuple(checks)
    return plans


def _shallow(t: mi.Type) -> bool:
    """A typed field of scalars, or of one list/map of scalars: it fits in any depth limit, so it needs no walk."""
    if isinstance(t, mi.UnionType):
        return all(map(_shallow, t.types))
    if isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        return _plan(t.item_type) is None
    if isinstance(t, mi.DictType):
        return _plan(t.value_type) is None
    return _plan(t) is None


_PLANS = _frame_plans()
