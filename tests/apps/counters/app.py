"""Test app for the first-party sharded_counter and rate_limiter components.

Each component is mounted twice, with fully separate data:

    counter_a   sharded_counter (by registered name), float mode, key "hot" on 4 shards, others on 8
    counter_b   components.sharded_counter (by import path), exact integer mode, 16 shards
    limits_a    rate_limiter (by registered name)
    limits_b    components.rate_limiter (by import path), the same limit names

Every function takes ``which`` ("a" or "b") to pick the instance.
"""

from typing import Any

from pydantic import BaseModel

from components.rate_limiter import HOUR, MINUTE, SECOND, RateLimiter, fixed_window, token_bucket
from components.sharded_counter import ShardedCounter
from runtime import App, ComponentError, MutationCtx, QueryCtx

app = App()

counters = {
    "a": ShardedCounter(app.use("sharded_counter", name="counter_a"), shards={"hot": 4}, default_shards=8),
    "b": ShardedCounter(app.use("components.sharded_counter", name="counter_b"), integer=True),
}
posts_total = counters["b"].trigger("posts")
posts_by_author = counters["b"].trigger(lambda doc: f"author:{doc['author']}")

LIMITS: dict[str, Any] = {
    "burst": token_bucket(rate=2, period=MINUTE, capacity=3),
    "slow": token_bucket(rate=1, period=HOUR),
    "reserved": token_bucket(rate=10, period=HOUR, max_reserved=20),
    "fast": token_bucket(rate=10, period=SECOND, capacity=2),
    "window": fixed_window(rate=3, period=HOUR),
    "window_fast": fixed_window(rate=2, period=0.25 * SECOND, start=0),
    "sharded": token_bucket(rate=20, period=HOUR, shards=4),
    "sharded_window": fixed_window(rate=40, period=HOUR, shards=10),
    "lazy": token_bucket(rate=5, period=HOUR, lazy=True, fold_every=10**9),
    "lazy_exact": token_bucket(rate=5, period=HOUR, lazy=True, fold_every=1),
}
limiters = {
    "a": RateLimiter(app.use("rate_limiter", name="limits_a"), LIMITS),
    "b": RateLimiter(app.use("components.rate_limiter", name="limits_b"), LIMITS),
}


@app.table("posts", indexes={"by_author": ["author"]})
class Post(BaseModel):
    author: str
    title: str


# --- sharded counter ---------------------------------------------------------------------------------------------


@app.mutation
async def c_add(ctx: MutationCtx, which: str, name: str, count: int | float = 1, shard: int | None = None) -> int:
    return await counters[which].add(ctx, name, count, shard=shard)


@app.mutation
async def c_add_many(ctx: MutationCtx, which: str, name: str, times: int) -> list[int]:
    """Several adds in one transaction: the sticky shard sends them all to one shard."""
    return [await counters[which].inc(ctx, name) for _ in range(times)]


@app.mutation
async def c_ops(ctx: MutationCtx, which: str, name: str) -> list[int | float]:
    """inc, inc, dec, subtract(2), add(5) through a for_key view; the counts seen after each step."""
    k = counters[which].for_key(name)
    seen = []
    for step in (k.inc, k.inc, k.dec):
        await step(ctx)
        seen.append(await k.count(ctx))
    await k.subtract(ctx, 2)
    seen.append(await k.count(ctx))
    await k.add(ctx, 5)
    seen.append(await k.count(ctx))
    return seen


@app.query
async def c_count(ctx: QueryCtx, which: str, name: str) -> int | float:
    return await counters[which].count(ctx, name)


@app.query
async def c_estimate(ctx: QueryCtx, which: str, name: str, read_from_shards: int = 1, salt: int = 0) -> int | float:
    """``salt`` only makes calls distinct for the query cache (which would return one cached sample)."""
    return await counters[which].estimate_count(ctx, name, read_from_shards)


@app.mutation
async def c_rebalance(ctx: MutationCtx, which: str, name: str) -> None:
    await counters[which].rebalance(ctx, name)


@app.mutation
async def c_reset(ctx: MutationCtx, which: str, name: str) -> None:
    await counters[which].for_key(name).reset(ctx)


@app.query
async def c_shards(ctx: QueryCtx, which: str, name: str) -> dict[str, int | float]:
    return await ctx.run_query(counters[which].mount.shard_values, name=name)


@app.mutation
async def c_add_then_fail(ctx: MutationCtx, which: str, name: str) -> None:
    await counters[which].inc(ctx, name)
    raise ComponentError({"code": "after_add"})


@app.mutation
async def c_add_shards(ctx: MutationCtx, which: str, name: str, count: int, shards: int) -> int:
    """Call the component directly with an explicit shard count (as another client would)."""
    return await ctx.run_mutation(counters[which].mount.add, name=name, count=count, shards=shards)


@app.mutation
async def add_post(ctx: MutationCtx, author: str, title: str) -> str:
    new_id = await posts_total.insert(ctx, "posts", {"author": author, "title": title})
    await posts_by_author.on_insert(ctx, {"author": author, "title": title})
    return new_id


@app.mutation
async def delete_post(ctx: MutationCtx, post_id: str) -> bool:
    doc = await ctx.db.get(post_id)
    if doc is None:
        return False
    await posts_total.delete(ctx, post_id)
    await posts_by_author.on_delete(ctx, doc)
    return True


@app.mutation
async def move_post(ctx: MutationCtx, post_id: str, author: str) -> None:
    old = await ctx.db.get(post_id)
    await posts_by_author.patch(ctx, post_id, {"author": author})
    new = await ctx.db.get(post_id)
    await posts_total.on_update(ctx, old, new)  # same key ("posts"): no change


@app.query
async def post_counts(ctx: QueryCtx) -> dict[str, int]:
    """The counters next to the truth (a scan of the table)."""
    docs = await ctx.db.query("posts").collect()
    out = {"total": await counters["b"].count(ctx, "posts"), "truth_total": len(docs)}
    for author in sorted({d["author"] for d in docs} | {"ann", "bob"}):
        out[author] = await counters["b"].count(ctx, f"author:{author}")
        out[f"truth_{author}"] = sum(1 for d in docs if d["author"] == author)
    return out


# --- rate limiter ------------------------------------------------------------------------------------------------


@app.mutation
async def rl_limit(ctx: MutationCtx, which: str, name: str, key: str | None = None, count: float = 1,
                   reserve: bool = False, throws: bool = False) -> dict[str, Any]:
    return await limiters[which].limit(ctx, name, key=key, count=count, reserve=reserve, throws=throws)


@app.mutation
async def rl_limit_many(ctx: MutationCtx, which: str, name: str, times: int, key: str | None = None) -> list[bool]:
    return [(await limiters[which].limit(ctx, name, key=key))["ok"] for _ in range(times)]


@app.mutation
async def rl_limit_then_fail(ctx: MutationCtx, which: str, name: str) -> None:
    """Consume, then fail: the consumption rolls back with the caller (fails closed)."""
    await limiters[which].limit(ctx, name)
    raise ComponentError({"code": "after_limit"})


@app.mutation
async def rl_catch(ctx: MutationCtx, which: str, name: str, count: float = 1, reserve: bool = False) -> dict[str, Any]:
    """limit(throws=True), caught here: returns the error's data."""
    from components.rate_limiter import is_rate_limit_error

    try:
        await limiters[which].limit(ctx, name, count=count, reserve=reserve, throws=True)
    except ComponentError as err:
        return {"caught": is_rate_limit_error(err), "data": err.data}
    return {"caught": False, "data": None}


@app.query
async def rl_check(ctx: QueryCtx, which: str, name: str, key: str | None = None, count: float = 1,
                   reserve: bool = False) -> dict[str, Any]:
    return await limiters[which].check(ctx, name, key=key, count=count, reserve=reserve)


@app.query
async def rl_retry_after(ctx: QueryCtx, which: str, name: str, count: float = 1) -> float:
    return await limiters[which].retry_after(ctx, name, count=count)


@app.query
async def rl_value(ctx: QueryCtx, which: str, name: str, key: str | None = None, sample_shards: int = 1
                   ) -> dict[str, Any]:
    return await limiters[which].get_value(ctx, name, key=key, sample_shards=sample_shards)


@app.mutation
async def rl_reset(ctx: MutationCtx, which: str, name: str, key: str | None = None) -> int:
    return await limiters[which].reset(ctx, name, key=key)


@app.mutation
async def rl_fold(ctx: MutationCtx, which: str, name: str, key: str | None = None) -> int:
    return await limiters[which].fold(ctx, name, key=key)


@app.mutation
async def rl_clear_all(ctx: MutationCtx, which: str, page_size: int = 100, reschedule: bool = False
                       ) -> dict[str, Any]:
    return await limiters[which].clear_all(ctx, page_size=page_size, reschedule=reschedule)


@app.mutation
async def rl_inline(ctx: MutationCtx, which: str, name: str, rate: float, period: float, count: float = 1) -> dict:
    """A limit given inline (config=), not configured up front."""
    cfg = {"kind": "token bucket", "rate": rate, "period": period}
    return await limiters[which].limit(ctx, name, count=count, config=cfg)
