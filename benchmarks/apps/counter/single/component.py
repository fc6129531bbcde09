"""One document per key: every increment of a key writes the same document."""

from pydantic import BaseModel

from runtime import Component, MutationCtx, QueryCtx

component = Component("single")


@component.table("counts", indexes={"by_key": ["key"]})
class Count(BaseModel):
    key: str
    value: int


@component.mutation
async def inc(ctx: MutationCtx, key: str) -> None:
    row = await ctx.db.query("counts").with_index("by_key", lambda q: q.eq("key", key)).unique()
    if row is None:
        await ctx.db.insert("counts", {"key": key, "value": 1})
    else:
        await ctx.db.replace(row["_id"], {"key": key, "value": row["value"] + 1})


@component.query
async def get(ctx: QueryCtx, key: str) -> int:
    row = await ctx.db.query("counts").with_index("by_key", lambda q: q.eq("key", key)).unique()
    return row["value"] if row else 0
