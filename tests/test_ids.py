"""Id parsing: the fast, cached parse gives exactly the answers of the base64 one it replaced."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import ValidationError
from runtime.values import ID_LENGTH, id_table, make_id


def reference_id_table(value: object) -> int:
    """The parse before the fast one: decode, re-encode to check the spelling, then the checksum."""
    if not isinstance(value, str) or len(value) != ID_LENGTH:
        raise ValidationError("not an Id")
    try:
        raw = base64.b32decode(value.upper() + "=" * (-len(value) % 8))
    except (ValueError, TypeError):
        raise ValidationError("not an Id") from None
    if base64.b32encode(raw).decode("ascii").rstrip("=").lower() != value:
        raise ValidationError("not canonical")
    body, check = raw[:-2], raw[-2:]
    if hashlib.blake2s(body, digest_size=2).digest() != check:
        raise ValidationError("bad checksum")
    return int.from_bytes(body[:4], "big")


def outcome(parse: object, value: object) -> object:
    try:
        return parse(value)  # type: ignore[operator]
    except ValidationError:
        return "refused"


ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0, 2e9), st.binary(min_size=6, max_size=6),
       st.lists(st.tuples(st.integers(0, ID_LENGTH - 1), st.sampled_from(ALPHABET + ALPHABET.upper() + "0189=_ -")),
                max_size=2))
def test_the_parse_agrees_with_the_reference(table: int, now: float, rnd: bytes, edits: list[tuple[int, str]]) -> None:
    value = make_id(table, now, rnd)
    assert id_table(value) == table
    for pos, char in edits:
        value = value[:pos] + char + value[pos + 1:]
    assert outcome(id_table, value) == outcome(reference_id_table, value)


@pytest.mark.parametrize("bad", [None, 5, "", "x" * ID_LENGTH, "a" * (ID_LENGTH + 1), b"a" * ID_LENGTH])
def test_non_ids_are_refused(bad: object) -> None:
    with pytest.raises(ValidationError, match="not a document Id"):
        id_table(bad)


def test_each_way_of_not_being_an_id_is_named() -> None:
    good = make_id(9, 1.7e9)
    last = ALPHABET[ALPHABET.index(good[-1]) ^ 1]  # the spare bit flipped: same bytes, other spelling
    with pytest.raises(ValidationError, match=r"not a document Id \(not canonical\)"):
        id_table(good[:-1] + last)
    with pytest.raises(ValidationError, match=r"not a document Id \(not canonical\)"):
        id_table(good.upper())
    flipped = good[:9] + ("a" if good[9] != "a" else "b") + good[10:]
    with pytest.raises(ValidationError, match=r"not a document Id \(bad checksum\)"):
        id_table(flipped)
    for _ in range(2):  # a refusal is not cached as an answer
        with pytest.raises(ValidationError):
            id_table(flipped)
    assert id_table(good) == id_table(good) == 9
