"""The wire codec: round trips and every way a hostile frame is refused before it costs much."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import ProtocolError
from runtime.limits import Limits
from runtime.protocol import decode_frame, encode_frame
from runtime.protocol.messages import Call, Invoke, Result

ARGS = st.dictionaries(st.text(max_size=8), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
              st.text(max_size=20), st.binary(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=10), max_size=4)


@settings(max_examples=200)
@given(ARGS, st.integers(0, 2**63 - 1), st.sampled_from(["query", "mutation", "action", None]))
def test_frames_round_trip(args, request_id, kind) -> None:  # type: ignore[no-untyped-def]
    call = Call(request_id=request_id, function="notes:add", args=args, kind=kind)
    assert decode_frame(encode_frame(call)) == call


def test_each_frame_type_is_told_apart() -> None:
    inv = Invoke(request_id=1, token="t", function="add", kind="mutation", args={"a": 1}, now=1.5, seed=3)
    res = Result(request_id=1, ok=False, error={"code": "x"})
    assert isinstance(decode_frame(encode_frame(inv)), Invoke)
    assert isinstance(decode_frame(encode_frame(res)), Result)


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        (b"\xc1", "undecodable"),
        (msgpack.packb([1, 2]), "must be a map"),
        (msgpack.packb({"type": "call", "request_id": 1}), "function"),
        (msgpack.packb({"type": "teleport", "request_id": 1}), "invalid 'teleport' frame"),
        (msgpack.packb({"type": "call", "request_id": 1, "function": "f", "sneaky": 1}), "sneaky"),
        (msgpack.packb({"type": "call", "request_id": -1, "function": "f"}), "request_id"),
        (msgpack.packb({"type": "call", "request_id": 1, "function": "f", "version": 99}), "version"),
        (msgpack.packb(msgpack.ExtType(1, b"x")), "undecodable"),
    ],
)
def test_malformed_frames_are_refused_with_a_reason(frame: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError, match=fragment):
        decode_frame(frame)


def test_oversized_frame_is_refused_before_decoding() -> None:
    small = Limits(arguments_size_bytes=1000, return_size_bytes=1000)
    big = msgpack.packb({"type": "call", "request_id": 1, "function": "f", "args": {"x": "y" * 200_000}})
    with pytest.raises(ProtocolError, match="exceeds"):
        decode_frame(big, small)


def test_deep_nesting_is_refused() -> None:
    value: object = 1
    for _ in range(40):
        value = [value]
    with pytest.raises(ProtocolError, match="nests deeper"):
        decode_frame(msgpack.packb({"type": "call", "request_id": 1, "function": "f", "args": {"x": value}}))
