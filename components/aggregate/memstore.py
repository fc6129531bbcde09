"""An in-memory node store for the B-tree: what its property tests run against."""

from __future__ import annotations

from components.aggregate.btree import BTree, Node


class MemoryStore:
    """An in-memory :class:`NodeStore` (property tests; counts reads and writes)."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.reads = 0
        self.writes = 0
        self._next = 0

    @staticmethod
    def _copy(node: Node) -> Node:
        return Node(node.id, list(node.items), list(node.children),
                    None if node.child_aggs is None else list(node.child_aggs), node.agg)

    async def get(self, node_id: str) -> Node:
        self.reads += 1
        return self._copy(self.nodes[node_id])

    async def create(self, node: Node) -> str:
        self._next += 1
        node_id = f"n{self._next}"
        node.id = node_id
        self.nodes[node_id] = self._copy(node)
        self.writes += 1
        return node_id

    async def put(self, node: Node) -> None:
        assert node.id in self.nodes, f"put of unknown node {node.id}"
        self.nodes[node.id] = self._copy(node)
        self.writes += 1

    async def delete(self, node_id: str) -> None:
        del self.nodes[node_id]
        self.writes += 1

    async def new_tree(self, max_node_size: int = 16, root_lazy: bool = True) -> BTree:
        """Create an empty root and return a tree over it."""
        root_id = await self.create(Node(None, [], [], None if root_lazy else [], None if root_lazy else (0, 0)))
        return BTree(self, root_id, max_node_size, root_lazy)
