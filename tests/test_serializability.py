"""Interleaved transactions against a serial model (hypothesis state machine).

Many transactions are open at once; each reads (gets, range scans with limits,
both orders), writes, opens and closes nested frames, and finally commits.  The
machine checks:

* every committed writing transaction, replayed serially in commit order on the model
  state left by the commits before it, reads exactly what it read for real —
  so the committed history is serializable — and the final state matches
  (a read-only transaction serializes at its snapshot and is replayed there);
* every rejected transaction really conflicted: a transaction committed after
  its snapshot wrote a version (old or new) that falls in what it read.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from runtime.errors import ConflictError, NotFoundError
from runtime.storage import Storage
from runtime.transactions import Committer, IndexRange, Transaction

Key = tuple[Any, ...]
Region = Callable[[Key, Key], bool]  # (by_k key, by_creation_time key) -> observed?


def k_key(doc: dict[str, Any]) -> Key:
    return (doc["k"], doc["_creation_time"], doc["_id"])


def ct_key(doc: dict[str, Any]) -> Key:
    return (doc["_creation_time"], doc["_id"])


class ModelTxn:
    """A serial replay of one transaction's operations on a dict of documents."""

    def __init__(self, state: dict[str, dict[str, Any]]) -> None:
        self.base = state
        self.frames: list[dict[str, dict[str, Any] | None]] = [{}]

    def lookup(self, doc_id: str) -> dict[str, Any] | None:
        for frame in reversed(self.frames):
            if doc_id in frame:
                return frame[doc_id]
        return self.base.get(doc_id)

    def visible(self) -> list[dict[str, Any]]:
        ids = set(self.base) | {i for f in self.frames for i in f}
        return [d for d in (self.lookup(i) for i in ids) if d is not None]

    def run(self, op: tuple[Any, ...]) -> Any:
        kind = op[0]
        if kind == "get":
            return self.lookup(op[1])
        if kind == "scan":
            _, index, lo, hi, order, limit = op
            keyf = k_key if index == "by_k" else ct_key
            docs = [d for d in self.visible() if index != "by_k" or lo <= d["k"] < hi]
            docs.sort(key=keyf, reverse=order == "desc")
            return docs[:limit] if limit else docs
        if kind == "put":
            self.frames[-1][op[1]] = op[2]
            return None
        if kind == "push":
            self.frames.append({})
        elif kind == "merge":
            top = self.frames.pop()
            self.frames[-1].update(top)
        elif kind == "drop":
            self.frames.pop()
        return None

    def writes(self) -> dict[str, dict[str, Any] | None]:
        assert len(self.frames) == 1
        return self.frames[0]


class Open:
    """A live transaction and everything the checks need to know about it."""

    def __init__(self, txn: Transaction, began_after: int) -> None:
        self.txn = txn
        self.began_after = began_after  # commits[:began_after] are in its snapshot
        self.ops: list[tuple[Any, ...]] = []
        self.results: list[Any] = []
        self.regions: list[Region] = []
        self.tokens: list[int] = []


class Serializability(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = tempfile.TemporaryDirectory()
        self.storage = Storage.open(self.dir.name)
        self.storage.define_table("", "t", {"by_k": ["k"]})
        self.committer = Committer(self.storage).start()
        self.clock = itertools.count(1)
        self.open: list[Open] = []
        self.commits: list[dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None]]] = []
        self.state: dict[str, dict[str, Any]] = {}
        self.history: list[dict[str, dict[str, Any]]] = [{}]  # state after commits[:i]
        self.known_ids: list[str] = []
        self.rejected = 0

    def teardown(self) -> None:
        for o in self.open:
            o.txn.close()
        self.committer.stop()
        self.storage.close()
        self.dir.cleanup()

    # --- beginning and committing -------------------------------------------------------

    @precondition(lambda self: len(self.open) < 4)
    @rule()
    def begin(self) -> None:
        self.open.append(Open(Transaction(self.storage, now=float(next(self.clock))), len(self.commits)))

    def _pick(self, data: st.DataObject) -> Open:
        return self.open[data.draw(st.integers(0, len(self.open) - 1))]

    def _do(self, o: Open, op: tuple[Any, ...], result: Any, region: Region | None = None) -> None:
        o.ops.append(op)
        o.results.append(result)
        if region is not None:
            o.regions.append(region)

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        o = self._pick(data)
        while o.tokens:  # close frames still open, as a handler returning would
            token = o.tokens.pop()
            o.txn.commit_nested(token)
            self._do(o, ("merge",), None)
        self.open.remove(o)
        prepared = o.txn.prepare()
        if prepared.is_read_only:  # serializes at its snapshot: replay it there
            o.txn.close()
            model = ModelTxn(self.history[o.began_after])
            for op, result in zip(o.ops, o.results, strict=True):
                assert model.run(op) == result, f"snapshot replay of read-only {op} differs"
            return
        try:
            self.committer.commit(prepared)
        except ConflictError:
            self.rejected += 1
            self._check_really_conflicted(o)
            return
        finally:
            o.txn.close()
        self._replay_serially(o)

    def _replay_serially(self, o: Open) -> None:
        model = ModelTxn(self.state)
        for op, result in zip(o.ops, o.results, strict=True):
            assert model.run(op) == result, f"serial replay of {op} differs"
        changes = {}
        for doc_id, new in model.writes().items():
            old = self.state.get(doc_id)
            changes[doc_id] = (old, new)
            if new is None:
                self.state.pop(doc_id, None)
            else:
                self.state[doc_id] = new
        self.commits.append(changes)
        self.history.append(dict(self.state))

    def _check_really_conflicted(self, o: Open) -> None:
        for changes in self.commits[o.began_after :]:
            for old, new in changes.values():
                for version in (old, new):
                    if version is not None and any(r(k_key(version), ct_key(version)) for r in o.regions):
                        return
        raise AssertionError("a transaction was rejected although no later commit touched what it read")

    # --- reads ----------------------------------------------------------------------------

    @precondition(lambda self: self.open and self.known_ids)
    @rule(data=st.data())
    def get(self, data: st.DataObject) -> None:
        o = self._pick(data)
        doc_id = data.draw(st.sampled_from(self.known_ids))
        self._do(o, ("get", doc_id), o.txn.get("", doc_id), lambda kk, ck, i=doc_id: kk[2] == i)

    @precondition(lambda self: self.open)
    @rule(data=st.data(), lo=st.integers(0, 4), width=st.integers(1, 4), order=st.sampled_from(["asc", "desc"]),
          limit=st.sampled_from([None, 1, 2, 3]), by_k=st.booleans())
    def scan(self, data: st.DataObject, lo: int, width: int, order: str, limit: int | None, by_k: bool) -> None:
        o = self._pick(data)
        hi = lo + width
        if by_k:
            rng = IndexRange.from_ops([["gte", "k", lo], ["lt", "k", hi]])
            docs, _, done = o.txn.scan("", "t", "by_k", rng, order, limit)
        else:
            docs, _, done = o.txn.scan("", "t", "by_creation_time", order=order, limit=limit)
        self._do(o, ("scan", "by_k" if by_k else "ct", lo, hi, order, limit), docs,
                 self._region(docs, done, by_k, lo, hi, order))

    @staticmethod
    def _region(docs: list[dict[str, Any]], done: bool, by_k: bool, lo: int, hi: int, order: str) -> Region:
        """What a scan observed, in model terms: the range, cut at the last document if a limit stopped it."""
        inf = (math.inf,)
        lo_key: Key = (lo,) if by_k else (-math.inf,)
        hi_key: Key = (hi,) if by_k else inf
        if not done and docs:
            last = k_key(docs[-1]) if by_k else ct_key(docs[-1])
            if order == "asc":
                hi_key = last + ("\uffff",)
            else:
                lo_key = last
        pick = 0 if by_k else 1
        return lambda kk, ck: lo_key <= (kk, ck)[pick] < hi_key

    # --- writes ----------------------------------------------------------------------------

    @precondition(lambda self: self.open)
    @rule(data=st.data(), k=st.integers(0, 6), v=st.integers(-3, 3))
    def insert(self, data: st.DataObject, k: int, v: int) -> None:
        o = self._pick(data)
        doc_id = o.txn.insert("", "t", {"k": k, "v": v})
        self.known_ids.append(doc_id)
        doc = o.txn.frames.lookup(doc_id).doc  # type: ignore[union-attr]
        self._do(o, ("put", doc_id, doc), None)

    @precondition(lambda self: self.open and self.known_ids)
    @rule(data=st.data(), k=st.integers(0, 6), v=st.integers(-3, 3), delete=st.booleans())
    def update(self, data: st.DataObject, k: int, v: int, delete: bool) -> None:
        o = self._pick(data)
        doc_id = data.draw(st.sampled_from(self.known_ids))
        current = o.txn.get("", doc_id)
        self._do(o, ("get", doc_id), current, lambda kk, ck, i=doc_id: kk[2] == i)
        if current is None:
            with pytest.raises(NotFoundError):
                o.txn.patch("", doc_id, {"v": v})
            return
        if delete:
            o.txn.delete("", doc_id)
            self._do(o, ("put", doc_id, None), None)
        else:
            o.txn.patch("", doc_id, {"k": k, "v": v})
            self._do(o, ("put", doc_id, {**current, "k": k, "v": v}), None)

    # --- sub-transactions ---------------------------------------------------------------------

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def push(self, data: st.DataObject) -> None:
        o = self._pick(data)
        o.tokens.append(o.txn.begin_nested())
        self._do(o, ("push",), None)

    @precondition(lambda self: any(o.tokens for o in self.open))
    @rule(data=st.data(), keep=st.booleans())
    def pop(self, data: st.DataObject, keep: bool) -> None:
        o = data.draw(st.sampled_from([o for o in self.open if o.tokens]))
        token = o.tokens.pop()
        if keep:
            o.txn.commit_nested(token)
        else:
            o.txn.rollback_nested(token)
        self._do(o, ("merge",) if keep else ("drop",), None)

    @invariant()
    def stored_state_matches_the_model(self) -> None:
        with Transaction(self.storage, now=0.0) as t:
            stored = {d["_id"]: d for d in t.scan("", "t")[0]}
            by_k = t.scan("", "t", "by_k")[0]
        assert stored == self.state
        assert [d["_id"] for d in by_k] == [d["_id"] for d in sorted(self.state.values(), key=k_key)]


Serializability.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_serializable_histories = Serializability.TestCase


@pytest.mark.slow
def test_serializable_histories_soak() -> None:
    class Soak(Serializability):
        pass

    Soak.TestCase.settings = settings(max_examples=600, stateful_step_count=80, deadline=None)
    Soak.TestCase().runTest()
