"""The msgspec frame codec: every frame type round-trips, and every limit holds with a reason.

Each refusal asserts that the :class:`~runtime.errors.ProtocolError` names what
was wrong (the field, the limit, the kind of value).  The depth check is also
compared with the walk the codec used before msgspec (the whole decoded frame,
every value at most ``document_depth + 2`` levels down), for random values.
"""

from __future__ import annotations

import typing
from typing import Any

import msgpack
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import ProtocolError
from runtime.limits import WIRE_LOG_LINES_MAX, Limits
from runtime.protocol import codec
from runtime.protocol.codec import decode_frame, encode_frame, max_frame_bytes
from runtime.protocol.messages import (
    MAX_BUFFERED_WRITES,
    Admin,
    Call,
    Hello,
    Invoke,
    Log,
    Message,
    MessageType,
    Result,
    Subscribe,
    Syscall,
    SyscallResult,
    Transition,
    Update,
)
from runtime.values import MAX_CONTAINER_ITEMS, make_id

ID = make_id(3, 1.7e9)
DOC = {"_id": ID, "_creation_time": 1.7e9, "n": 1, "tags": ["a", b"\x00"], "nested": {"x": None, "y": True}}

ONE_OF_EACH: list[Any] = [
    Call(request_id=1, function="notes:add", args={"text": "hi", "n": [1, 2.5]}, kind="mutation", session="s1",
         auth="key"),
    Result(request_id=2**63 - 1, ok=True, value=DOC, commit_ts=42, logs=["a", "b"], dropped=3,
           writes=[("replace", {"id": ID, "value": {"n": 2}}), ("delete", {"id": ID})]),
    Result(request_id=3, ok=False, error={"code": "user_error", "message": "boom", "data": {"k": [1]}}),
    Syscall(request_id=4, token="tok", op="get", args={"id": ID}, pre=[("delete", {"id": ID})]),
    SyscallResult(request_id=4, ok=True, value={"doc": DOC, "table": "t", "last": b"\x01k"}),
    SyscallResult(request_id=5, ok=False, error={"code": "not_found"}),
    Invoke(request_id=6, token="tok", function="add", kind="system", args={"a": 1}, now=1.5, seed=2**64 - 1),
    Log(request_id=0, token="tok", lines=["x"], dropped=1),
    Hello(request_id=0, manifest={"tables": {}, "children": []}, layers={"seccomp": "on: strict"}),
    Hello(request_id=0, error={"code": "load_error"}),
    Admin(request_id=7, op="status", args={"verbose": True}, auth="key"),
    Subscribe(request_id=8, sub=9, function="q", args={"a": 1}, auth=None),
    Subscribe(request_id=9, sub=9),
    Transition(request_id=0, ts=10, updates=[Update(sub=9, ok=True, value=[1, {"a": b"b"}]),
                                            Update(sub=10, ok=False, error={"code": "x"})]),
]


def frame(**fields: Any) -> bytes:
    """A hand-built frame, as a peer that does not use our classes would send it."""
    return msgpack.packb(fields, use_bin_type=True, datetime=False)


def call(**fields: Any) -> bytes:
    return frame(type="call", request_id=1, function="f", **fields)


def refused(data: bytes, limits: Limits | None = None) -> str:
    with pytest.raises(ProtocolError) as info:
        decode_frame(data, limits or Limits())
    return info.value.message


# --- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("msg", ONE_OF_EACH, ids=lambda m: type(m).__name__)
def test_every_frame_type_round_trips(msg: Any) -> None:
    back = decode_frame(encode_frame(msg))
    assert back == msg and type(back) is type(msg)
    assert back.type is MessageType(msgspec.msgpack.decode(encode_frame(msg))["type"])


def test_the_examples_cover_every_frame_type() -> None:
    assert {type(m) for m in ONE_OF_EACH} == set(typing.get_args(Message))


def test_defaults_are_left_out_and_filled_back_in() -> None:
    data = encode_frame(Result(request_id=1, ok=True))
    assert msgpack.unpackb(data) == {"type": "result", "request_id": 1, "ok": True}
    back = decode_frame(data)
    assert back.version == 1 and back.logs == [] and back.writes == [] and back.value is None


def test_buffered_writes_come_back_as_op_args_pairs() -> None:
    data = frame(type="syscall", request_id=1, token="t", op="flush", pre=[["replace", {"id": ID, "value": {}}]])
    msg = decode_frame(data)
    assert msg.pre == [("replace", {"id": ID, "value": {}})]
    assert [op for op, _ in msg.pre] == ["replace"]


def test_frames_are_frozen_and_built_by_keyword() -> None:
    msg = Call(request_id=1, function="f")
    with pytest.raises(AttributeError):
        msg.function = "g"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Call(1, "f")  # type: ignore[misc]


def test_every_field_that_can_hold_a_payload_is_walked() -> None:
    # the plans are derived from the annotations: a new Any field is covered without touching the codec
    planned = {(cls.__name__, name) for cls, checks in codec._PLANS.items() for name, _ in checks}
    assert planned == {
        ("Call", "args"), ("Result", "value"), ("Result", "error"), ("Result", "writes"), ("Result", "reads"),
        ("Syscall", "args"), ("Syscall", "pre"), ("Syscall", "reads"), ("SyscallResult", "value"),
        ("SyscallResult", "error"), ("Invoke", "args"), ("Invoke", "commits"),
        ("Hello", "manifest"), ("Hello", "error"), ("Admin", "args"), ("Subscribe", "args"), ("Transition", "updates"),
    }


# --- size, encoding, shape -----------------------------------------------------------------------------


def test_an_oversized_frame_is_refused_before_it_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    small = Limits(arguments_size_bytes=1000, return_size_bytes=1000)

    class NoDecoder:
        def decode(self, data: bytes) -> Any:
            raise AssertionError("decoded an oversized frame")

    monkeypatch.setattr(codec, "_DECODER", NoDecoder())
    message = refused(call(args={"x": "y" * 100_000}), small)
    assert message == f"frame of {len(call(args={'x': 'y' * 100_000}))} bytes exceeds the " \
                      f"{max_frame_bytes(small)}-byte maximum"


@pytest.mark.parametrize("data", [
    msgpack.packb(msgpack.ExtType(1, b"x")),
    call(args={"x": msgpack.ExtType(5, b"abc")}),
    call(args={"x": [{"y": msgpack.ExtType(100, b"")}]}),
    frame(type="call", request_id=1, function=msgpack.ExtType(2, b"f")),
    frame(type="result", request_id=1, ok=True, value=msgpack.ExtType(7, b"v")),
])
def test_ext_types_are_refused_anywhere(data: bytes) -> None:
    assert "ext type" in refused(data)


def test_a_timestamp_ext_is_refused_too() -> None:
    assert "ext type -1 (timestamp)" in refused(call(args={"when": msgpack.Timestamp(5, 0)}))
    assert "ext type -1 (timestamp)" in refused(frame(type="result", request_id=1, ok=True,
                                                      value=[msgpack.Timestamp(5, 0)]))


@pytest.mark.parametrize(("data", "fragment"), [
    (b"\xc1", "undecodable frame"),
    (b"", "undecodable frame: Input data was truncated"),
    (call()[:-1], "undecodable frame"),
    (call() + b"\x00", "undecodable frame: MessagePack data is malformed: trailing characters"),
    (msgpack.packb([1, 2]), "a frame must be a map, not a list"),
    (msgpack.packb("call"), "a frame must be a map, not str"),
    (frame(request_id=1, function="f"), "invalid 'untyped' frame: Object missing required field `type`"),
    (frame(type="teleport", request_id=1), "invalid 'teleport' frame: Invalid value 'teleport' - at `$.type`"),
    (frame(type="call", request_id=1), "invalid 'call' frame: Object missing required field `function`"),
])
def test_undecodable_and_shapeless_frames_say_why(data: bytes, fragment: str) -> None:
    assert fragment in refused(data)


# --- fields: unknown, wrong type, out of range, too long ---------------------------------------------------------


@pytest.mark.parametrize(("data", "fragment"), [
    (call(sneaky=1), "Object contains unknown field `sneaky`"),
    (frame(type="transition", request_id=0, ts=1, updates=[{"sub": 1, "ok": True, "extra": 2}]),
     "Object contains unknown field `extra` - at `$.updates[0]`"),
    (frame(type="call", request_id=1, function=5), "Expected `str`, got `int` - at `$.function`"),
    (frame(type="result", request_id=1, ok="yes"), "Expected `bool`, got `str` - at `$.ok`"),
    (frame(type="invoke", request_id=1, token="t", function="f", kind="query", now="soon", seed=1),
     "Expected `float`, got `str` - at `$.now`"),
    (call(args=[1, 2]), "Expected `object`, got `array` - at `$.args`"),
    (call(kind="teleport"), "Invalid enum value 'teleport' - at `$.kind`"),
    (frame(type="admin", request_id=1, op="format_disk"), "at `$.op`"),
    (frame(type="syscall", request_id=1, token="t", op="flush", pre=[["replace"]]),
     "Expected `array` of length 2, got 1 - at `$.pre[0]`"),
    (call(args={b"x": 1}), "at `key` in `$.args`"),
    (call(version=99), "Expected `int` <= 1 - at `$.version`"),
    (call(version=0), "Expected `int` >= 1 - at `$.version`"),
    (frame(type="call", request_id=-1, function="f"), "Expected `int` >= 0 - at `$.request_id`"),
    (frame(type="call", request_id=2**63, function="f"), "Expected `int` <= 9223372036854775807 - at `$.request_id`"),
    (frame(type="invoke", request_id=1, token="t", function="f", kind="query", now=1.0, seed=-1),
     "Expected `int` >= 0 - at `$.seed`"),
    (frame(type="subscribe", request_id=1, sub=-5), "Expected `int` >= 0 - at `$.sub`"),
    (frame(type="log", request_id=1, token="t", lines=[], dropped=-1), "Expected `int` >= 0 - at `$.dropped`"),
])
def test_bad_fields_are_refused_by_name(data: bytes, fragment: str) -> None:
    message = refused(data)
    assert message.startswith("invalid '") and fragment in message, message


@pytest.mark.parametrize(("data", "fragment"), [
    (frame(type="call", request_id=1, function="f" * 513), "Expected `str` of length <= 512 - at `$.function`"),
    (frame(type="call", request_id=1, function=""), "Expected `str` of length >= 1 - at `$.function`"),
    (call(auth="k" * 257), "Expected `str` of length <= 256 - at `$.auth`"),
    (call(session="s" * 129), "Expected `str` of length <= 128 - at `$.session`"),
    (frame(type="syscall", request_id=1, token="t" * 129, op="get"), "at `$.token`"),
    (frame(type="syscall", request_id=1, token="t", op="g" * 65), "Expected `str` of length <= 64 - at `$.op`"),
    (frame(type="result", request_id=1, ok=True, logs=["x"] * (WIRE_LOG_LINES_MAX + 1)),
     f"Expected `array` of length <= {WIRE_LOG_LINES_MAX} - at `$.logs`"),
    (frame(type="result", request_id=1, ok=True, writes=[["delete", {"id": ID}]] * (MAX_BUFFERED_WRITES + 1)),
     f"Expected `array` of length <= {MAX_BUFFERED_WRITES} - at `$.writes`"),
])
def test_too_long_strings_and_lists_are_refused_by_name(data: bytes, fragment: str) -> None:
    assert fragment in refused(data)


def test_too_many_elements_or_entries_in_a_payload_are_refused() -> None:
    big = MAX_CONTAINER_ITEMS + 1
    assert f"args: a list of {big} elements exceeds the {MAX_CONTAINER_ITEMS}-element maximum" in \
        refused(call(args={"x": [None] * big}))
    assert f"value: a map of {big} entries exceeds the {MAX_CONTAINER_ITEMS}-entry maximum" in \
        refused(frame(type="result", request_id=1, ok=True, value={str(i): 0 for i in range(big)}))
    decode_frame(call(args={"x": [None] * MAX_CONTAINER_ITEMS}))  # the limit itself is fine


@pytest.mark.parametrize("key", [1, 2.5, None, True, (1, 2)])
def test_payload_maps_need_string_keys(key: Any) -> None:
    message = refused(call(args={"x": [{key: 1}]}))
    assert message.startswith("invalid 'call' frame: args: map keys must be strings, not"), message


# --- nesting depth -------------------------------------------------------------------------------------------


def nest(depth: int) -> Any:
    """A value ``depth`` containers deep, alternating lists and maps (0: a scalar)."""
    value: Any = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


# each payload field, as a frame holding ``value`` in it, and how many levels down the frame ``value`` sits
PLACES = {
    "args": (lambda v: call(args={"x": v}), 2),
    "value": (lambda v: frame(type="result", request_id=1, ok=True, value=v), 1),
    "error": (lambda v: frame(type="result", request_id=1, ok=False, error={"data": v}), 2),
    "writes": (lambda v: frame(type="result", request_id=1, ok=True, writes=[["replace", {"value": v}]]), 4),
    "pre": (lambda v: frame(type="syscall", request_id=1, token="t", op="get", pre=[["delete", {"id": v}]]), 4),
    "updates": (lambda v: frame(type="transition", request_id=0, ts=1, updates=[{"sub": 1, "ok": True, "value": v}]),
                3),
    "manifest": (lambda v: frame(type="hello", request_id=0, manifest={"m": v}), 2),
}


@pytest.mark.parametrize("field", sorted(PLACES))
@pytest.mark.parametrize("document_depth", [16, 3])
def test_nesting_is_allowed_to_the_limit_and_refused_past_it(field: str, document_depth: int) -> None:
    build, at = PLACES[field]
    limits = Limits(document_depth=document_depth)
    levels = document_depth + 2
    fits = levels - at  # containers below the place: the leaf sits exactly ``levels`` deep
    decode_frame(build(nest(fits)), limits)
    assert refused(build(nest(fits + 1)), limits) == f"frame nests deeper than {levels} levels (in {field!r})"


def test_nesting_beyond_what_the_decoder_recurses_into_is_refused() -> None:
    data = b"\x83\xa4type\xa4call\xaarequest_id\x01\xa8function\xa1f".replace(b"\x83", b"\x84") \
        + b"\xa4args\x81\xa1x" + b"\x91" * 100_000 + b"\xc0"
    assert refused(data) == "frame nests deeper than 18 levels"


def _reference_depth_exceeds(value: Any, limit: int) -> bool:
    """The codec's depth walk before msgspec: over the whole decoded frame."""
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


VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=3),
              st.binary(max_size=3)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=2), inner, max_size=3)),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(PLACES)), VALUES, st.integers(0, 5))
def test_the_depth_check_agrees_with_the_walk_it_replaced(field: str, value: Any, document_depth: int) -> None:
    data = PLACES[field][0](value)
    limits = Limits(document_depth=document_depth)
    too_deep = _reference_depth_exceeds(msgpack.unpackb(data), document_depth + 2)
    try:
        decode_frame(data, limits)
    except ProtocolError as exc:
        assert too_deep and "nests deeper" in exc.message, exc.message
    else:
        assert not too_deep


# --- senders, and anything at all on the wire ---------------------------------------------------------------


def test_a_client_refuses_a_frame_the_daemon_would_refuse_before_sending_it() -> None:
    from runtime.client import _encode

    cap = max_frame_bytes(Limits())
    assert decode_frame(_encode(Call(request_id=1, function="f"), cap)) == Call(request_id=1, function="f")
    with pytest.raises(ProtocolError, match=r"'call' frame: Expected `str` of length <= 512 - at `\$.function`"):
        _encode(Call(request_id=1, function="f" * 600), cap)
    with pytest.raises(ProtocolError, match=r"at `\$.sub`"):
        _encode(Subscribe(request_id=1, sub=-1), cap)


SEEDS = [encode_frame(m) for m in ONE_OF_EACH]


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.booleans()),
                                        min_size=1, max_size=4))
def test_a_mangled_frame_decodes_or_is_refused_with_a_protocol_error(seed: bytes, edits: list[Any]) -> None:
    data = bytearray(seed)
    for pos, byte, insert in edits:
        if insert:
            data.insert(pos % (len(data) + 1), byte)
        else:
            data[pos % len(data)] = byte
    try:
        decode_frame(bytes(data))
    except ProtocolError:
        pass
