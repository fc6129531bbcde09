"""The B-tree's node store over ``ctx.db`` (runs only in the component's workers).

One :class:`DbStore` lives for one function invocation.  It keeps every node
it has read or written, parsed, so a batch of operations (``write_batch``,
``aggregate_batch``) reads each node once, and it defers writes: a node
changed by many operations of one batch is written once, by :meth:`flush` at
the end of the mutation.  A created node gets a temporary id (``~N``) and is
inserted by :meth:`flush`, children before parents, so a node created and
then filled by one batch costs one insert; a node created and deleted again
costs nothing.  Writes of one flush are sent together (pipelined), not one
round trip each.  Nothing outlives the invocation, so no stale node from an
earlier transaction can ever be served.
"""


import asyncio
from typing import Any

from components.aggregate.btree import Item, Node
from runtime import ComponentError, DatabaseWriter

NODES = "nodes"
ROOT_FIELDS = ("root_of", "max_node_size", "root_lazy")


def node_doc(tree: str, node: Node, root: dict[str, Any] | None = None) -> dict[str, Any]:
    """A node as stored: items as ``[key, id, sum]``, per-child counts and sums, own aggregate.

    ``root`` holds the fields only a root carries: ``root_of`` (``[namespace]``,
    the index that finds a namespace's root in one read), ``max_node_size``
    and ``root_lazy``.
    """
    aggs = node.child_aggs
    return {
        **(root or {}),
        "tree": tree,
        "items": [[it.key, it.id, it.sum] for it in node.items],
        "children": list(node.children),
        "counts": None if aggs is None else [a[0] for a in aggs],
        "sums": None if aggs is None else [a[1] for a in aggs],
        "agg": None if node.agg is None else [node.agg[0], node.agg[1]],
    }


def doc_node(node_id: str, doc: dict[str, Any]) -> Node:
    """The algorithm's view of a stored node (positions recomputed from keys and ids)."""
    counts, sums = doc["counts"], doc["sums"]
    return Node(
        node_id,
        [Item(k, i, s) for k, i, s in doc["items"]],
        list(doc["children"]),
        None if counts is None else list(zip(counts, sums, strict=False)),
        None if doc["agg"] is None else (doc["agg"][0], doc["agg"][1]),
    )


def _copy(node: Node) -> Node:
    return Node(node.id, list(node.items), list(node.children),
                None if node.child_aggs is None else list(node.child_aggs), node.agg)


class DbStore:
    """A :class:`~components.aggregate.btree.NodeStore` over this mount's ``nodes`` table."""

    def __init__(self, db: DatabaseWriter, root_doc: dict[str, Any]) -> None:
        self.db = db
        self.tree: str = root_doc["tree"]
        self.root_id: str = root_doc["_id"]
        self.root_fields = {k: root_doc[k] for k in ROOT_FIELDS}
        """What the root document carries besides its node (``root_lazy`` changes with ``set_root_lazy``)."""
        self._nodes: dict[str, Node] = {self.root_id: doc_node(self.root_id, root_doc)}
        self._dirty: set[str] = set()
        self._new: list[str] = []

    async def get(self, node_id: str) -> Node:
        node = self._nodes.get(node_id)
        if node is None:
            doc = await self.db.get(node_id)
            if doc is None:
                raise ComponentError({"code": "CORRUPT_TREE", "node": node_id},
                                     f"aggregate tree {self.tree}: node {node_id} is missing")
            node = self._nodes[node_id] = doc_node(node_id, doc)
        return _copy(node)

    async def create(self, node: Node) -> str:
        node_id = f"~{len(self._new)}"
        self._new.append(node_id)
        node.id = node_id
        self._nodes[node_id] = _copy(node)
        return node_id

    async def put(self, node: Node) -> None:
        assert node.id is not None
        self._nodes[node.id] = _copy(node)
        self._dirty.add(node.id)

    async def delete(self, node_id: str) -> None:
        self._nodes.pop(node_id, None)
        self._dirty.discard(node_id)
        if not node_id.startswith("~"):
            await self.db.delete(node_id)

    def _doc(self, node_id: str) -> dict[str, Any]:
        return node_doc(self.tree, self._nodes[node_id], self.root_fields if node_id == self.root_id else None)

    async def flush(self) -> int:
        """Insert created nodes (children first) and write changed ones; return how many documents were written."""
        real: dict[str, str] = {}
        pending = [n for n in self._new if n in self._nodes]
        written = 0
        while pending:
            waiting = set(pending)
            ready = [n for n in pending if not any(c in waiting for c in self._nodes[n].children)]
            for n in ready:
                self._nodes[n].children = [real.get(c, c) for c in self._nodes[n].children]
            ids = await asyncio.gather(*(self.db.insert(NODES, self._doc(n)) for n in ready))
            real.update(zip(ready, ids, strict=True))
            pending = [n for n in pending if n not in real]
            written += len(ready)
        for temp, node_id in real.items():
            node = self._nodes.pop(temp)
            node.id = node_id
            self._nodes[node_id] = node
        dirty = sorted(n for n in self._dirty if not n.startswith("~"))
        for n in dirty:
            self._nodes[n].children = [real.get(c, c) for c in self._nodes[n].children]
        await asyncio.gather(*(self.db.replace(n, self._doc(n)) for n in dirty))
        self._dirty, self._new = set(), []
        return written + len(dirty)
