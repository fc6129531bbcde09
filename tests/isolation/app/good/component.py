"""The healthy neighbour: a table, its own secret in env, a paginated query."""

from pydantic import BaseModel

from runtime import Component

component = Component("good", env={"GOOD_SECRET": "good-secret-7f3a"})


@component.table("facts")
class Fact(BaseModel):
    text: str


@component.mutation
async def put(ctx, text: str) -> str:
    return await ctx.db.insert("facts", {"text": text})


@component.query
async def all(ctx) -> list[str]:
    return sorted(d["text"] for d in await ctx.db.query("facts").collect())


@component.query
async def ids(ctx) -> list[str]:
    return [d["_id"] for d in await ctx.db.query("facts").collect()]


@component.query
async def first_page(ctx) -> str:
    """A continuation cursor of this mount's own table (for the forged-cursor attempt)."""
    page = await ctx.db.query("facts").paginate(None, 1)
    return page.continue_cursor


@component.query
async def secret(ctx) -> str:
    return ctx.env["GOOD_SECRET"]
