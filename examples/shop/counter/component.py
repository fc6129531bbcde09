"""A named-counter component: one row per name."""

from pydantic import BaseModel

from runtime import Component, MutationCtx, QueryCtx

component = Component("counter")


@component.table("counts", indexes={"by_name": ["name"]})
class Count(BaseModel):
    name: str
    value: int


@component.mutation
async def add(ctx: MutationCtx, name: str, amount: int = 1) -> int:
    row = await ctx.db.query("counts").with_index("by_name", lambda q: q.eq("name", name)).unique()
    if row is None:
        await ctx.db.insert("counts", {"name": name, "value": amount})
        return amount
    await ctx.db.patch(row["_id"], {"value": row["value"] + amount})
    return row["value"] + amount


@component.query
async def get(ctx: QueryCtx, name: str) -> int:
    row = await ctx.db.query("counts").with_index("by_name", lambda q: q.eq("name", name)).unique()
    return row["value"] if row else 0
