"""Framing: bytes on a ZeroMQ socket <-> validated :mod:`~runtime.protocol.messages`.

Order of checks on the way in, cheapest first, so a hostile peer cannot make
the coordinator do more work than the frame size allows:

1. the frame's byte length against ``max_bytes`` (before any decoding);
2. msgpack decoding with explicit ``max_*_len`` limits and no ext types
   (:func:`runtime.values.unpack`; pickle is never involved anywhere);
3. nesting depth of the decoded value (iteratively, no recursion to exhaust);
4. the pydantic model for the frame's ``type``.

Every failure is a :class:`~runtime.errors.ProtocolError` naming what was wrong.
"""

from __future__ import annotations

from typing import Any

import pydantic

from runtime import values
from runtime.errors import BulkheadError, ProtocolError
from runtime.limits import DEFAULT, FRAME_OVERHEAD_BYTES, Limits
from runtime.protocol.messages import MESSAGE_ADAPTER


def max_frame_bytes(limits: Limits = DEFAULT) -> int:
    """The largest frame accepted: arguments or return value plus envelope."""
    return max(limits.arguments_size_bytes, limits.return_size_bytes) + FRAME_OVERHEAD_BYTES


def encode_frame(message: pydantic.BaseModel) -> bytes:
    """Encode a frame model as msgpack."""
    return values.pack(message.model_dump(mode="python"))


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def decode_frame(data: bytes, limits: Limits = DEFAULT) -> Any:
    """Decode and validate one frame; raise ProtocolError naming the problem."""
    cap = max_frame_bytes(limits)
    if len(data) > cap:
        raise ProtocolError(f"frame of {len(data)} bytes exceeds the {cap}-byte maximum", size=len(data), maximum=cap)
    try:
        raw = values.unpack(data, max_bytes=cap)
    except BulkheadError as exc:
        raise ProtocolError(f"undecodable frame: {exc.message}") from None
    if not isinstance(raw, dict):
        raise ProtocolError(f"a frame must be a map, not {type(raw).__name__}")
    # frame envelope (2) + the deepest value a document may hold
    if _depth_exceeds(raw, limits.document_depth + 2):
        raise ProtocolError(f"frame nests deeper than {limits.document_depth + 2} levels")
    try:
        return MESSAGE_ADAPTER.validate_python(raw)
    except pydantic.ValidationError as exc:
        issues = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'frame'}: {e['msg']}" for e in exc.errors()[:5])
        raise ProtocolError(f"invalid {raw.get('type', 'untyped')!r} frame: {issues}") from None
