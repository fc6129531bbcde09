"""The aggregate component: ordered, counted and summed B-trees, one per namespace.

Runs only in the mount's own workers; apps use the client wrapper
(``components.aggregate.Aggregate`` / ``TableAggregate``).

Tables:

- ``nodes``: the B-tree nodes of every tree.  ``tree`` is the tree's token
  (random, per tree); a root also carries ``root_of = [namespace]`` (index
  ``by_root`` finds a namespace's root in one read), ``max_node_size`` and
  ``root_lazy``.  A tree is created on the first write into its namespace
  (or by ``init`` / ``clear``).
- ``garbage``: trees dropped by ``clear`` whose nodes are still being deleted
  (``collect_garbage`` pages through them, rescheduling itself).

Every function reads the namespace's root (one index read) and then O(depth)
nodes; see ``btree.py`` for the algorithm.
"""


from typing import Any, Literal, cast

from pydantic import BaseModel

from components.aggregate.btree import BTree, InvariantError, Item, KeyExists, KeyMissing, Node, check_max_node_size
from components.aggregate.keys import Range, bounds_range, encode, intersect, key_end, key_start, position
from components.aggregate.store import NODES, DbStore, node_doc
from runtime import Component, ComponentError, MutationCtx, Query, QueryCtx

component = Component("aggregate")

DEFAULT_MAX_NODE_SIZE = 16
INLINE_DELETE_NODES = 256
"""Nodes ``clear`` deletes in its own transaction; the rest go to ``collect_garbage``."""
GARBAGE_BATCH_NODES = 1_000
"""Nodes one ``collect_garbage`` run deletes."""


@component.table(NODES, indexes={"by_tree": ["tree"], "by_root": ["root_of"]})
class TreeNode(BaseModel):
    tree: str
    items: list[list[Any]]
    children: list[str]
    counts: list[int] | None
    sums: list[Any] | None
    agg: list[Any] | None
    root_of: list[Any] | None = None
    max_node_size: int | None = None
    root_lazy: bool | None = None


@component.table("garbage")
class Garbage(BaseModel):
    tree: str


Order = Literal["asc", "desc"]


# --- plumbing --------------------------------------------------------------------------------------------

class _Trees:
    """The trees one invocation touches, each with its node store (shared by a batch)."""

    def __init__(self, ctx: QueryCtx) -> None:
        # typed as a mutation's: a query's trees are only read (BTree writes happen in mutations only)
        self.ctx = cast(MutationCtx, ctx)
        self.open: dict[Any, tuple[dict[str, Any] | None, BTree | None, DbStore | None]] = {}

    async def row(self, namespace: Any) -> dict[str, Any] | None:
        return await self.ctx.db.query(NODES).with_index(
            "by_root", lambda q: q.eq("root_of", [namespace])).unique()

    async def get(self, namespace: Any, create: bool = False) -> BTree | None:
        key = _ns_key(namespace)
        if key not in self.open or (create and self.open[key][1] is None):
            row = await self.row(namespace)
            if row is None and create:
                row = await _create_tree(self.ctx, namespace, DEFAULT_MAX_NODE_SIZE, True)
            if row is None:
                self.open[key] = (None, None, None)
            else:
                store = DbStore(self.ctx.db, row)
                self.open[key] = (row, BTree(store, row["_id"], row["max_node_size"], row["root_lazy"]), store)
        return self.open[key][1]

    async def flush(self) -> None:
        for _, _, store in self.open.values():
            if store is not None:
                await store.flush()


def _ns_key(namespace: Any) -> bytes:
    try:
        return encode(namespace)
    except TypeError as exc:
        raise ComponentError({"code": "INVALID_NAMESPACE", "message": str(exc)}, str(exc)) from None


async def _create_tree(ctx: MutationCtx, namespace: Any, max_node_size: int, root_lazy: bool) -> dict[str, Any]:
    """Insert an empty root for ``namespace``; return its document."""
    token = f"{ctx.random.getrandbits(64):016x}"
    empty = Node(None, [], [], None if root_lazy else [], None if root_lazy else (0, 0))
    doc = node_doc(token, empty, {"root_of": [namespace], "max_node_size": max_node_size, "root_lazy": root_lazy})
    return {**doc, "_id": await ctx.db.insert(NODES, doc)}


def _roots(ctx: QueryCtx) -> Query:
    """Every root in namespace order (non-roots have ``root_of = None``, below the range)."""
    return ctx.db.query(NODES).with_index("by_root", lambda q: q.gt("root_of", None))


def _range(bounds: dict[str, Any] | None) -> Range:
    try:
        return bounds_range(bounds)
    except (ValueError, TypeError) as exc:
        raise ComponentError({"code": "INVALID_BOUNDS", "message": str(exc)}, f"invalid bounds: {exc}") from None


def _item(it: Item | None) -> dict[str, Any] | None:
    return None if it is None else {"key": it.key, "id": it.id, "sum_value": it.sum}


def _pos(key: Any, id: Any) -> bytes:
    try:
        return position(key, id)
    except TypeError as exc:
        raise ComponentError({"code": "INVALID_KEY", "message": str(exc)}, str(exc)) from None


def _cursor_range(r: Range, cursor: str | None, order: str) -> Range:
    if not cursor:
        return r
    try:
        last = bytes.fromhex(cursor)
    except ValueError:
        raise ComponentError({"code": "INVALID_CURSOR"}, f"not a cursor of aggregate paginate: {cursor!r}") from None
    return intersect(r, (None, last) if order == "desc" else (last + b"\x00", None))


# --- reads -----------------------------------------------------------------------------------------------

async def _aggregate(trees: _Trees, namespace: Any, bounds: dict[str, Any] | None) -> dict[str, Any]:
    r = _range(bounds)
    tree = await trees.get(namespace)
    count, total = (0, 0) if tree is None else await tree.aggregate(r)
    return {"count": count, "sum": total}


@component.query
async def aggregate_between(ctx: QueryCtx, namespace: Any = None,
                            bounds: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"count", "sum"}`` of the items within ``bounds`` of one namespace."""
    return await _aggregate(_Trees(ctx), namespace, bounds)


@component.query
async def aggregate_batch(ctx: QueryCtx, queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``aggregate_between`` for each ``{"namespace"?, "bounds"?}``, sharing node reads."""
    trees = _Trees(ctx)
    return [await _aggregate(trees, q.get("namespace"), q.get("bounds")) for q in queries]


async def _at(trees: _Trees, offset: int, namespace: Any, bounds: dict[str, Any] | None) -> dict[str, Any] | None:
    r = _range(bounds)
    tree = await trees.get(namespace)
    return None if tree is None else _item(await tree.at(offset, r))


@component.query
async def at(ctx: QueryCtx, offset: int, namespace: Any = None,
             bounds: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The item at ``offset`` within ``bounds`` (0-based; negative counts from the end), or None."""
    return await _at(_Trees(ctx), offset, namespace, bounds)


@component.query
async def at_batch(ctx: QueryCtx, queries: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
    """``at`` for each ``{"offset", "namespace"?, "bounds"?}``."""
    trees = _Trees(ctx)
    out = []
    for q in queries:
        if not isinstance(q.get("offset"), int) or isinstance(q.get("offset"), bool):
            raise ComponentError({"code": "INVALID_OFFSET", "query": q}, f"at_batch: offset must be an int in {q!r}")
        out.append(await _at(trees, q["offset"], q.get("namespace"), q.get("bounds")))
    return out


@component.query
async def index_of(ctx: QueryCtx, key: Any, id: Any = None, namespace: Any = None,
                   bounds: dict[str, Any] | None = None, order: Order = "asc") -> int:
    """Index of ``key`` (with ``id``: that exact item) among the items in ``bounds``.

    Ascending: how many items sort before it (the first index whose key is >=
    ``key``).  Descending: how many sort after it.
    """
    r = _range(bounds)
    tree = await _Trees(ctx).get(namespace)
    if tree is None:
        return 0
    _pos(key, id)
    if order == "asc":
        return await tree.rank(_pos(key, id) if id is not None else key_start(key), r)
    return await tree.rank_desc(_pos(key, id) + b"\x00" if id is not None else key_end(key), r)


@component.query
async def random(ctx: QueryCtx, namespace: Any = None, bounds: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """A uniformly chosen item within ``bounds`` (seeded by the transaction), or None."""
    r = _range(bounds)
    tree = await _Trees(ctx).get(namespace)
    if tree is None:
        return None
    count = (await tree.aggregate(r))[0]
    return None if count == 0 else _item(await tree.at(ctx.random.randrange(count), r))


@component.query
async def paginate(ctx: QueryCtx, namespace: Any = None, bounds: dict[str, Any] | None = None,
                   cursor: str | None = None, order: Order = "asc", page_size: int = 100) -> dict[str, Any]:
    """One page of items in key order: ``{"page", "cursor", "is_done"}``; pass ``cursor`` back for the next."""
    if page_size < 1:
        raise ComponentError({"code": "INVALID_PAGE_SIZE"}, f"page_size must be >= 1, not {page_size}")
    r = _cursor_range(_range(bounds), cursor, order)
    tree = await _Trees(ctx).get(namespace)
    got = [] if tree is None else await tree.items(r, order, page_size + 1)
    done = len(got) <= page_size
    got = got[:page_size]
    return {"page": [_item(it) for it in got], "cursor": got[-1].pos.hex() if got else (cursor or ""),
            "is_done": done}


@component.query
async def paginate_namespaces(ctx: QueryCtx, cursor: str | None = None, page_size: int = 100) -> dict[str, Any]:
    """One page of the namespaces that have a tree, in key order."""
    res = await _roots(ctx).paginate(cursor, page_size)
    return {"page": [row["root_of"][0] for row in res.page], "cursor": res.continue_cursor, "is_done": res.is_done}


@component.query
async def settings(ctx: QueryCtx, namespace: Any = None) -> dict[str, Any] | None:
    """``{"max_node_size", "root_lazy"}`` of a namespace's tree, or None if it has none."""
    row = await _Trees(ctx).row(namespace)
    return None if row is None else {"max_node_size": row["max_node_size"], "root_lazy": row["root_lazy"]}


@component.query
async def validate(ctx: QueryCtx, namespace: Any = None) -> dict[str, Any]:
    """Read a whole tree and check every invariant; ``{"count", "sum", "depth", "nodes"}``.

    Raises ``ComponentError {"code": "INVALID_TREE"}`` naming the broken rule.
    Reads every node: meant for tests and repair, not for hot paths.
    """
    tree = await _Trees(ctx).get(namespace)
    if tree is None:
        return {"count": 0, "sum": 0, "depth": 0, "nodes": 0}
    try:
        return await tree.validate()
    except InvariantError as exc:
        raise ComponentError({"code": "INVALID_TREE", "message": str(exc)}, str(exc)) from None


# --- writes ----------------------------------------------------------------------------------------------

async def _apply(trees: _Trees, op: dict[str, Any]) -> bool:
    """Apply one write; return whether it changed anything (the idempotent kinds may not)."""
    kind = op.get("op")
    ns = op.get("namespace")
    _pos(op.get("key"), op.get("id"))  # refuse a key or id that is not a value, by name, before touching the tree
    _ns_key(ns)
    if kind in ("insert", "insert_if_does_not_exist"):
        tree = await trees.get(ns, create=True)
        assert tree is not None
        _pos(op.get("key"), op.get("id"))
        try:
            await tree.insert(op.get("key"), op.get("id"), _summand(op.get("sum_value", 0)))
        except KeyExists as exc:
            if kind == "insert":
                raise ComponentError({"code": "KEY_EXISTS", "key": op.get("key"), "id": op.get("id")},
                                     str(exc)) from None
            return False
        return True
    if kind in ("delete", "delete_if_exists"):
        tree = await trees.get(ns)
        try:
            if tree is None:
                raise KeyMissing(f"key {op.get('key')!r} with id {op.get('id')!r} is not in the aggregate")
            await tree.delete(op.get("key"), op.get("id"))
        except KeyMissing as exc:
            if kind == "delete":
                raise ComponentError({"code": "DELETE_MISSING_KEY", "key": op.get("key"), "id": op.get("id")},
                                     str(exc)) from None
            return False
        return True
    if kind in ("replace", "replace_or_insert"):
        new = {"op": "insert", "key": op.get("new_key"), "id": op.get("id"), "sum_value": op.get("new_sum_value", 0),
               "namespace": op.get("new_namespace", ns)}
        removed = await _apply(trees, {"op": "delete" if kind == "replace" else "delete_if_exists",
                                       "key": op.get("key"), "id": op.get("id"), "namespace": ns})
        await _apply(trees, new)
        return removed or kind == "replace_or_insert"
    raise ComponentError({"code": "INVALID_OPERATION", "op": kind},
                         f"unknown aggregate operation {kind!r}: insert, delete, replace and their idempotent variants")


def _summand(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ComponentError({"code": "INVALID_SUM_VALUE", "sum_value": repr(v)},
                             f"sum_value must be a number, not {v!r}")
    return v


async def _write(ctx: MutationCtx, op: dict[str, Any]) -> bool:
    trees = _Trees(ctx)
    changed = await _apply(trees, op)
    await trees.flush()
    return changed


@component.mutation
async def insert(ctx: MutationCtx, key: Any, id: Any, sum_value: int | float = 0, namespace: Any = None) -> None:
    """Insert an item; ``ComponentError {"code": "KEY_EXISTS"}`` if ``(key, id)`` is there."""
    await _write(ctx, {"op": "insert", "key": key, "id": id, "sum_value": sum_value, "namespace": namespace})


@component.mutation
async def insert_if_does_not_exist(ctx: MutationCtx, key: Any, id: Any, sum_value: int | float = 0,
                                   namespace: Any = None) -> bool:
    """Insert unless ``(key, id)`` is there; return whether it inserted."""
    return await _write(ctx, {"op": "insert_if_does_not_exist", "key": key, "id": id, "sum_value": sum_value,
                              "namespace": namespace})


@component.mutation
async def delete(ctx: MutationCtx, key: Any, id: Any, namespace: Any = None) -> None:
    """Delete an item; ``ComponentError {"code": "DELETE_MISSING_KEY"}`` if it is not there."""
    await _write(ctx, {"op": "delete", "key": key, "id": id, "namespace": namespace})


@component.mutation
async def delete_if_exists(ctx: MutationCtx, key: Any, id: Any, namespace: Any = None) -> bool:
    """Delete an item if it is there; return whether it was."""
    return await _write(ctx, {"op": "delete_if_exists", "key": key, "id": id, "namespace": namespace})


@component.mutation
async def replace(ctx: MutationCtx, key: Any, id: Any, new_key: Any, new_sum_value: int | float = 0,
                  namespace: Any = None, new_namespace: Any = None, keep_namespace: bool = True) -> None:
    """Move item ``(key, id)`` to ``new_key`` (and ``new_namespace`` unless ``keep_namespace``); it must exist."""
    await _write(ctx, {"op": "replace", "key": key, "id": id, "new_key": new_key, "new_sum_value": new_sum_value,
                       "namespace": namespace, "new_namespace": namespace if keep_namespace else new_namespace})


@component.mutation
async def replace_or_insert(ctx: MutationCtx, key: Any, id: Any, new_key: Any, new_sum_value: int | float = 0,
                            namespace: Any = None, new_namespace: Any = None, keep_namespace: bool = True) -> None:
    """Like ``replace``, inserting the new item when the old one is missing."""
    await _write(ctx, {"op": "replace_or_insert", "key": key, "id": id, "new_key": new_key,
                       "new_sum_value": new_sum_value, "namespace": namespace,
                       "new_namespace": namespace if keep_namespace else new_namespace})


@component.mutation
async def write_batch(ctx: MutationCtx, operations: list[dict[str, Any]]) -> list[bool]:
    """Apply several writes in order, atomically; each node changed is written once.

    Each operation is ``{"op": "insert"|"delete"|"replace"|"insert_if_does_not_exist"|
    "delete_if_exists"|"replace_or_insert", "key", "id", "sum_value"?, "namespace"?,
    "new_key"?, "new_sum_value"?, "new_namespace"?}``.  Returns, per operation,
    whether it changed anything.
    """
    trees = _Trees(ctx)
    out = [await _apply(trees, op) for op in operations]
    await trees.flush()
    return out


# --- maintenance -------------------------------------------------------------------------------------------

@component.mutation
async def init(ctx: MutationCtx, namespace: Any = None, max_node_size: int = DEFAULT_MAX_NODE_SIZE,
               root_lazy: bool = True) -> None:
    """Create a namespace's tree with these settings (a no-op if it exists with the same ones)."""
    _check_size(max_node_size)
    row = await _Trees(ctx).row(namespace)
    if row is None:
        await _create_tree(ctx, namespace, max_node_size, root_lazy)
    elif (row["max_node_size"], row["root_lazy"]) != (max_node_size, root_lazy):
        raise ComponentError(
            {"code": "TREE_EXISTS", "max_node_size": row["max_node_size"], "root_lazy": row["root_lazy"]},
            f"namespace {namespace!r} already has a tree with other settings; use clear() to change them")


def _check_size(n: int) -> None:
    try:
        check_max_node_size(n)
    except ValueError as exc:
        raise ComponentError({"code": "INVALID_MAX_NODE_SIZE", "max_node_size": n}, str(exc)) from None


@component.mutation
async def clear(ctx: MutationCtx, namespace: Any = None, max_node_size: int | None = None,
                root_lazy: bool | None = None) -> dict[str, Any]:
    """Empty a namespace and start a fresh tree (old settings kept unless given).

    Up to 256 old nodes are deleted in this transaction; the rest are left to
    ``collect_garbage``, scheduled from here (it reschedules itself until
    done).  Returns ``{"deleted": n, "more": bool}``.
    """
    return await _clear(ctx, namespace, max_node_size, root_lazy)


async def _clear(ctx: MutationCtx, namespace: Any, max_node_size: int | None, root_lazy: bool | None) -> dict[str, Any]:
    row = await _Trees(ctx).row(namespace)
    size = max_node_size if max_node_size is not None else row["max_node_size"] if row else DEFAULT_MAX_NODE_SIZE
    lazy = root_lazy if root_lazy is not None else row["root_lazy"] if row else True
    _check_size(size)
    deleted, more = 0, False
    if row is not None:
        await ctx.db.delete(row["_id"])
        deleted, more = await _delete_nodes(ctx, row["tree"], INLINE_DELETE_NODES)
        deleted += 1
        if more:
            await ctx.db.insert("garbage", {"tree": row["tree"]})
            await ctx.scheduler.run_after(0, collect_garbage, max_nodes=GARBAGE_BATCH_NODES)
    await _create_tree(ctx, namespace, size, lazy)
    return {"deleted": deleted, "more": more}


async def _delete_nodes(ctx: MutationCtx, tree: str, limit: int) -> tuple[int, bool]:
    docs = await ctx.db.query(NODES).with_index("by_tree", lambda q: q.eq("tree", tree)).take(limit + 1)
    for doc in docs[:limit]:
        await ctx.db.delete(doc["_id"])
    return min(len(docs), limit), len(docs) > limit


@component.mutation
async def clear_all(ctx: MutationCtx, max_node_size: int | None = None, root_lazy: bool | None = None,
                    cursor: str | None = None, page_size: int = 20) -> dict[str, Any]:
    """Clear up to ``page_size`` namespaces from ``cursor``; ``{"cursor", "is_done"}`` to continue."""
    res = await _roots(ctx).paginate(cursor, page_size)
    for row in res.page:
        await _clear(ctx, row["root_of"][0], max_node_size, root_lazy)
    return {"cursor": res.continue_cursor, "is_done": res.is_done}


@component.mutation
async def collect_garbage(ctx: MutationCtx, max_nodes: int = GARBAGE_BATCH_NODES,
                          reschedule: bool = True) -> dict[str, Any]:
    """Delete up to ``max_nodes`` nodes of cleared trees; ``{"deleted", "more"}``.

    Reschedules itself while more remains (unless ``reschedule=False``, for
    callers that page through it themselves).
    """
    deleted = 0
    for g in await ctx.db.query("garbage").take(50):
        if deleted >= max_nodes:
            break
        n, more = await _delete_nodes(ctx, g["tree"], max_nodes - deleted)
        deleted += n
        if not more:
            await ctx.db.delete(g["_id"])
    more = bool(await ctx.db.query("garbage").first())
    if more and reschedule:
        await ctx.scheduler.run_after(0, collect_garbage, max_nodes=max_nodes)
    return {"deleted": deleted, "more": more}


@component.mutation
async def set_root_lazy(ctx: MutationCtx, lazy: bool = True, namespace: Any = None) -> None:
    """Make a namespace's root lazy (writes rarely touch it) or eager (count/sum from the root alone)."""
    trees = _Trees(ctx)
    tree = await trees.get(namespace)
    if tree is None or tree.root_lazy == lazy:
        return
    store = trees.open[_ns_key(namespace)][2]
    assert store is not None
    store.root_fields["root_lazy"] = lazy
    await tree.set_root_lazy(lazy)
    await trees.flush()
