"""Test app for actions: nesting, their own transactions, the time limit, call rules (and a __future__ import)."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from runtime import App, ComponentError, MutationCtx, QueryCtx

app = App()


@app.table("marks")
class Mark(BaseModel):
    text: str


@app.mutation
async def mark(ctx: MutationCtx, text: str) -> int:
    await ctx.db.insert("marks", {"text": text})
    return len(await ctx.db.query("marks").collect())


@app.query
async def marks(ctx: QueryCtx) -> list[str]:
    return [m["text"] for m in await ctx.db.query("marks").collect()]


@app.action
async def inner(ctx, text: str) -> str:
    await ctx.run_mutation(mark, text=text)
    return text.upper()


@app.action
async def outer(ctx, text: str) -> dict:
    t0 = ctx.now()
    up = await ctx.run_action(inner, text=text)
    await asyncio.sleep(0.05)
    seen = await ctx.run_query(marks)
    return {"up": up, "seen": seen, "elapsed": ctx.now() - t0}


@app.action
async def mark_then_fail(ctx, text: str) -> None:
    await ctx.run_mutation(mark, text=text)
    raise ComponentError({"after": "the mutation committed"})


@app.action
async def sleepy(ctx, seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "woke"


@app.mutation
async def mutation_runs_action(ctx: MutationCtx) -> None:
    await ctx.run_action(inner, text="never")


@app.query
async def query_runs_mutation(ctx: QueryCtx) -> None:
    await ctx.run_mutation(mark, text="never")
