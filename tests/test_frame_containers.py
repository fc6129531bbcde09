"""Counting a frame's lists and maps in its bytes, before decoding (:func:`runtime.protocol.codec.count_containers`).

The count must equal what decoding builds, for every msgpack value (both encoders the project uses, every
integer and length width); a frame over ``frame_containers_count`` is refused from an untrusted peer, naming
the limit, while a frame whose *bytes* merely look like container heads (floats, ints, UTF-8 text) is not.
"""

from __future__ import annotations

from typing import Any

import msgpack
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import ProtocolError
from runtime.limits import DEFAULT
from runtime.protocol import codec
from runtime.protocol.messages import Result

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
           | st.text(max_size=300) | st.binary(max_size=300))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=20)
                      | st.dictionaries(st.text(max_size=10), inner, max_size=20), max_leaves=200)


def containers(value: Any) -> int:
    if isinstance(value, list):
        return 1 + sum(map(containers, value))
    if isinstance(value, dict):
        return 1 + sum(map(containers, value.values()))
    return 0


@settings(max_examples=300, deadline=None)
@given(values)
def test_the_count_is_exact_for_either_encoder(value: Any) -> None:
    expected = containers(value)
    assert codec.count_containers(msgspec.msgpack.encode(value), 10**9) == expected
    assert codec.count_containers(msgpack.packb(value, use_bin_type=True), 10**9) == expected


def test_long_strings_and_binaries_are_jumped_over() -> None:
    value = ["\x90" * 70_000, b"\x91" * 70_000, "é" * 40_000, [[]]]
    assert codec.count_containers(msgpack.packb(value, use_bin_type=True), 10**9) == 3


def test_counting_stops_past_the_limit() -> None:
    assert codec.count_containers(msgspec.msgpack.encode([[]] * 1000), 10) == 11


def _frame(value: Any) -> bytes:
    return codec.encode_frame(Result(request_id=1, ok=True, value=value))


def test_an_untrusted_frame_over_the_limit_is_refused_naming_it() -> None:
    most = DEFAULT.frame_containers_count
    bomb = _frame([[] for _ in range(most + 1)])  # within every per-list limit of the frame walk
    with pytest.raises(ProtocolError) as err:
        codec.decode_frame(bomb, untrusted=True)
    assert f"frame_containers_count={most}" in err.value.message
    assert codec.decode_frame(bomb).value[0] == []  # a trusted peer's frame is not counted
    assert codec.decode_frame(_frame([[] for _ in range(most - 2)]), untrusted=True).ok  # + the list + the frame


@pytest.mark.parametrize("value", [[128] * 300_000, [1.0e-300 * i for i in range(150_000)], "日本語" * 200_000],
                         ids=["uint8", "floats", "utf-8"])
def test_bytes_that_only_look_like_containers_are_accepted(value: Any) -> None:
    data = _frame(value)
    looks_like = len(data.translate(None, codec._NOT_CONTAINER_HEADS))
    assert looks_like > DEFAULT.frame_containers_count or isinstance(value, str)
    assert codec.decode_frame(data, untrusted=True).value == value
