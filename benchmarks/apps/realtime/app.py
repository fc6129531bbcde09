"""Bench app for the realtime suite: rows to subscribe to, a cached read, scheduled jobs."""

from pydantic import BaseModel

from runtime import App, MutationCtx, QueryCtx

app = App()


@app.table("rows", indexes={"by_key": ["key"]})
class Row(BaseModel):
    key: str
    value: int


@app.table("done")
class Done(BaseModel):
    n: int


@app.mutation
async def seed(ctx: MutationCtx, keys: list[str]) -> None:
    for k in keys:
        await ctx.db.insert("rows", {"key": k, "value": 0})


@app.query
async def get(ctx: QueryCtx, key: str) -> int:
    row = await ctx.db.query("rows").with_index("by_key", lambda q: q.eq("key", key)).unique()
    return row["value"] if row else -1


@app.mutation
async def put(ctx: MutationCtx, key: str, value: int) -> None:
    row = await ctx.db.query("rows").with_index("by_key", lambda q: q.eq("key", key)).unique()
    await ctx.db.patch(row["_id"], {"value": value})


@app.mutation(internal=True)
async def job(ctx: MutationCtx, n: int) -> None:
    await ctx.db.insert("done", {"n": n})


@app.mutation
async def schedule(ctx: MutationCtx, n: int) -> None:
    for i in range(n):
        await ctx.scheduler.run_after(0, job, n=i)
