"""A counted, summed B-tree over an async node store (pure algorithm, storage-agnostic).

The same code runs against ``memstore.MemoryStore`` in the property tests and
against the component's ``ctx.db`` tables (``component.py``).

Shape (``M = max_node_size``, even and >= 4; ``m = M // 2``):

- every node holds sorted :class:`Item` s; an internal node with ``k`` items
  has ``k + 1`` children; all leaves are at the same depth;
- a non-root node holds ``m..M`` items, the root ``0..M`` (an internal root
  at least 1);
- every non-root node stores its own subtree aggregate ``agg = (count, sum)``
  and the aggregate of each child (``child_aggs``), so a range count reads
  only the two boundary paths: O(depth) node reads, not O(M * depth);
- a *lazy* root stores neither: a write that does not split or merge below
  the root leaves the root untouched, so writes into different children of
  the root never conflict on it.  Reads that need the root's totals read its
  children instead (at most ``M + 1`` reads, fetched concurrently).

The root keeps its node id for the life of the tree: a root split moves its
halves into two new nodes, and a root collapse moves its only child into it.

Every public operation reads O(depth) nodes (plus the root's children when
the root is lazy and totals are needed); writes touch the path to the leaf
and at most one sibling per level.  The caller of a helper owns the node it
passed: helpers mutate it in memory and the caller writes it, so no node is
written twice by one operation.
"""


import asyncio
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from components.aggregate.keys import Range, is_empty, position

Agg = tuple[int, Any]
"""``(count, sum)`` of a subtree; the sum is an int while every summand is one."""


class KeyExists(Exception):
    """Insert of a ``(key, id)`` already in the tree."""


class KeyMissing(Exception):
    """Delete of a ``(key, id)`` not in the tree."""


class InvariantError(Exception):
    """:meth:`BTree.validate` found a broken invariant (the message names node and rule)."""


class Item:
    """One element: its key, the id that breaks ties, its summand; ``pos`` (position bytes) is computed on first use."""

    __slots__ = ("key", "id", "sum", "_pos")

    def __init__(self, key: Any, id: Any, sum: Any, pos: bytes | None = None) -> None:
        self.key = key
        self.id = id
        self.sum = sum
        self._pos = pos

    @property
    def pos(self) -> bytes:
        if self._pos is None:
            self._pos = position(self.key, self.id)
        return self._pos

    @classmethod
    def of(cls, key: Any, id: Any, sum_value: Any = 0) -> "Item":
        return cls(key, id, sum_value, position(key, id))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Item) and (self.key, self.id, self.sum) == (other.key, other.id, other.sum)

    def __repr__(self) -> str:
        return f"Item({self.key!r}, {self.id!r}, {self.sum!r})"


@dataclass
class Node:
    """A node as the algorithm sees it; ``id`` is assigned by the store on create."""

    id: str | None
    items: list[Item]
    children: list[str] = field(default_factory=list)
    child_aggs: list[Agg] | None = field(default_factory=list)
    agg: Agg | None = None

    @property
    def leaf(self) -> bool:
        return not self.children


class NodeStore(Protocol):
    """Where nodes live.  ``get`` returns a fresh copy each time (callers mutate it)."""

    async def get(self, node_id: str) -> Node: ...
    async def create(self, node: Node) -> str: ...
    async def put(self, node: Node) -> None: ...
    async def delete(self, node_id: str) -> None: ...


def _pos(it: Item) -> bytes:
    return it.pos


def _add(a: Agg, b: Agg) -> Agg:
    return a[0] + b[0], a[1] + b[1]


def compute_agg(items: Sequence[Item], child_aggs: Sequence[Agg]) -> Agg:
    """The aggregate of a node from its items and its children's aggregates (fixed order of addition)."""
    total: Any = 0
    for it in items:
        total = total + it.sum
    count = len(items)
    for c, s in child_aggs:
        count += c
        total = total + s
    return count, total


class BTree:
    """Operations on one tree: its store, root id and settings."""

    def __init__(self, store: NodeStore, root_id: str, max_node_size: int = 16, root_lazy: bool = True) -> None:
        check_max_node_size(max_node_size)
        self.store = store
        self.root_id = root_id
        self.max = max_node_size
        self.min = max_node_size // 2
        self.root_lazy = root_lazy

    # --- helpers ---------------------------------------------------------------------------------------

    async def _get_many(self, ids: Sequence[str]) -> list[Node]:
        return list(await asyncio.gather(*(self.store.get(i) for i in ids)))

    def _seal(self, node: Node) -> None:
        """Recompute a node's stored aggregate (none for a lazy root)."""
        if node.id == self.root_id and self.root_lazy:
            node.agg, node.child_aggs = None, None
        else:
            assert node.child_aggs is not None
            node.agg = compute_agg(node.items, node.child_aggs)

    async def _child_aggs(self, node: Node) -> list[Agg]:
        if node.child_aggs is not None:
            return node.child_aggs
        return [c.agg for c in await self._get_many(node.children)]  # type: ignore[misc]

    async def _total(self, node: Node) -> Agg:
        if node.agg is not None:
            return node.agg
        return compute_agg(node.items, await self._child_aggs(node))

    # --- writes ----------------------------------------------------------------------------------------

    async def insert(self, key: Any, id: Any, sum_value: Any = 0) -> None:
        """Insert ``(key, id)``; raise :class:`KeyExists` if it is there."""
        item = Item.of(key, id, sum_value)
        root = await self.store.get(self.root_id)
        shape = _shape(root)
        await self._insert(root, item)
        if len(root.items) > self.max:
            await self._split_root(root)
        await self._write_root(root, shape)

    async def _insert(self, node: Node, item: Item) -> None:
        i = bisect_left(node.items, item.pos, key=_pos)
        if i < len(node.items) and node.items[i].pos == item.pos:
            raise KeyExists(f"key {item.key!r} with id {item.id!r} is already in the aggregate")
        if node.leaf:
            node.items.insert(i, item)
            return
        child = await self.store.get(node.children[i])
        await self._insert(child, item)
        if len(child.items) > self.max:
            median, right = await self._split(child)
            node.items.insert(i, median)
            node.children.insert(i + 1, right.id)  # type: ignore[arg-type]
            if node.child_aggs is not None:
                node.child_aggs.insert(i + 1, right.agg)  # type: ignore[arg-type]
        self._seal(child)
        await self.store.put(child)
        if node.child_aggs is not None:
            node.child_aggs[i] = child.agg  # type: ignore[assignment]

    async def _split(self, node: Node) -> tuple[Item, Node]:
        """Split an overfull non-root node: it keeps the left half; the right half is created."""
        m = self.min
        assert node.child_aggs is not None
        right = Node(None, node.items[m + 1:], node.children[m + 1:], node.child_aggs[m + 1:])
        median = node.items[m]
        node.items, node.children, node.child_aggs = node.items[:m], node.children[:m + 1], node.child_aggs[:m + 1]
        self._seal(right)
        right.id = await self.store.create(right)
        return median, right

    async def _split_root(self, root: Node) -> None:
        m = self.min
        aggs = await self._child_aggs(root) if root.children else []
        halves = []
        for items, children, child_aggs in ((root.items[:m], root.children[:m + 1], aggs[:m + 1]),
                                            (root.items[m + 1:], root.children[m + 1:], aggs[m + 1:])):
            half = Node(None, items, children, list(child_aggs))
            self._seal(half)
            half.id = await self.store.create(half)
            halves.append(half)
        root.items = [root.items[m]]
        root.children = [h.id for h in halves]  # type: ignore[misc]
        root.child_aggs = [h.agg for h in halves]  # type: ignore[misc]

    async def _write_root(self, root: Node, shape: Any) -> None:
        self._seal(root)
        if not self.root_lazy or _shape(root) != shape:
            await self.store.put(root)

    async def delete(self, key: Any, id: Any) -> Item:
        """Remove ``(key, id)`` and return it; raise :class:`KeyMissing` if it is not there."""
        pos = position(key, id)
        root = await self.store.get(self.root_id)
        shape = _shape(root)
        removed = await self._delete(root, pos, key, id)
        if not root.items and root.children:
            child = await self.store.get(root.children[0])
            root.items, root.children, root.child_aggs = child.items, child.children, child.child_aggs
            await self.store.delete(child.id)  # type: ignore[arg-type]
        await self._write_root(root, shape)
        return removed

    async def _delete(self, node: Node, pos: bytes, key: Any, id: Any) -> Item:
        i = bisect_left(node.items, pos, key=_pos)
        found = i < len(node.items) and node.items[i].pos == pos
        if node.leaf:
            if not found:
                raise KeyMissing(f"key {key!r} with id {id!r} is not in the aggregate")
            return node.items.pop(i)
        child = await self.store.get(node.children[i])
        if found:
            removed = node.items[i]
            node.items[i] = await self._pop_max(child)
        else:
            removed = await self._delete(child, pos, key, id)
        await self._settle(node, i, child)
        return removed

    async def _pop_max(self, node: Node) -> Item:
        if node.leaf:
            return node.items.pop()
        j = len(node.children) - 1
        child = await self.store.get(node.children[j])
        item = await self._pop_max(child)
        await self._settle(node, j, child)
        return item

    async def _settle(self, node: Node, i: int, child: Node) -> None:
        """Write ``child`` (``node.children[i]``) after a removal below it, fixing underflow."""
        aggs = node.child_aggs
        if len(child.items) >= self.min:
            self._seal(child)
            await self.store.put(child)
            if aggs is not None:
                aggs[i] = child.agg  # type: ignore[assignment]
            return
        left_side = i > 0
        j = i - 1 if left_side else i + 1
        sib = await self.store.get(node.children[j])
        assert child.child_aggs is not None and sib.child_aggs is not None
        if len(sib.items) > self.min:  # borrow one item through the separator
            sep = min(i, j)
            if left_side:
                child.items.insert(0, node.items[sep])
                node.items[sep] = sib.items.pop()
                if sib.children:
                    child.children.insert(0, sib.children.pop())
                    child.child_aggs.insert(0, sib.child_aggs.pop())
            else:
                child.items.append(node.items[sep])
                node.items[sep] = sib.items.pop(0)
                if sib.children:
                    child.children.append(sib.children.pop(0))
                    child.child_aggs.append(sib.child_aggs.pop(0))
            for n, k in ((child, i), (sib, j)):
                self._seal(n)
                await self.store.put(n)
                if aggs is not None:
                    aggs[k] = n.agg  # type: ignore[assignment]
            return
        left, right, li = (sib, child, j) if left_side else (child, sib, i)
        assert left.child_aggs is not None and right.child_aggs is not None
        left.items = left.items + [node.items.pop(li)] + right.items
        left.children = left.children + right.children
        left.child_aggs = left.child_aggs + right.child_aggs
        node.children.pop(li + 1)
        if aggs is not None:
            aggs.pop(li + 1)
        self._seal(left)
        await self.store.put(left)
        await self.store.delete(right.id)  # type: ignore[arg-type]
        if aggs is not None:
            aggs[li] = left.agg  # type: ignore[assignment]

    # --- reads -----------------------------------------------------------------------------------------

    async def aggregate(self, r: Range = (None, None)) -> Agg:
        """``(count, sum)`` of the items whose positions lie in ``r``."""
        if is_empty(r):
            return 0, 0
        return await self._agg(await self.store.get(self.root_id), r[0], r[1])

    async def _agg(self, node: Node, lo: bytes | None, hi: bytes | None) -> Agg:
        if lo is None and hi is None:
            return await self._total(node)
        i_lo = 0 if lo is None else bisect_left(node.items, lo, key=_pos)
        i_hi = len(node.items) if hi is None else bisect_left(node.items, hi, key=_pos)
        total: Agg = compute_agg(node.items[i_lo:i_hi], ())
        if node.leaf:
            return total
        partial = {j for j, part in ((i_lo, lo is not None), (i_hi, hi is not None)) if part}
        need = [j for j in range(i_lo, i_hi + 1) if j in partial or node.child_aggs is None]
        loaded = dict(zip(need, await self._get_many([node.children[j] for j in need]), strict=True))
        for j in range(i_lo, i_hi + 1):
            if j in partial:
                sub = await self._agg(loaded[j], lo if j == i_lo else None, hi if j == i_hi else None)
            elif node.child_aggs is not None:
                sub = node.child_aggs[j]
            else:
                sub = loaded[j].agg  # type: ignore[assignment]
            total = _add(total, sub)
        return total

    async def at(self, offset: int, r: Range = (None, None)) -> Item | None:
        """The item at ``offset`` among those in ``r`` (negative counts from the end), or None."""
        if is_empty(r):
            return None
        root = await self.store.get(self.root_id)
        base = 0 if r[0] is None else (await self._agg(root, None, r[0]))[0]
        total = (await self._agg(root, r[0], r[1]))[0]
        if offset < 0:
            offset += total
        if not 0 <= offset < total:
            return None
        return await self._at(root, base + offset)

    async def _at(self, node: Node, k: int) -> Item:
        if node.leaf:
            return node.items[k]
        for j, (count, _) in enumerate(await self._child_aggs(node)):
            if k < count:
                return await self._at(await self.store.get(node.children[j]), k)
            k -= count
            if k == 0:
                return node.items[j]
            k -= 1
        raise InvariantError(f"offset beyond the end of node {node.id}")

    async def rank(self, pos: bytes, r: Range = (None, None)) -> int:
        """How many items in ``r`` lie below position ``pos``."""
        hi = pos if r[1] is None else min(pos, r[1])
        return (await self.aggregate((r[0], hi)))[0]

    async def rank_desc(self, pos: bytes, r: Range = (None, None)) -> int:
        """How many items in ``r`` lie at or above ``pos`` (the descending index of ``pos``)."""
        lo = pos if r[0] is None else max(pos, r[0])
        return (await self.aggregate((lo, r[1])))[0]

    async def items(self, r: Range = (None, None), order: str = "asc", limit: int = 100) -> list[Item]:
        """Up to ``limit`` items in ``r`` in key order (``"desc"``: from the top)."""
        out: list[Item] = []
        if limit > 0 and not is_empty(r):
            await self._collect(await self.store.get(self.root_id), r[0], r[1], order == "desc", limit, out)
        return out

    async def _collect(self, node: Node, lo: bytes | None, hi: bytes | None, desc: bool, limit: int,
                       out: list[Item]) -> None:
        i_lo = 0 if lo is None else bisect_left(node.items, lo, key=_pos)
        i_hi = len(node.items) if hi is None else bisect_left(node.items, hi, key=_pos)
        steps = list(range(i_hi, i_lo - 1, -1) if desc else range(i_lo, i_hi + 1))
        fetched: dict[int, Node] = {}
        for n, j in enumerate(steps):
            if desc and j < i_hi:
                out.append(node.items[j])
                if len(out) >= limit:
                    return
            if not node.leaf:
                if j not in fetched:
                    # every child wholly in range holds >= min items: fetch as many as the page surely needs at once
                    ahead = steps[n:n + max(1, (limit - len(out)) // self.min)]
                    fetched.update(zip(ahead, await self._get_many([node.children[k] for k in ahead]), strict=True))
                child = fetched.pop(j)
                await self._collect(child, lo if j == i_lo else None, hi if j == i_hi else None, desc, limit, out)
                if len(out) >= limit:
                    return
            if not desc and j < i_hi:
                out.append(node.items[j])
                if len(out) >= limit:
                    return

    # --- maintenance -------------------------------------------------------------------------------------

    async def set_root_lazy(self, lazy: bool) -> None:
        """Switch the root between lazy (no stored totals) and eager."""
        root = await self.store.get(self.root_id)
        aggs = await self._child_aggs(root)
        self.root_lazy = lazy
        root.child_aggs = list(aggs)
        self._seal(root)
        await self.store.put(root)

    async def validate(self) -> dict[str, Any]:
        """Check every invariant by reading the whole tree; raise :class:`InvariantError` naming the first broken one.

        Returns ``{"count", "sum", "depth", "nodes"}``.
        """
        root = await self.store.get(self.root_id)
        if self.root_lazy and (root.agg is not None or root.child_aggs is not None):
            raise InvariantError(f"lazy root {root.id} stores aggregates")
        if not self.root_lazy and (root.agg is None or root.child_aggs is None):
            raise InvariantError(f"eager root {root.id} lacks its aggregates")
        if root.children and not root.items:
            raise InvariantError(f"internal root {root.id} has no items (should have collapsed)")
        stats: dict[str, Any] = {"nodes": 0, "leaf_depths": set()}
        agg = await self._walk(root, None, None, 0, stats)
        if root.agg is not None and root.agg != agg:
            raise InvariantError(f"root {root.id} stores aggregate {root.agg} but holds {agg}")
        if len(stats["leaf_depths"]) > 1:
            raise InvariantError(f"leaves at different depths {sorted(stats['leaf_depths'])}")
        return {"count": agg[0], "sum": agg[1], "depth": max(stats["leaf_depths"]), "nodes": stats["nodes"]}

    async def _walk(self, node: Node, lo: bytes | None, hi: bytes | None, depth: int, stats: dict[str, Any]) -> Agg:
        stats["nodes"] += 1
        where = f"node {node.id} (depth {depth})"
        is_root = node.id == self.root_id
        if len(node.items) > self.max or (not is_root and len(node.items) < self.min):
            raise InvariantError(f"{where} holds {len(node.items)} items (allowed {self.min}..{self.max})")
        if node.children and len(node.children) != len(node.items) + 1:
            raise InvariantError(f"{where} has {len(node.items)} items but {len(node.children)} children")
        prev = lo
        for it in node.items:
            if it.pos != position(it.key, it.id):
                raise InvariantError(f"{where}: stored position of {it.key!r}/{it.id!r} does not match its key")
            if (prev is not None and it.pos <= prev) or (hi is not None and it.pos >= hi):
                raise InvariantError(f"{where}: item {it.key!r}/{it.id!r} out of order")
            prev = it.pos
        if node.leaf:
            stats["leaf_depths"].add(depth)
            child_aggs: list[Agg] = []
        else:
            bounds = [lo] + [it.pos for it in node.items] + [hi]
            child_aggs = []
            for j, cid in enumerate(node.children):
                child = await self.store.get(cid)
                got = await self._walk(child, bounds[j], bounds[j + 1], depth + 1, stats)
                if child.agg != got:
                    raise InvariantError(f"node {cid} stores aggregate {child.agg} but holds {got}")
                if node.child_aggs is not None and node.child_aggs[j] != got:
                    raise InvariantError(f"{where} records {node.child_aggs[j]} for child {cid}, which holds {got}")
                child_aggs.append(got)
        if node.child_aggs is not None and len(node.child_aggs) != len(node.children):
            raise InvariantError(f"{where} has {len(node.child_aggs)} child aggregates "
                                 f"for {len(node.children)} children")
        return compute_agg(node.items, child_aggs)


def _shape(node: Node) -> tuple[Any, ...]:
    return tuple(it.pos for it in node.items), tuple(node.children)


def check_max_node_size(n: Any) -> int:
    """Refuse a node size that is not an even int >= 4."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 4 or n % 2:
        raise ValueError(f"max_node_size must be an even integer >= 4, not {n!r}")
    return n
