"""Test app for contention: a few hot rows every client bumps, and two-account transfers."""

from pydantic import BaseModel

from runtime import App, MutationCtx, QueryCtx

app = App()


@app.table("rows", indexes={"by_name": ["name"]})
class Row(BaseModel):
    name: str
    n: int


async def _row(ctx: QueryCtx | MutationCtx, name: str) -> dict:
    row = await ctx.db.query("rows").with_index("by_name", lambda q: q.eq("name", name)).unique()
    assert row is not None, name
    return row


@app.mutation
async def seed(ctx: MutationCtx, names: list[str], n: int) -> None:
    for name in names:
        await ctx.db.insert("rows", {"name": name, "n": n})


@app.mutation
async def bump(ctx: MutationCtx, name: str) -> int:
    row = await _row(ctx, name)
    await ctx.db.patch(row["_id"], {"n": row["n"] + 1})
    return row["n"] + 1


@app.mutation
async def move(ctx: MutationCtx, src: str, dst: str, amount: int) -> None:
    a, b = await _row(ctx, src), await _row(ctx, dst)
    await ctx.db.patch(a["_id"], {"n": a["n"] - amount})
    await ctx.db.patch(b["_id"], {"n": b["n"] + amount})


@app.query
async def counts(ctx: QueryCtx) -> dict[str, int]:
    return {r["name"]: r["n"] async for r in ctx.db.query("rows")}


@app.mutation
async def peek(ctx: MutationCtx, name: str) -> int:
    """A mutation that reads and writes nothing."""
    return int((await _row(ctx, name))["n"])
