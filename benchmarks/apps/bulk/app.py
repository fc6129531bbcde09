"""The app `bulkhead bench --only bulk` drives: one table, one mutation inserting a batch of documents."""

import asyncio

from pydantic import BaseModel

from runtime import App

app = App()


@app.table("items", indexes={"by_group": ["group"]})
class Item(BaseModel):
    seq: int
    group: int
    name: str
    text: str


@app.mutation
async def insert_batch(ctx, docs: list[dict]) -> int:
    """Insert every document of ``docs`` in this one transaction; return how many."""
    for doc in docs:
        await ctx.db.insert("items", doc)
    return len(docs)


@app.query
async def count_group(ctx, group: int) -> int:
    """How many documents of ``group`` there are (the bench checks its load with it)."""
    rows = await ctx.db.query("items").with_index("by_group", lambda q: q.eq("group", group)).collect()
    return len(rows)


@app.mutation
async def insert_batch_gathered(ctx, docs: list[dict]) -> int:
    """The same, with every insert of the batch awaited together: their round trips overlap."""
    await asyncio.gather(*(ctx.db.insert("items", doc) for doc in docs))
    return len(docs)
