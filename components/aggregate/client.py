"""``Aggregate``: the client wrapper of a mounted ``aggregate`` component.

It only calls the mount's functions (``ctx.run_query`` / ``ctx.run_mutation``)
and never imports the implementation.  Reads work from queries, mutations and
actions (from an action each call is its own transaction); writes from
mutations (atomic with the caller) and actions.
"""


from collections.abc import AsyncIterator
from typing import Any, Literal, TypedDict

from runtime import MountRef, RunMutationCtx, RunQueryCtx

Order = Literal["asc", "desc"]


class AggregateItem(TypedDict):
    """One item as reads return it."""

    key: Any
    id: Any
    sum_value: int | float


class AggregatePage(TypedDict):
    """One page of :meth:`Aggregate.paginate`."""

    page: list[AggregateItem]
    cursor: str
    is_done: bool


class _Unset:
    def __repr__(self) -> str:
        return "<the aggregate's namespace>"


UNSET: Any = _Unset()
"""Default of every ``namespace=`` argument: the namespace the wrapper was made with."""


class Aggregate:
    """Counts, sums, ranks and ordered items of one mounted ``aggregate``, fed directly.

    Args:
        mount: what ``app.use("aggregate", name=...)`` returned.
        namespace: the namespace calls use unless they pass ``namespace=``
            (``None``, the default namespace, if not given).  Each namespace is
            a separate tree: writes into different namespaces never conflict.

    Items are ``(key, id, sum_value)``; keys are any values ordered as in
    DESIGN.md (tuple keys are lists), ties broken by ``id``.  ``bounds`` is
    ``{"lower": {"key", "id"?, "inclusive"}, "upper": {...}}``, ``{"prefix":
    [k1, ...]}`` or ``{"eq": key}`` (see the component README).

    Examples:
        >>> scores = Aggregate(app.use("aggregate", name="scores"))
        >>> await scores.insert(ctx, key=42, id=user_id, sum_value=42)
        >>> rank = await scores.index_of(ctx, 42, order="desc")
    """

    def __init__(self, mount: MountRef, namespace: Any = None) -> None:
        self.mount = mount
        self.namespace = namespace

    def for_namespace(self, namespace: Any) -> "Aggregate":
        """The same aggregate bound to another namespace."""
        return Aggregate(self.mount, namespace)

    def _ns(self, namespace: Any) -> Any:
        return self.namespace if namespace is UNSET else namespace

    # --- reads ---------------------------------------------------------------------------------------

    async def count(self, ctx: RunQueryCtx, bounds: dict[str, Any] | None = None, namespace: Any = UNSET) -> int:
        """How many items lie within ``bounds`` (all of them by default)."""
        res = await ctx.run_query(self.mount.aggregate_between, namespace=self._ns(namespace), bounds=bounds)
        count: int = res["count"]
        return count

    async def sum(self, ctx: RunQueryCtx, bounds: dict[str, Any] | None = None, namespace: Any = UNSET) -> int | float:
        """The sum of ``sum_value`` over the items within ``bounds``."""
        res = await ctx.run_query(self.mount.aggregate_between, namespace=self._ns(namespace), bounds=bounds)
        total: int | float = res["sum"]
        return total

    async def _batch(self, ctx: RunQueryCtx, queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        qs = [{"namespace": self._ns(q.get("namespace", UNSET)), "bounds": q.get("bounds")} for q in queries]
        value: list[dict[str, Any]] = await ctx.run_query(self.mount.aggregate_batch, queries=qs)
        return value

    async def count_batch(self, ctx: RunQueryCtx, queries: list[dict[str, Any]]) -> list[int]:
        """``count`` for each ``{"bounds"?, "namespace"?}`` in one call."""
        return [r["count"] for r in await self._batch(ctx, queries)]

    async def sum_batch(self, ctx: RunQueryCtx, queries: list[dict[str, Any]]) -> list[int | float]:
        """``sum`` for each ``{"bounds"?, "namespace"?}`` in one call."""
        return [r["sum"] for r in await self._batch(ctx, queries)]

    async def at(self, ctx: RunQueryCtx, offset: int, bounds: dict[str, Any] | None = None,
                 namespace: Any = UNSET) -> AggregateItem | None:
        """The item at ``offset`` (0-based; ``-1`` is the last) within ``bounds``, or None."""
        value: AggregateItem | None = await ctx.run_query(self.mount.at, offset=offset, namespace=self._ns(namespace),
                                                          bounds=bounds)
        return value

    async def at_batch(self, ctx: RunQueryCtx, queries: list[dict[str, Any]]) -> list[AggregateItem | None]:
        """``at`` for each ``{"offset", "bounds"?, "namespace"?}`` in one call."""
        qs = [{"offset": q["offset"], "namespace": self._ns(q.get("namespace", UNSET)), "bounds": q.get("bounds")}
              for q in queries]
        value: list[AggregateItem | None] = await ctx.run_query(self.mount.at_batch, queries=qs)
        return value

    async def index_of(self, ctx: RunQueryCtx, key: Any, id: Any = None, bounds: dict[str, Any] | None = None,
                       order: Order = "asc", namespace: Any = UNSET) -> int:
        """Rank of ``key``: how many items sort before it (``order="desc"``: after it).

        Without ``id``: the first index whose key is >= ``key`` (desc: <=).
        """
        value: int = await ctx.run_query(self.mount.index_of, key=key, id=id, bounds=bounds,
                                         order=order, namespace=self._ns(namespace))
        return value

    async def min(self, ctx: RunQueryCtx, bounds: dict[str, Any] | None = None,
                  namespace: Any = UNSET) -> AggregateItem | None:
        """The smallest item within ``bounds``, or None."""
        return await self.at(ctx, 0, bounds, namespace)

    async def max(self, ctx: RunQueryCtx, bounds: dict[str, Any] | None = None,
                  namespace: Any = UNSET) -> AggregateItem | None:
        """The largest item within ``bounds``, or None."""
        return await self.at(ctx, -1, bounds, namespace)

    async def random(self, ctx: RunQueryCtx, bounds: dict[str, Any] | None = None,
                     namespace: Any = UNSET) -> AggregateItem | None:
        """A uniformly random item within ``bounds`` (deterministic per transaction), or None."""
        value: AggregateItem | None = await ctx.run_query(self.mount.random, namespace=self._ns(namespace),
                                                          bounds=bounds)
        return value

    async def paginate(self, ctx: RunQueryCtx, bounds: dict[str, Any] | None = None, cursor: str | None = None,
                       order: Order = "asc", page_size: int = 100, namespace: Any = UNSET) -> AggregatePage:
        """One page of items in key order; pass the returned ``cursor`` back for the next."""
        value: AggregatePage = await ctx.run_query(self.mount.paginate, namespace=self._ns(namespace),
                                                   bounds=bounds, cursor=cursor, order=order, page_size=page_size)
        return value

    async def iter(self, ctx: RunQueryCtx, bounds: dict[str, Any] | None = None, order: Order = "asc",
                   page_size: int = 100, namespace: Any = UNSET) -> AsyncIterator[AggregateItem]:
        """Every item within ``bounds``, page by page (from an action: each page its own snapshot)."""
        cursor = None
        while True:
            res = await self.paginate(ctx, bounds, cursor, order, page_size, namespace)
            for item in res["page"]:
                yield item
            if res["is_done"]:
                return
            cursor = res["cursor"]

    async def paginate_namespaces(self, ctx: RunQueryCtx, cursor: str | None = None,
                                  page_size: int = 100) -> dict[str, Any]:
        """One page of the namespaces that hold a tree: ``{"page", "cursor", "is_done"}``."""
        value: dict[str, Any] = await ctx.run_query(self.mount.paginate_namespaces, cursor=cursor,
                                                    page_size=page_size)
        return value

    async def iter_namespaces(self, ctx: RunQueryCtx, page_size: int = 100) -> AsyncIterator[Any]:
        """Every namespace that holds a tree."""
        cursor = None
        while True:
            res = await self.paginate_namespaces(ctx, cursor, page_size)
            for ns in res["page"]:
                yield ns
            if res["is_done"]:
                return
            cursor = res["cursor"]

    async def settings(self, ctx: RunQueryCtx, namespace: Any = UNSET) -> dict[str, Any] | None:
        """``{"max_node_size", "root_lazy"}`` of the namespace's tree, or None before its first write."""
        value: dict[str, Any] | None = await ctx.run_query(self.mount.settings, namespace=self._ns(namespace))
        return value

    async def validate(self, ctx: RunQueryCtx, namespace: Any = UNSET) -> dict[str, Any]:
        """Check every tree invariant (reads the whole tree): ``{"count", "sum", "depth", "nodes"}``."""
        value: dict[str, Any] = await ctx.run_query(self.mount.validate, namespace=self._ns(namespace))
        return value

    # --- writes --------------------------------------------------------------------------------------

    async def insert(self, ctx: RunMutationCtx, key: Any, id: Any, sum_value: int | float = 0,
                     namespace: Any = UNSET) -> None:
        """Add an item; ``ComponentError {"code": "KEY_EXISTS"}`` if ``(key, id)`` is there."""
        await ctx.run_mutation(self.mount.insert, key=key, id=id, sum_value=sum_value, namespace=self._ns(namespace))

    async def delete(self, ctx: RunMutationCtx, key: Any, id: Any, namespace: Any = UNSET) -> None:
        """Remove an item; ``ComponentError {"code": "DELETE_MISSING_KEY"}`` if it is not there."""
        await ctx.run_mutation(self.mount.delete, key=key, id=id, namespace=self._ns(namespace))

    async def replace(self, ctx: RunMutationCtx, key: Any, id: Any, new_key: Any, new_sum_value: int | float = 0,
                      namespace: Any = UNSET, new_namespace: Any = UNSET) -> None:
        """Move an existing item to ``new_key`` (and ``new_namespace``) with ``new_sum_value``."""
        await ctx.run_mutation(self.mount.replace, **self._replace_args(key, id, new_key, new_sum_value, namespace,
                                                                         new_namespace))

    def _replace_args(self, key: Any, id: Any, new_key: Any, new_sum_value: Any, namespace: Any,
                      new_namespace: Any) -> dict[str, Any]:
        ns = self._ns(namespace)
        return {"key": key, "id": id, "new_key": new_key, "new_sum_value": new_sum_value, "namespace": ns,
                "new_namespace": ns if new_namespace is UNSET else new_namespace, "keep_namespace": False}

    async def insert_if_does_not_exist(self, ctx: RunMutationCtx, key: Any, id: Any, sum_value: int | float = 0,
                                       namespace: Any = UNSET) -> bool:
        """Add an item unless it is there; return whether it was added."""
        value: bool = await ctx.run_mutation(self.mount.insert_if_does_not_exist, key=key, id=id,
                                             sum_value=sum_value, namespace=self._ns(namespace))
        return value

    async def delete_if_exists(self, ctx: RunMutationCtx, key: Any, id: Any, namespace: Any = UNSET) -> bool:
        """Remove an item if it is there; return whether it was."""
        value: bool = await ctx.run_mutation(self.mount.delete_if_exists, key=key, id=id,
                                             namespace=self._ns(namespace))
        return value

    async def replace_or_insert(self, ctx: RunMutationCtx, key: Any, id: Any, new_key: Any,
                                new_sum_value: int | float = 0, namespace: Any = UNSET,
                                new_namespace: Any = UNSET) -> None:
        """``replace``, inserting the new item if the old one is missing."""
        await ctx.run_mutation(self.mount.replace_or_insert,
                               **self._replace_args(key, id, new_key, new_sum_value, namespace, new_namespace))

    async def write_batch(self, ctx: RunMutationCtx, operations: list[dict[str, Any]],
                          namespace: Any = UNSET) -> list[bool]:
        """Several writes in one atomic call (``{"op": "insert", "key", "id", ...}``; see the README).

        An operation without ``"namespace"`` uses ``namespace`` (default: the wrapper's).
        """
        default = self._ns(namespace)
        ops = [{**op, "namespace": default if op.get("namespace", UNSET) is UNSET else op["namespace"]}
               for op in operations]
        value: list[bool] = await ctx.run_mutation(self.mount.write_batch, operations=ops)
        return value

    async def insert_many(self, ctx: RunMutationCtx, items: list[tuple[Any, Any] | tuple[Any, Any, int | float]],
                          namespace: Any = UNSET) -> None:
        """Insert ``(key, id[, sum_value])`` tuples in one call (bulk loads: each node written once)."""
        await self.write_batch(ctx, [{"op": "insert", "key": it[0], "id": it[1],
                                      "sum_value": it[2] if len(it) > 2 else 0,
                                      "namespace": namespace} for it in items])

    # --- maintenance -----------------------------------------------------------------------------------

    async def init(self, ctx: RunMutationCtx, max_node_size: int = 16, root_lazy: bool = True,
                   namespace: Any = UNSET) -> None:
        """Create the namespace's tree with these settings before the first write."""
        await ctx.run_mutation(self.mount.init, namespace=self._ns(namespace), max_node_size=max_node_size,
                               root_lazy=root_lazy)

    async def clear(self, ctx: RunMutationCtx, max_node_size: int | None = None, root_lazy: bool | None = None,
                    namespace: Any = UNSET) -> dict[str, Any]:
        """Empty the namespace (keeping its settings unless given); old nodes beyond 256 are collected later."""
        value: dict[str, Any] = await ctx.run_mutation(self.mount.clear, namespace=self._ns(namespace),
                                                       max_node_size=max_node_size, root_lazy=root_lazy)
        return value

    async def clear_all(self, ctx: RunMutationCtx, max_node_size: int | None = None,
                        root_lazy: bool | None = None) -> None:
        """Clear every namespace (one mutation per page of 20 when called from an action)."""
        cursor = None
        while True:
            res = await ctx.run_mutation(self.mount.clear_all, max_node_size=max_node_size, root_lazy=root_lazy,
                                         cursor=cursor)
            if res["is_done"]:
                return
            cursor = res["cursor"]

    async def collect_garbage(self, ctx: RunMutationCtx, max_nodes: int = 1000) -> dict[str, Any]:
        """Delete up to ``max_nodes`` nodes left by ``clear`` now; ``{"deleted", "more"}``."""
        value: dict[str, Any] = await ctx.run_mutation(self.mount.collect_garbage, max_nodes=max_nodes,
                                                       reschedule=False)
        return value

    async def make_root_lazy(self, ctx: RunMutationCtx, lazy: bool = True, namespace: Any = UNSET) -> None:
        """Make the root lazy (fewer write conflicts) or eager (``lazy=False``: count/sum in one read)."""
        await ctx.run_mutation(self.mount.set_root_lazy, lazy=lazy, namespace=self._ns(namespace))
