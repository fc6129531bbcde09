from pydantic import BaseModel

from runtime import Component

component = Component("steady")


@component.table("notes")
class Note(BaseModel):
    text: str


@component.mutation
async def put(ctx, text: str) -> str:
    return await ctx.db.insert("notes", {"text": text})


@component.query
async def texts(ctx) -> list[str]:
    return sorted(d["text"] for d in await ctx.db.query("notes").collect())


@component.query
async def count(ctx, items: list) -> int:
    return len(items)
