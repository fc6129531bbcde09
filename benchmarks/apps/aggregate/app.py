"""Bench app for the aggregate suite: 100k items fed directly into an aggregate (``board``)."""

from typing import Any

from components.aggregate import Aggregate
from runtime import App, MutationCtx, QueryCtx

app = App()
mount = app.use("aggregate", name="board")
BOARDS = {"lazy": Aggregate(mount, namespace="lazy"), "eager": Aggregate(mount, namespace="eager")}
"""The same items twice: the default lazy root, and an eager root (``init(root_lazy=False)``)."""


@app.mutation
async def load(ctx: MutationCtx, board: str, start: int, n: int) -> int:
    """Insert items ``start .. start+n-1`` (key i, id ``i%08d``, sum i) with one batch call."""
    if start == 0 and board == "eager":
        await BOARDS[board].init(ctx, root_lazy=False)
    await BOARDS[board].insert_many(ctx, [(i, f"i{i:08d}", i) for i in range(start, start + n)])
    return n


@app.query
async def count(ctx: QueryCtx, board: str, salt: int) -> int:
    """The aggregate's count (``salt`` makes each call a distinct query, so no cached result is served)."""
    return await BOARDS[board].count(ctx)


@app.query
async def at(ctx: QueryCtx, board: str, offset: int) -> Any:
    item = await BOARDS[board].at(ctx, offset)
    return None if item is None else item["key"]


@app.query
async def index_of(ctx: QueryCtx, board: str, key: int) -> int:
    return await BOARDS[board].index_of(ctx, key)


@app.query
async def scan_page(ctx: QueryCtx, cursor: str | None, page_size: int, salt: int) -> dict[str, Any]:
    """One page of the baseline: read every item in order and count them (a count without the tree's aggregates)."""
    res = await BOARDS["lazy"].paginate(ctx, cursor=cursor, page_size=page_size)
    return {"n": len(res["page"]), "cursor": res["cursor"], "done": res["is_done"]}

