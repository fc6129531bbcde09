"""The order-preserving key encoding: order and round trip, property-tested."""

from __future__ import annotations

import math
from fractions import Fraction
from functools import cmp_to_key
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.keycodec import MISSING, decode, decode_tuple, encode, encode_tuple, prefix_end

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    INT64,
    st.integers(min_value=-(2**60), max_value=2**60).map(float),  # big ints as floats: exact-compare territory
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(),
    st.sampled_from([0, 0.0, -0.0, 1, 1.0, 2**53, 2**53 + 1, float(2**53), 5e-324, -5e-324, 1e308, True, False,
                     "", b"", "\x00", b"\x00"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)),
    max_leaves=12,
)


def rank(v: Any) -> int:
    if v is MISSING:
        return 0
    if v is None:
        return 1
    if isinstance(v, bool):
        return 3
    if isinstance(v, (int, float)):
        return 2
    return {str: 4, bytes: 5, list: 6, dict: 7}[type(v)]


def model_cmp(a: Any, b: Any) -> int:
    """The value order of DESIGN.md, written plainly as the oracle."""
    ra, rb = rank(a), rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if ra == 2:
        ka = (1, 0) if isinstance(a, float) and math.isnan(a) else (0, Fraction(a) if not math.isinf(a) else a)
        kb = (1, 0) if isinstance(b, float) and math.isnan(b) else (0, Fraction(b) if not math.isinf(b) else b)
        if ka != kb:
            return -1 if ka < kb else 1
        fa, fb = isinstance(a, float), isinstance(b, float)  # an int ties before an equal float
        return (fa > fb) - (fa < fb)
    if ra in (0, 1):
        return 0
    if ra == 6:
        for x, y in zip(a, b, strict=False):
            c = model_cmp(x, y)
            if c:
                return c
        return (len(a) > len(b)) - (len(a) < len(b))
    if ra == 7:
        return model_cmp([[k, a[k]] for k in sorted(a)], [[k, b[k]] for k in sorted(b)])
    if ra == 4:
        a, b = a.encode(), b.encode()
    return (a > b) - (a < b)


def same(a: Any, b: Any) -> bool:
    return model_cmp(a, b) == 0 and type(a) is type(b) or (a is MISSING and b is MISSING)


@settings(max_examples=600)
@given(VALUES, VALUES)
def test_encoding_order_matches_the_value_order(a: Any, b: Any) -> None:
    ea, eb = encode(a), encode(b)
    c = model_cmp(a, b)
    assert (ea < eb) == (c < 0)
    assert (ea == eb) == (c == 0)


@settings(max_examples=400)
@given(VALUES)
def test_decode_inverts_encode(v: Any) -> None:
    out = decode(encode(v))
    assert model_cmp(out, v) == 0
    assert encode(out) == encode(v)


@settings(max_examples=300)
@given(st.integers(1, 4).flatmap(
    lambda n: st.tuples(st.lists(VALUES, min_size=n, max_size=n), st.lists(VALUES, min_size=n, max_size=n))))
def test_concatenated_fields_keep_the_order_and_the_prefix_bound(pair: tuple[list[Any], list[Any]]) -> None:
    a, b = pair
    assert (encode_tuple(a) < encode_tuple(b)) == (model_cmp(a, b) < 0)
    assert [encode(x) for x in decode_tuple(encode_tuple(a))] == [encode(x) for x in a]
    # every key extending the encoded first field stays under its prefix bound
    assert encode(a[0]) <= encode_tuple(a) < prefix_end(encode(a[0]))


def test_known_order_across_types() -> None:
    ordered = [MISSING, None, -math.inf, -(2**63), -1.5, -1, -1.0, 0, 0.0, 5e-324, 1, 1.0, 1.5, 2, 2**53, float(2**53),
               2**53 + 1, 2**63 - 1, math.inf, math.nan, False, True, "", "a", "a\x00", "ab", "é", b"", b"\x00",
               [], [None], [1, 2], {}, {"a": 1}]
    keys = [encode(v) for v in ordered]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert [encode(v) for v in sorted(ordered[1:], key=cmp_to_key(model_cmp))] == keys[1:]


def test_negative_zero_keys_as_zero_and_bool_is_not_a_number() -> None:
    assert encode(-0.0) == encode(0.0)
    assert encode(True) != encode(1) and encode(True) > encode(2**63 - 1)
    assert decode(encode(2**62 + 1)) == 2**62 + 1 and isinstance(decode(encode(3)), int)
    assert decode(encode(0.1)) == 0.1 and isinstance(decode(encode(2.0)), float)
