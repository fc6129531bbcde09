"""``TableAggregate`` and ``Triggers``: an aggregate that mirrors one of the app's tables.

A :class:`TableAggregate` derives an item from a document (``sort_key(doc)``,
``sum_value(doc)``, ``namespace(doc)``, the document's ``_id`` as the id) and
offers the document-level writes and hooks.  :class:`Triggers` declares which
aggregates mirror which tables once, at import time, and hands out a
``ctx.db`` look-alike whose writes keep every declared aggregate in sync in the
same transaction (the table write and the aggregate writes commit together
or not at all) — the automatic sync the reference's users asked for (#23).
"""


from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from components.aggregate.client import UNSET, Aggregate, AggregateItem, Order
from runtime import DatabaseWriter, MountRef, MutationCtx, Query, RunMutationCtx, RunQueryCtx, SystemReader

Doc = dict[str, Any]


class TableAggregate(Aggregate):
    """An :class:`Aggregate` whose items are documents of one table.

    Args:
        mount: what ``app.use("aggregate", name=...)`` returned.
        sort_key: the item key of a document (e.g. ``lambda d: d["score"]``,
            or ``lambda d: [d["game"], d["score"]]`` for prefix bounds).
        sum_value: the summand of a document (0 if not given).
        namespace: the namespace of a document (the wrapper's fixed
            ``default_namespace`` if not given).

    Every read of :class:`Aggregate` is available; writes take documents.
    """

    def __init__(self, mount: MountRef, sort_key: Callable[[Doc], Any],
                 sum_value: Callable[[Doc], int | float] | None = None,
                 namespace: Callable[[Doc], Any] | None = None, default_namespace: Any = None) -> None:
        if not callable(sort_key):
            raise TypeError(f"TableAggregate: sort_key must be a function of the document, not {sort_key!r}")
        for name, fn in (("sum_value", sum_value), ("namespace", namespace)):
            if fn is not None and not callable(fn):
                raise TypeError(f"TableAggregate: {name} must be a function of the document, not {fn!r}")
        super().__init__(mount, default_namespace)
        self.sort_key = sort_key
        self.sum_value_of = sum_value
        self.namespace_of = namespace

    def item_of(self, doc: Doc) -> tuple[Any, Any, int | float, Any]:
        """``(key, id, sum_value, namespace)`` of a document."""
        if "_id" not in doc:
            raise ValueError("TableAggregate needs stored documents (with '_id'); pass what ctx.db.get returned")
        ns = self.namespace_of(doc) if self.namespace_of else self.namespace
        return self.sort_key(doc), doc["_id"], self.sum_value_of(doc) if self.sum_value_of else 0, ns

    async def insert_doc(self, ctx: RunMutationCtx, doc: Doc) -> None:
        """Add a document's item (``KEY_EXISTS`` if it is there)."""
        key, id, s, ns = self.item_of(doc)
        await self.insert(ctx, key, id, s, namespace=ns)

    async def delete_doc(self, ctx: RunMutationCtx, doc: Doc) -> None:
        """Remove a document's item (``DELETE_MISSING_KEY`` if it is not there)."""
        key, id, _, ns = self.item_of(doc)
        await self.delete(ctx, key, id, namespace=ns)

    async def replace_doc(self, ctx: RunMutationCtx, old: Doc, new: Doc) -> None:
        """Move a document's item after an update; no call at all if its item did not change."""
        (k0, i0, s0, n0), (k1, i1, s1, n1) = self.item_of(old), self.item_of(new)
        if i0 != i1:
            raise ValueError("replace_doc: old and new must be the same document (same '_id')")
        if (k0, s0, n0) != (k1, s1, n1) or type(s0) is not type(s1):
            await self.replace(ctx, k0, i0, k1, s1, namespace=n0, new_namespace=n1)

    async def insert_doc_if_does_not_exist(self, ctx: RunMutationCtx, doc: Doc) -> bool:
        """Idempotent :meth:`insert_doc` (backfills); return whether it inserted."""
        key, id, s, ns = self.item_of(doc)
        return await self.insert_if_does_not_exist(ctx, key, id, s, namespace=ns)

    async def delete_doc_if_exists(self, ctx: RunMutationCtx, doc: Doc) -> bool:
        """Idempotent :meth:`delete_doc`."""
        key, id, _, ns = self.item_of(doc)
        return await self.delete_if_exists(ctx, key, id, namespace=ns)

    async def replace_doc_or_insert(self, ctx: RunMutationCtx, old: Doc, new: Doc) -> None:
        """Idempotent :meth:`replace_doc`."""
        (k0, i0, _, n0), (k1, _, s1, n1) = self.item_of(old), self.item_of(new)
        await self.replace_or_insert(ctx, k0, i0, k1, s1, namespace=n0, new_namespace=n1)

    async def insert_docs(self, ctx: RunMutationCtx, docs: list[Doc], idempotent: bool = False) -> list[bool]:
        """Add many documents' items in one call (backfill pages)."""
        op = "insert_if_does_not_exist" if idempotent else "insert"
        ops = []
        for doc in docs:
            key, id, s, ns = self.item_of(doc)
            ops.append({"op": op, "key": key, "id": id, "sum_value": s, "namespace": ns})
        return await self.write_batch(ctx, ops)

    async def index_of_doc(self, ctx: RunQueryCtx, doc: Doc, bounds: dict[str, Any] | None = None,
                           order: Order = "asc") -> int:
        """Rank of this exact document among the items within ``bounds``."""
        key, id, _, ns = self.item_of(doc)
        return await self.index_of(ctx, key, id, bounds=bounds, order=order, namespace=ns)

    # hooks, for mutations that write the table themselves
    async def on_insert(self, ctx: RunMutationCtx, doc: Doc) -> None:
        """Call after inserting ``doc`` (the stored document)."""
        await self.insert_doc(ctx, doc)

    async def on_delete(self, ctx: RunMutationCtx, doc: Doc) -> None:
        """Call after deleting ``doc`` (as it was)."""
        await self.delete_doc(ctx, doc)

    async def on_replace(self, ctx: RunMutationCtx, old: Doc, new: Doc) -> None:
        """Call after an update (patch or replace) with the document before and after."""
        await self.replace_doc(ctx, old, new)


class Triggers:
    """Declared hooks: which aggregates mirror which tables.

    ::

        triggers = Triggers()
        triggers.register("scores", by_score, by_game)

        @app.mutation
        async def add_score(ctx, player: str, score: int) -> str:
            return await triggers.db(ctx).insert("scores", {"player": player, "score": score})

    Every write through ``triggers.db(ctx)`` reads the document before and/or
    after (one extra read each) and calls each registered aggregate's hook.
    Writes straight through ``ctx.db`` bypass the hooks — use one or the other.
    """

    def __init__(self) -> None:
        self._hooks: dict[str, list[TableAggregate]] = {}

    def register(self, table: str, *aggregates: TableAggregate) -> None:
        """Mirror ``table`` into each of ``aggregates``."""
        for agg in aggregates:
            if not isinstance(agg, TableAggregate):
                raise TypeError(f"Triggers.register({table!r}): {agg!r} is not a TableAggregate")
        self._hooks.setdefault(table, []).extend(aggregates)

    def aggregates(self, table: str) -> list[TableAggregate]:
        """The aggregates mirroring ``table``."""
        return list(self._hooks.get(table, ()))

    def db(self, ctx: MutationCtx) -> "MirroredDb":
        """A writer over ``ctx.db`` that runs the hooks."""
        return MirroredDb(ctx, self)


class MirroredDb:
    """``ctx.db`` with ``insert``/``patch``/``replace``/``delete`` that keep declared aggregates in sync.

    Reads (``get``, ``query``, ``system``, ``table_of``) go straight to ``ctx.db``.
    """

    def __init__(self, ctx: MutationCtx, triggers: Triggers) -> None:
        self._ctx = ctx
        self._triggers = triggers

    @property
    def _db(self) -> DatabaseWriter:
        return self._ctx.db

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx.db, name)  # anything else ctx.db has passes through

    @property
    def system(self) -> SystemReader:
        """This mount's system tables (``ctx.db.system``)."""
        return self._db.system

    async def get(self, id: str) -> Doc | None:
        """``ctx.db.get``."""
        return await self._db.get(id)

    def query(self, table: str) -> Query:
        """``ctx.db.query``."""
        return self._db.query(table)

    async def table_of(self, id: str) -> str | None:
        """``ctx.db.table_of``."""
        return await self._db.table_of(id)

    async def _table_of(self, id: str) -> tuple[str | None, Doc | None]:
        doc = await self._db.get(id)
        return (await self._db.table_of(id) if doc is not None else None), doc

    async def insert(self, table: str, doc: Doc) -> str:
        """Insert, then add the stored document to each aggregate of ``table``."""
        id = await self._db.insert(table, doc)
        hooks = self._triggers.aggregates(table)
        if hooks:
            stored = await self._db.get(id)
            assert stored is not None  # just inserted, in this transaction
            for agg in hooks:
                await agg.on_insert(self._ctx, stored)
        return id

    async def _update(self, id: str, write: Callable[[], Awaitable[None]]) -> None:
        table, old = await self._table_of(id)
        await write()
        hooks = self._triggers.aggregates(table) if table else []
        if hooks and old is not None:
            new = await self._db.get(id)
            assert new is not None  # just written, in this transaction
            for agg in hooks:
                await agg.on_replace(self._ctx, old, new)

    async def patch(self, id: str, fields: Doc) -> None:
        """Patch, then move the document's items."""
        await self._update(id, lambda: self._db.patch(id, fields))

    async def replace(self, id: str, doc: Doc) -> None:
        """Replace, then move the document's items."""
        await self._update(id, lambda: self._db.replace(id, doc))

    async def delete(self, id: str) -> None:
        """Delete, then remove the document's items."""
        table, old = await self._table_of(id)
        await self._db.delete(id)
        if old is not None:
            for agg in self._triggers.aggregates(table or ""):
                await agg.on_delete(self._ctx, old)


if TYPE_CHECKING:  # a MirroredDb is a ctx.db
    def _is_a_db(db: MirroredDb) -> DatabaseWriter: return db


__all__ = ["AggregateItem", "MirroredDb", "TableAggregate", "Triggers", "UNSET"]
