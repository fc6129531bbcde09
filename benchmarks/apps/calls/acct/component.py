from pydantic import BaseModel

from runtime import Component

component = Component("acct")


@component.table("rows", indexes={"by_key": ["key"]})
class Row(BaseModel):
    key: str
    value: int


@component.mutation
async def bump(ctx, key: str) -> int:
    row = await ctx.db.query("rows").with_index("by_key", lambda q: q.eq("key", key)).unique()
    if row is None:
        await ctx.db.insert("rows", {"key": key, "value": 1})
        return 1
    await ctx.db.patch(row["_id"], {"value": row["value"] + 1})
    return row["value"] + 1
