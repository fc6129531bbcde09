"""The value model, Ids, the msgpack codec's limits, the limits module and the error tree."""

from __future__ import annotations

import msgpack
import pytest

from runtime import values
from runtime.errors import ComponentError, ConflictError, LimitExceeded, ValidationError, from_wire
from runtime.limits import Limits


def test_ids_encode_their_table_and_carry_a_checksum() -> None:
    a = values.make_id(7, 1_700_000_000.0)
    b = values.make_id(7, 1_700_000_000.001)
    assert len(a) == values.ID_LENGTH and values.id_table(a) == 7
    assert a != b and a[:10] == b[:10]  # same table, near-same time: shared prefix (inserts append)
    for bad in ("", "x" * values.ID_LENGTH, 42, a.upper() + "a"):
        with pytest.raises(ValidationError):
            values.id_table(bad)
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    for c in alphabet:  # every one-character change of the last position is refused
        if c != a[-1]:
            with pytest.raises(ValidationError):
                values.id_table(a[:-1] + c)


def test_check_value_normalises_tuples_and_refuses_what_is_not_a_value() -> None:
    assert values.check_value({"a": (1, 2)}) == {"a": [1, 2]}
    assert values.check_value(bytearray(b"x")) == b"x"
    with pytest.raises(ValidationError, match="set is not a storable value"):
        values.check_value({1, 2})
    with pytest.raises(LimitExceeded) as err:
        values.check_value({"k" * 2000: 1})
    assert err.value.limit == "field_name_length"


def test_unpack_refuses_ext_types_and_oversized_frames() -> None:
    assert values.unpack(values.pack({"a": b"\x00", "b": [1, None]})) == {"a": b"\x00", "b": [1, None]}
    with pytest.raises(ValidationError, match="ext"):
        values.unpack(msgpack.packb(msgpack.ExtType(5, b"pickle")))
    with pytest.raises(LimitExceeded):
        values.unpack(values.pack("x" * 100), max_bytes=50)
    with pytest.raises(ValidationError, match="malformed"):
        values.unpack(b"\xc1garbage")


def test_limits_come_from_the_environment_with_clear_errors() -> None:
    lim = Limits.from_env({"BULKHEAD_TXN_WRITTEN_DOCUMENTS": "5", "BULKHEAD_QUERY_MUTATION_TIMEOUT_S": "2.5"})
    assert lim.txn_written_documents == 5 and lim.query_mutation_timeout_s == 2.5
    assert Limits.from_env({}, call_depth=3).call_depth == 3
    with pytest.raises(ValueError, match="BULKHEAD_CALL_DEPTH"):
        Limits.from_env({"BULKHEAD_CALL_DEPTH": "deep"})


def test_errors_cross_the_wire_with_their_type_and_fields() -> None:
    err = from_wire(ComponentError({"kind": "RateLimited", "retry_after": 1.5}).to_wire())
    assert isinstance(err, ComponentError) and err.data == {"kind": "RateLimited", "retry_after": 1.5}
    conflict = from_wire(ConflictError("changed", table="t").to_wire())
    assert isinstance(conflict, ConflictError) and conflict.table == "t" and conflict.code == "occ_conflict"
    limit = from_wire(LimitExceeded("document_size_bytes", 2, 1).to_wire())
    assert isinstance(limit, LimitExceeded) and limit.limit == "document_size_bytes"
