"""The app `bulkhead bench --only calls` drives."""

from pydantic import BaseModel

from runtime import App

app = App()
acct = app.use("acct", name="acct")
chain = app.use("hop2", name="chain")  # app -> chain -> chain/child: three levels


@app.table("rows", indexes={"by_key": ["key"]})
class Row(BaseModel):
    key: str
    value: int


@app.mutation
async def seed(ctx, keys: list[str]) -> None:
    for k in keys:
        await ctx.db.insert("rows", {"key": k, "value": 0})
    await ctx.run_mutation(chain.seed, key="k")


@app.query
async def get_one(ctx, key: str, nonce: int = 0) -> int:
    """Read one document; a new ``nonce`` each call keeps the query cache out of the measurement."""
    row = await ctx.db.query("rows").with_index("by_key", lambda q: q.eq("key", key)).unique()
    return row["value"] if row else -1


@app.mutation
async def bump(ctx, key: str) -> int:
    row = await ctx.db.query("rows").with_index("by_key", lambda q: q.eq("key", key)).unique()
    await ctx.db.patch(row["_id"], {"value": row["value"] + 1})
    return row["value"] + 1


@app.mutation
async def bump_in_component(ctx, key: str) -> int:
    return await ctx.run_mutation(acct.bump, key=key)


@app.query
async def nested3(ctx, key: str) -> int:
    return await ctx.run_query(chain.read, key=key)
