from pydantic import BaseModel

from runtime import Component

component = Component("box")


@component.table("things")
class Thing(BaseModel):
    name: str


@component.mutation
async def put(ctx, name: str) -> str:
    return await ctx.db.insert("things", {"name": name})


@component.query
async def names(ctx) -> list[str]:
    return [t["name"] for t in await ctx.db.query("things").collect()]
