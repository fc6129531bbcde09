"""A grandchild of the app: only its parent mount may call it."""

from pydantic import BaseModel

from runtime import Component, MutationCtx, QueryCtx

component = Component("inner")


@component.table("notes")
class Note(BaseModel):
    text: str


@component.mutation
async def put(ctx: MutationCtx, text: str) -> str:
    return await ctx.db.insert("notes", {"text": text})


@component.query
async def env(ctx: QueryCtx) -> dict[str, str]:
    return dict(ctx.env)
