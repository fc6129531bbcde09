"""Pure tests of the aggregate component's B-tree and key encoding (no daemon).

The tree runs against :class:`~components.aggregate.memstore.MemoryStore`; a hypothesis state machine drives
random inserts/deletes/reads and checks each against a sorted-list model, and
``validate()`` after every step checks every structural invariant.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from components.aggregate import keys
from components.aggregate.btree import BTree, InvariantError, KeyExists, KeyMissing, Node
from components.aggregate.memstore import MemoryStore
from runtime import keycodec

# --- key encoding -----------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True),
    st.text(max_size=6), st.binary(max_size=6),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)), max_leaves=8)


@given(values)
def test_encode_matches_the_runtime_key_codec(v: Any) -> None:
    assert keys.encode(v) == keycodec.encode(v)


@given(values, values, values, values)
def test_positions_order_by_key_then_id(k1: Any, i1: Any, k2: Any, i2: Any) -> None:
    a, b = keys.position(k1, i1), keys.position(k2, i2)
    model_a = (keycodec.encode(k1), keycodec.encode(i1))
    model_b = (keycodec.encode(k2), keycodec.encode(i2))
    assert (a < b) == (model_a < model_b)
    assert (a == b) == (model_a == model_b)


def test_value_order_of_design() -> None:
    ordered = [None, -math.inf, -5, 1, 1.5, 2, math.inf, math.nan, False, True, "", "a", "b", b"", b"a",
               [], [1], [1, 2], [2], {}, {"a": 1}]
    enc = [keys.encode(v) for v in ordered]
    assert enc == sorted(enc)


def test_bounds_refuse_bad_shapes() -> None:
    with pytest.raises(ValueError, match="prefix"):
        keys.bounds_range({"prefix": [1], "eq": 2})
    with pytest.raises(ValueError, match="unknown bounds"):
        keys.bounds_range({"low": {"key": 1}})
    with pytest.raises(ValueError, match="inclusive"):
        keys.bounds_range({"lower": {"key": 1, "inclusive": "yes"}})
    with pytest.raises(TypeError, match="cannot hold"):
        keys.encode(object())


# --- the model -------------------------------------------------------------------------------------------

def _mk(v: Any) -> bytes:
    return keycodec.encode(v)


def in_bounds(key: Any, id: Any, bounds: dict[str, Any] | None) -> bool:
    """Bounds semantics written independently of keys.bounds_range (tuples of codec bytes)."""
    if not bounds:
        return True
    if "eq" in bounds:
        return _mk(key) == _mk(bounds["eq"])
    if "prefix" in bounds:
        p = bounds["prefix"]
        return (isinstance(key, list) and len(key) >= len(p)
                and all(_mk(a) == _mk(b) for a, b in zip(key, p, strict=False)))
    me = (_mk(key), _mk(id))
    for side, b in (("lower", bounds.get("lower")), ("upper", bounds.get("upper"))):
        if b is None:
            continue
        k = _mk(b["key"])
        inc = b.get("inclusive", True)
        if "id" in b:
            other = (k, _mk(b["id"]))
            ok = (me >= other if inc else me > other) if side == "lower" else (me <= other if inc else me < other)
        else:
            ok = (me[0] >= k if inc else me[0] > k) if side == "lower" else (me[0] <= k if inc else me[0] < k)
        if not ok:
            return False
    return True


_LOOP = asyncio.new_event_loop()


def run(coro: Any) -> Any:
    return _LOOP.run_until_complete(coro)

key_st = st.one_of(st.integers(0, 40), st.lists(st.integers(0, 3), min_size=1, max_size=3))
id_st = st.sampled_from(["a", "b", "c"])
sum_st = st.integers(-50, 50)


def bound_st() -> st.SearchStrategy[dict[str, Any] | None]:
    side = st.fixed_dictionaries({"key": key_st, "inclusive": st.booleans()}, optional={"id": id_st})
    return st.one_of(
        st.none(),
        st.fixed_dictionaries({}, optional={"lower": side, "upper": side}),
        st.builds(lambda p: {"prefix": p}, st.lists(st.integers(0, 3), max_size=2)),
        st.builds(lambda k: {"eq": k}, key_st),
    )


class TreeVsSortedList(RuleBasedStateMachine):
    """Random operations on a tree and on a sorted list; every answer must agree."""

    @initialize(size=st.sampled_from([4, 6, 16]), lazy=st.booleans())
    def setup(self, size: int, lazy: bool) -> None:
        self.store = MemoryStore()
        self.tree: BTree = run(self.store.new_tree(size, lazy))
        self.model: list[tuple[bytes, Any, Any, int]] = []  # (position by codec, key, id, sum), sorted

    def _entry(self, key: Any, id: Any, s: int) -> tuple[bytes, Any, Any, int]:
        return (_mk(key) + _mk(id), key, id, s)

    def _find(self, key: Any, id: Any) -> int | None:
        pos = _mk(key) + _mk(id)
        for i, e in enumerate(self.model):
            if e[0] == pos:
                return i
        return None

    @rule(key=key_st, id=id_st, s=sum_st)
    def insert(self, key: Any, id: Any, s: int) -> None:
        if self._find(key, id) is not None:
            with pytest.raises(KeyExists):
                run(self.tree.insert(key, id, s))
            return
        run(self.tree.insert(key, id, s))
        self.model.append(self._entry(key, id, s))
        self.model.sort(key=lambda e: e[0])

    @rule(keys_=st.lists(st.tuples(st.integers(0, 1000), id_st), min_size=5, max_size=40))
    def insert_many(self, keys_: list[tuple[int, str]]) -> None:
        for k, i in keys_:
            if self._find(k, i) is None:
                run(self.tree.insert(k, i, k % 7))
                self.model.append(self._entry(k, i, k % 7))
        self.model.sort(key=lambda e: e[0])

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete_existing(self, data: st.DataObject) -> None:
        e = self.model.pop(data.draw(st.integers(0, len(self.model) - 1)))
        removed = run(self.tree.delete(e[1], e[2]))
        assert (removed.key, removed.id, removed.sum) == (e[1], e[2], e[3])

    @precondition(lambda self: len(self.model) > 10)
    @rule(data=st.data())
    def delete_half(self, data: st.DataObject) -> None:
        for e in list(self.model[: len(self.model) // 2]):
            run(self.tree.delete(e[1], e[2]))
            self.model.remove(e)

    @rule(key=key_st, id=id_st)
    def delete_missing(self, key: Any, id: Any) -> None:
        if self._find(key, id) is None:
            with pytest.raises(KeyMissing):
                run(self.tree.delete(key, id))

    @rule(bounds=bound_st())
    def count_and_sum(self, bounds: dict[str, Any] | None) -> None:
        inside = [e for e in self.model if in_bounds(e[1], e[2], bounds)]
        assert run(self.tree.aggregate(keys.bounds_range(bounds))) == (len(inside), sum(e[3] for e in inside))

    @rule(bounds=bound_st(), offset=st.integers(-60, 60))
    def at(self, bounds: dict[str, Any] | None, offset: int) -> None:
        inside = [e for e in self.model if in_bounds(e[1], e[2], bounds)]
        got = run(self.tree.at(offset, keys.bounds_range(bounds)))
        if -len(inside) <= offset < len(inside):
            want = inside[offset]
            assert got is not None and (got.key, got.id, got.sum) == (want[1], want[2], want[3])
        else:
            assert got is None

    @rule(bounds=bound_st(), key=key_st, id=st.one_of(st.none(), id_st), desc=st.booleans())
    def index_of(self, bounds: dict[str, Any] | None, key: Any, id: Any, desc: bool) -> None:
        inside = [e for e in self.model if in_bounds(e[1], e[2], bounds)]
        if id is None:
            pos = keys.key_start(key)
            want = sum(1 for e in inside if (_mk(e[1]) > _mk(key) if desc else _mk(e[1]) < _mk(key)))
            got = run(self.tree.rank_desc(keys.key_end(key), keys.bounds_range(bounds)) if desc
                      else self.tree.rank(pos, keys.bounds_range(bounds)))
        else:
            me = _mk(key) + _mk(id)
            want = sum(1 for e in inside if e[0] > me) if desc else sum(1 for e in inside if e[0] < me)
            p = keys.position(key, id)
            got = run(self.tree.rank_desc(p + b"\x00", keys.bounds_range(bounds)) if desc
                      else self.tree.rank(p, keys.bounds_range(bounds)))
        assert got == want

    @rule(bounds=bound_st(), desc=st.booleans(), page=st.integers(1, 9))
    def paginate(self, bounds: dict[str, Any] | None, desc: bool, page: int) -> None:
        inside = [e for e in self.model if in_bounds(e[1], e[2], bounds)]
        if desc:
            inside.reverse()
        r = keys.bounds_range(bounds)
        seen: list[tuple[Any, Any]] = []
        while True:
            got = run(self.tree.items(r, "desc" if desc else "asc", page))
            seen += [(it.key, it.id) for it in got]
            if len(got) < page:
                break
            last = got[-1].pos
            r = keys.intersect(r, (None, last) if desc else (last + b"\x00", None))
        assert seen == [(e[1], e[2]) for e in inside]

    @rule()
    def toggle_lazy_root(self) -> None:
        run(self.tree.set_root_lazy(not self.tree.root_lazy))

    @invariant()
    def structure_is_valid(self) -> None:
        if not hasattr(self, "tree"):
            return
        report = run(self.tree.validate())
        assert report["count"] == len(self.model)
        assert report["sum"] == sum(e[3] for e in self.model)
        assert report["nodes"] == len(self.store.nodes)  # no leaked or lost node


TreeVsSortedList.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
test_tree_matches_sorted_list = TreeVsSortedList.TestCase


# --- reads per operation, laziness, validate catches corruption ----------------------------------------------

def _filled(n: int, size: int = 16, lazy: bool = False) -> tuple[MemoryStore, BTree]:
    store = MemoryStore()
    tree: BTree = run(store.new_tree(size, lazy))
    for i in range(n):
        run(tree.insert((i * 7919) % n, f"id{i}", i))
    return store, tree


def test_reads_per_operation_are_logarithmic() -> None:
    store, tree = _filled(5000)
    depth = run(tree.validate())["depth"]
    assert 2 <= depth <= 4
    for op in (lambda: tree.aggregate(), lambda: tree.aggregate(keys.bounds_range(
            {"lower": {"key": 100}, "upper": {"key": 4000, "inclusive": False}})),
               lambda: tree.at(2500), lambda: tree.at(-1), lambda: tree.rank(keys.key_start(1234))):
        store.reads = 0
        run(op())
        # at most the two boundary paths per descent, three descents for at() with bounds
        assert store.reads <= 3 * 2 * (depth + 1), store.reads
    store.reads = 0
    run(tree.aggregate())
    assert store.reads == 1  # an eager root answers count/sum alone


def test_lazy_root_is_not_rewritten_by_ordinary_writes() -> None:
    store, tree = _filled(2000, lazy=True)
    root_before = store.nodes[tree.root_id]
    untouched = 0
    for i in range(2000, 2100):
        run(tree.insert(i, "x", 1))
        untouched += store.nodes[tree.root_id] is root_before
        root_before = store.nodes[tree.root_id]
    assert untouched >= 80  # only splits reaching the root rewrite it
    report = run(tree.validate())
    assert report["count"] == 2100
    store.reads = 0
    assert run(tree.aggregate())[0] == 2100
    assert store.reads == 1 + len(store.nodes[tree.root_id].children)


def test_validate_names_a_corrupted_aggregate() -> None:
    store, tree = _filled(300, size=4)
    leaf_id = next(nid for nid, n in store.nodes.items() if not n.children)
    node = store.nodes[leaf_id]
    store.nodes[leaf_id] = Node(node.id, node.items, node.children, node.child_aggs, (node.agg[0] + 1, node.agg[1]))
    with pytest.raises(InvariantError, match=leaf_id):
        run(tree.validate())


def test_validate_names_items_out_of_order() -> None:
    store, tree = _filled(50, size=4)
    leaf_id = next(nid for nid, n in store.nodes.items() if not n.children and len(n.items) >= 2)
    node = store.nodes[leaf_id]
    store.nodes[leaf_id] = Node(node.id, list(reversed(node.items)), [], node.child_aggs, node.agg)
    with pytest.raises(InvariantError, match="out of order"):
        run(tree.validate())


def test_max_node_size_must_be_even_and_at_least_4() -> None:
    for bad in (2, 5, 3.0, True):
        with pytest.raises(ValueError, match="even integer"):
            BTree(MemoryStore(), "r", bad)  # type: ignore[arg-type]


def test_float_sums_and_mixed_key_types() -> None:
    store = MemoryStore()
    tree = run(store.new_tree(4, False))
    mixed = [None, 3, 2.5, True, "x", b"y", [1, "a"], {"k": 1}]
    for i, k in enumerate(mixed):
        run(tree.insert(k, i, 0.5 * i))
    got = run(tree.items((None, None), "asc", 100))
    assert [it.key for it in got] == mixed[:1] + [2.5, 3] + mixed[3:]
    assert run(tree.aggregate()) == (8, sum(0.5 * i for i in range(8)))


def test_writes_read_and_write_logarithmically_many_nodes() -> None:
    store, tree = _filled(5000, size=4)
    depth = run(tree.validate())["depth"]
    rng = __import__("random").Random(3)
    for i in rng.sample(range(5000), 200):
        store.reads = store.writes = 0
        run(tree.delete((i * 7919) % 5000, f"id{i}"))
        # the path, plus one sibling per level when fixing underflow
        assert store.reads <= 2 * (depth + 1) and store.writes <= 2 * (depth + 1) + 1, (store.reads, store.writes)
        store.reads = store.writes = 0
        run(tree.insert(-i - 1, "new", 1))
        assert store.reads <= depth + 2 and store.writes <= 2 * (depth + 1) + 1, (store.reads, store.writes)
    assert run(tree.validate())["count"] == 5000


class FakeDb:
    """Stands in for ctx.db for the store's bookkeeping only (ids minted here, counts each call)."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.calls = {"get": 0, "insert": 0, "replace": 0, "delete": 0}
        self.minted = 0

    async def get(self, id: str) -> dict[str, Any] | None:
        self.calls["get"] += 1
        doc = self.docs.get(id)
        return None if doc is None else {**doc, "_id": id}

    async def insert(self, table: str, doc: dict[str, Any]) -> str:
        self.calls["insert"] += 1
        assert not any(c.startswith("~") for c in doc["children"]), "a temporary id reached the database"
        self.minted += 1
        id = f"d{self.minted}"
        self.docs[id] = doc
        return id

    async def replace(self, id: str, doc: dict[str, Any]) -> None:
        self.calls["replace"] += 1
        assert not any(c.startswith("~") for c in doc["children"]), "a temporary id reached the database"
        self.docs[id] = doc

    async def delete(self, id: str) -> None:
        self.calls["delete"] += 1
        del self.docs[id]


def test_db_store_writes_each_node_once_per_batch_and_never_leaks_temporary_ids() -> None:
    from components.aggregate.store import NODES, DbStore, node_doc

    db = FakeDb()
    root_fields = {"root_of": [None], "max_node_size": 4, "root_lazy": True}
    root_id = run(db.insert(NODES, node_doc("t", Node(None, [], [], None, None), root_fields)))
    for batch in range(3):
        store = DbStore(db, {**db.docs[root_id], "_id": root_id})
        tree = BTree(store, root_id, 4, True)
        before = dict(db.calls)
        for i in range(batch * 500, batch * 500 + 500):
            run(tree.insert(i, "x", 1))
        for i in range(batch * 500, batch * 500 + 100, 3):
            run(tree.delete(i, "x"))
        written = run(store.flush())
        inserted = db.calls["insert"] - before["insert"]
        replaced = db.calls["replace"] - before["replace"]
        assert inserted + replaced == written and db.calls["get"] - before["get"] <= 20
        assert replaced <= 20  # only nodes that existed before the batch are replaced, each once
    check = DbStore(db, {**db.docs[root_id], "_id": root_id})
    report = run(BTree(check, root_id, 4, True).validate())
    assert report["count"] == 1500 - 3 * 34 and report["nodes"] == len(db.docs)
    assert db.docs[root_id]["root_of"] == [None]  # the root keeps its namespace and settings through rewrites
