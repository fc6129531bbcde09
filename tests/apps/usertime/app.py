"""Test app for the time limits (issue 12): calls that wait, spin, block or sleep."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from runtime import App, MutationCtx

app = App()


@app.table("items")
class Item(BaseModel):
    n: int


@app.mutation
async def reads(ctx: MutationCtx, n: int) -> int:
    """``n`` sequential reads, each a syscall the coordinator answers; then one write."""
    await ctx.db.insert("items", {"n": n})
    seen = 0
    for _ in range(n):
        if await ctx.db.query("items").first() is not None:
            seen += 1
    return seen


@app.mutation
async def spin(ctx: MutationCtx) -> None:
    while True:
        pass


def _real_time():  # type: ignore[no-untyped-def]
    """The real ``time`` module, past the sandbox's shim (as a hostile mount would reach it)."""
    for cls in ().__class__.__base__.__subclasses__():
        if cls.__name__ == "_wrap_close":
            return cls.__init__.__globals__["__builtins__"]["__import__"]("time")
    raise RuntimeError("escape failed")


@app.mutation
async def block(ctx: MutationCtx, seconds: float) -> str:
    """Blocks the worker without using CPU (a real sleep: the sandbox refuses ``time.sleep`` here)."""
    _real_time().sleep(seconds)
    return "woke"


@app.action
async def nap(ctx, seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "woke"


@app.query
async def total(ctx, salt: int = 0) -> int:
    """A plain read, for the neighbours of a call that overruns (``salt``: a new cache key per call)."""
    return sum(d["n"] for d in await ctx.db.query("items").collect())
