"""Errors as callers see them: a function that raises, a query that tries to write."""

from pydantic import BaseModel

from runtime import App, MutationCtx, QueryCtx

app = App()


@app.table("notes")
class Note(BaseModel):
    text: str


@app.mutation
async def divide(ctx: MutationCtx, n: int) -> float:
    return 1 / n


@app.query
async def write_from_query(ctx: QueryCtx) -> str:
    return await ctx.db.insert("notes", {"text": "x"})  # type: ignore[attr-defined]
