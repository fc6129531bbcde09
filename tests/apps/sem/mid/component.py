from pydantic import BaseModel

from runtime import Component, ComponentError

component = Component("mid")
leaf = component.use("leaf", name="leaf")


@component.table("items")
class Item(BaseModel):
    tag: str


@component.mutation
async def put(ctx, tag: str, fail_leaf: bool = False, catch_leaf: bool = False, fail_self: bool = False) -> None:
    await ctx.db.insert("items", {"tag": tag})
    try:
        await ctx.run_mutation(leaf.put, tag=tag, fail=fail_leaf)
    except ComponentError as err:
        if not catch_leaf:
            raise
        await ctx.db.insert("items", {"tag": f"caught:{err.data['where']}"})
    if fail_self:
        raise ComponentError({"where": "mid", "tag": tag})


@component.query
async def tags(ctx) -> list[str]:
    return sorted(d["tag"] for d in await ctx.db.query("items").collect())


@component.query
async def leaf_tags(ctx) -> list[str]:
    return await ctx.run_query(leaf.tags)
