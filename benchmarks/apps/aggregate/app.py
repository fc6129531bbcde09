"""Bench app for the aggregate suite: a table of items mirrored into an aggregate (``board``)."""

from typing import Any

from pydantic import BaseModel

from components.aggregate import TableAggregate
from runtime import App, MutationCtx, QueryCtx

app = App()
board = TableAggregate(app.use("aggregate", name="board"), sort_key=lambda d: d["score"], sum_value=lambda d: d["score"])

PAGE = 25_000
"""Documents per page of the full scan (below the 32,000 scanned documents of one transaction)."""


@app.table("items")
class ItemRow(BaseModel):
    score: int


@app.mutation
async def load(ctx: MutationCtx, start: int, n: int) -> int:
    """Insert items ``start .. start+n-1`` into the table, then mirror them with one batch call."""
    docs = []
    for i in range(start, start + n):
        doc = {"score": i}
        docs.append({**doc, "_id": await ctx.db.insert("items", doc)})
    await board.insert_docs(ctx, docs)
    return n


@app.query
async def count(ctx: QueryCtx, salt: int) -> int:
    """The aggregate's count (``salt`` makes each call a distinct query, so no cached result is served)."""
    return await board.count(ctx)


@app.query
async def at(ctx: QueryCtx, offset: int) -> Any:
    item = await board.at(ctx, offset)
    return None if item is None else item["key"]


@app.query
async def index_of(ctx: QueryCtx, key: int) -> int:
    return await board.index_of(ctx, key)


@app.query
async def scan_page(ctx: QueryCtx, cursor: str | None, salt: int) -> dict[str, Any]:
    """One page of the baseline: read the table's documents and count them (what a count costs without an aggregate)."""
    res = await ctx.db.query("items").paginate(cursor, PAGE)
    return {"n": len(res.page), "cursor": res.continue_cursor, "done": res.is_done}


@app.query
async def validate(ctx: QueryCtx) -> dict[str, Any]:
    return await board.validate(ctx)
