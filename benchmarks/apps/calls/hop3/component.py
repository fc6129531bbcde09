"""One link of a chain of mounts: reads one document, or asks its child to."""

from pydantic import BaseModel

from runtime import Component

component = Component("hop3")


@component.table("rows", indexes={"by_key": ["key"]})
class Row(BaseModel):
    key: str
    value: int


@component.mutation
async def seed(ctx, key: str) -> None:
    await ctx.db.insert("rows", {"key": key, "value": 1})


@component.query
async def read(ctx, key: str) -> int:
    row = await ctx.db.query("rows").with_index("by_key", lambda q: q.eq("key", key)).unique()
    return row["value"] if row else 0
