"""The B-tree's node store over ``ctx.db`` (runs only in the component's workers).

One :class:`DbStore` lives for one function invocation.  It keeps every node
it has read or written, parsed, so a batch of operations (``write_batch``,
``aggregate_batch``) reads each node once, and it defers writes: a node
changed by many operations of one batch is written once, by :meth:`flush` at
the end of the mutation.  Creates and deletes go out at once (a create needs
the Id the coordinator mints).  Nothing outlives the invocation, so no stale
node from an earlier transaction can ever be served.
"""


from typing import Any

from components.aggregate.btree import Item, Node
from components.aggregate.keys import position
from runtime.errors import ComponentError

NODES = "nodes"


def node_doc(tree: str, node: Node) -> dict[str, Any]:
    """A node as stored: items as ``[key, id, sum]``, per-child counts and sums, own aggregate."""
    aggs = node.child_aggs
    return {
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
        [Item(k, i, s, position(k, i)) for k, i, s in doc["items"]],
        list(doc["children"]),
        None if counts is None else list(zip(counts, sums)),
        None if doc["agg"] is None else (doc["agg"][0], doc["agg"][1]),
    )


def _copy(node: Node) -> Node:
    return Node(node.id, list(node.items), list(node.children),
                None if node.child_aggs is None else list(node.child_aggs), node.agg)


class DbStore:
    """A :class:`~components.aggregate.btree.NodeStore` over this mount's ``nodes`` table."""

    def __init__(self, db: Any, tree: str) -> None:
        self.db = db
        self.tree = tree
        self._nodes: dict[str, Node] = {}
        self._dirty: set[str] = set()

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
        node_id: str = await self.db.insert(NODES, node_doc(self.tree, node))
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
        await self.db.delete(node_id)

    async def flush(self) -> int:
        """Write every node changed since the last flush; return how many."""
        dirty, self._dirty = sorted(self._dirty), set()
        for node_id in dirty:
            await self.db.replace(node_id, node_doc(self.tree, self._nodes[node_id]))
        return len(dirty)
