"""Index maintenance and range scans checked against a plain Python model."""

from __future__ import annotations

import tempfile
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.keycodec import MISSING, encode
from runtime.storage import Storage
from runtime.transactions import Committer, IndexRange, Transaction

FIELD_VALUES = st.one_of(st.none(), st.integers(-3, 3), st.floats(-3, 3, allow_nan=False),
                         st.sampled_from(["a", "b", "ab"]), st.booleans())
DOC = st.fixed_dictionaries({}, optional={"a": FIELD_VALUES, "b": FIELD_VALUES})
OPS = st.lists(st.tuples(st.sampled_from(["insert", "patch", "delete"]), DOC, st.integers(0, 1000)),
               min_size=1, max_size=40)
LOWER = st.one_of(st.none(), st.tuples(st.sampled_from(["gt", "gte"]), FIELD_VALUES))
UPPER = st.one_of(st.none(), st.tuples(st.sampled_from(["lt", "lte"]), FIELD_VALUES))


def sort_key(doc: dict[str, Any], fields: list[str]) -> bytes:
    return b"".join(encode(doc.get(f, MISSING)) for f in fields) + encode(doc["_creation_time"]) + encode(doc["_id"])


def in_range(doc: dict[str, Any], eq: list[tuple[str, Any]], bounds: list[tuple[str, Any]], nxt: str | None) -> bool:
    for f, v in eq:
        if encode(doc.get(f, MISSING)) != encode(v):
            return False
    for op, v in bounds:
        x = encode(doc.get(nxt, MISSING))  # type: ignore[arg-type]
        e = encode(v)
        if not {"gt": x > e, "gte": x >= e, "lt": x < e, "lte": x <= e}[op]:
            return False
    return True


@settings(max_examples=60, deadline=None)
@given(OPS, st.lists(FIELD_VALUES, max_size=2), LOWER, UPPER, st.sampled_from(["asc", "desc"]), st.integers(1, 3))
def test_range_scans_match_the_model(ops, eq_values, lower, upper, order, commit_every) -> None:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as d:
        storage = Storage.open(d)
        storage.define_table("", "t", {"by_ab": ["a", "b"]})
        model: dict[str, dict[str, Any]] = {}
        with Committer(storage) as c:
            t = Transaction(storage, now=time.time())
            for n, (op, doc, pick) in enumerate(ops):
                ids = sorted(model)
                if op == "insert" or not ids:
                    new_id = t.insert("", "t", doc)
                    model[new_id] = t.get("", new_id)
                elif op == "patch":
                    target = ids[pick % len(ids)]
                    t.patch("", target, doc)
                    model[target] = {**model[target], **doc}
                else:
                    target = ids[pick % len(ids)]
                    t.delete("", target)
                    del model[target]
                if n % commit_every == 0:  # some writes committed, some still pending in the transaction
                    c.commit(t.prepare())
                    t.close()
                    t = Transaction(storage, now=time.time())
            fields = ["a", "b"]
            eq = list(zip(fields, eq_values, strict=False))
            nxt = fields[len(eq)] if len(eq) < 2 else None
            bounds = [b for b in (lower, upper) if b is not None] if nxt else []
            ops_list = [["eq", f, v] for f, v in eq] + [[op, nxt, v] for op, v in bounds]
            got, _, _ = t.scan("", "t", "by_ab", IndexRange.from_ops(ops_list), order)
            want = sorted((d for d in model.values() if in_range(d, eq, bounds, nxt)),
                          key=lambda d: sort_key(d, fields), reverse=order == "desc")
            assert got == want
            everything = t.scan("", "t")[0]
            assert {d["_id"] for d in everything} == set(model)
            c.commit(t.prepare())
            t.close()
            with Transaction(storage, now=time.time()) as fresh:
                assert fresh.scan("", "t", "by_ab", IndexRange.from_ops(ops_list), order)[0] == want
        storage.close()
