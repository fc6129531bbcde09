"""Bench app for suite ``counter``: a sharded counter, a single-document counter, and hot rate limits.

Both counters are components called from the app (app -> component, one
sub-transaction), so the only difference measured is the sharding.
"""

from components.rate_limiter import RateLimiter, token_bucket
from components.sharded_counter import ShardedCounter
from runtime import App, MutationCtx, QueryCtx

app = App()
sharded = ShardedCounter(app.use("sharded_counter", name="sharded"), default_shards=16)
single = app.use("single", name="single")
limits = RateLimiter(app.use("rate_limiter", name="limits"), {
    "exact": token_bucket(rate=1e9, period=1.0),
    "sharded": token_bucket(rate=1e9, period=1.0, shards=8),
    "lazy": token_bucket(rate=1e9, period=1.0, lazy=True, fold_every=8),
})


@app.mutation
async def sharded_inc(ctx: MutationCtx, key: str) -> None:
    await sharded.inc(ctx, key)


@app.mutation
async def single_inc(ctx: MutationCtx, key: str) -> None:
    await ctx.run_mutation(single.inc, key=key)


@app.query
async def counts(ctx: QueryCtx, key: str) -> dict[str, int | float]:
    return {"sharded": await sharded.count(ctx, key), "single": await ctx.run_query(single.get, key=key)}


@app.mutation
async def take(ctx: MutationCtx, name: str, key: str) -> bool:
    return bool((await limits.limit(ctx, name, key=key))["ok"])
