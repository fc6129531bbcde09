"""The quiet mount: a table of a few rows and a query reading one of them through an index."""

from pydantic import BaseModel

from runtime import Component

component = Component("steady")


@component.table("rows", indexes={"by_key": ["key"]})
class Row(BaseModel):
    key: str
    value: int


@component.mutation
async def seed(ctx, keys: list[str]) -> None:
    for k in keys:
        await ctx.db.insert("rows", {"key": k, "value": 0})


@component.query
async def read(ctx, key: str, salt: int) -> int:
    """One indexed read; ``salt`` makes every call distinct so the query cache never answers it."""
    row = await ctx.db.query("rows").with_index("by_key", lambda q: q.eq("key", key)).unique()
    return row["value"] if row else -1
