"""The app `bulkhead bench --only hardening` drives: one table, one indexed read, one clock read."""

import time

from pydantic import BaseModel

from runtime import App

app = App()


@app.table("rows", indexes={"by_key": ["key"]})
class Row(BaseModel):
    key: str
    value: int


@app.mutation
async def seed(ctx) -> None:
    await ctx.db.insert("rows", {"key": "k", "value": 1})


@app.query
async def get_one(ctx, key: str, nonce: int = 0) -> int:
    row = await ctx.db.query("rows").with_index("by_key", lambda q: q.eq("key", key)).unique()
    return row["value"] if row else -1


@app.query
async def noop(ctx, nonce: int = 0) -> int:
    return nonce


@app.query
async def clock_100k(ctx, nonce: int) -> float:
    """100 000 reads of the shimmed clock (frozen in a query): the language layer's per-use cost."""
    t = 0.0
    for _ in range(100_000):
        t = time.time()
    return t
