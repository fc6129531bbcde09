from pydantic import BaseModel

from runtime import Component, ComponentError

component = Component("leaf")


@component.table("items")
class Item(BaseModel):
    tag: str


@component.mutation
async def put(ctx, tag: str, fail: bool = False) -> str:
    doc_id = await ctx.db.insert("items", {"tag": tag})
    if fail:
        raise ComponentError({"where": "leaf", "tag": tag})
    return doc_id


@component.mutation
async def call_back(ctx, handle: str, tag: str) -> str:
    """Calls whatever function handle it is given (re-entrant chains)."""
    await ctx.db.insert("items", {"tag": tag})
    return await ctx.run_mutation(handle, tag=tag + "/back")


@component.query
async def tags(ctx) -> list[str]:
    return sorted(d["tag"] for d in await ctx.db.query("items").collect())


@component.query
async def page(ctx, cursor: str | None = None) -> dict:
    return dict(await ctx.db.query("items").paginate(cursor=cursor, num_items=2))
