"""The healthy neighbour: a table it writes and reads while the hostile mounts try the host's sockets."""

from pydantic import BaseModel

from runtime import Component

component = Component("good")


@component.table("facts")
class Fact(BaseModel):
    text: str


@component.mutation
async def put(ctx, text: str) -> str:
    return await ctx.db.insert("facts", {"text": text})


@component.query
async def all(ctx) -> list[str]:
    return sorted(d["text"] for d in await ctx.db.query("facts").collect())
