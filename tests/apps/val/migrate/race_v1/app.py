"""Deploy racing writes, version 1: ``v`` may be an int or a str."""

from pydantic import BaseModel

from runtime import App, MutationCtx, QueryCtx

app = App()


@app.table("items")
class Item(BaseModel):
    v: int | str


@app.mutation
async def fill(ctx: MutationCtx, n: int) -> int:
    for i in range(n):
        await ctx.db.insert("items", {"v": i})
    return n


@app.mutation
async def put_str(ctx: MutationCtx, s: str) -> int:
    await ctx.db.insert("items", {"v": s})
    return 1


@app.query
async def str_values(ctx: QueryCtx) -> list[str]:
    return [d["v"] for d in await ctx.db.query("items").collect() if isinstance(d["v"], str)]
