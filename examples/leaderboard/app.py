"""A game leaderboard: rate-limited score submission, a sharded play counter, an aggregate for ranks.

    limits   components.rate_limiter   3 submissions per player per minute (token bucket)
    plays    components.sharded_counter plays per game, sharded so concurrent plays do not conflict
    ranks    components.aggregate       scores ordered by (-score): rank, top N and percentiles in O(log n)

Every submission is one transaction across all three mounts and the app's own
table: if the rate limiter refuses, nothing is written anywhere.
"""

from pydantic import BaseModel

from components.aggregate import Aggregate
from components.rate_limiter import MINUTE, RateLimiter, token_bucket
from components.sharded_counter import ShardedCounter
from runtime import App, MutationCtx, QueryCtx

app = App()
limits = RateLimiter(app.use("rate_limiter", name="limits"),
                     {"submit": token_bucket(rate=3, period=MINUTE, capacity=3)})
plays = ShardedCounter(app.use("sharded_counter", name="plays"), default_shards=8)
ranks = Aggregate(app.use("aggregate", name="ranks"))


@app.table("scores", indexes={"by_player": ["player"]})
class Score(BaseModel):
    player: str
    score: int


@app.mutation
async def submit(ctx: MutationCtx, player: str, score: int) -> dict:
    """Record a score; raises ComponentError {kind: "RateLimited", retry_after} past 3 a minute per player."""
    await limits.limit(ctx, "submit", key=player, throws=True)
    score_id = await ctx.db.insert("scores", {"player": player, "score": score})
    await ranks.insert(ctx, key=[-score, player], id=score_id, sum_value=score)
    await plays.inc(ctx, "all")
    rank = await ranks.index_of(ctx, key=[-score, player], id=score_id)
    return {"id": score_id, "rank": rank + 1}


@app.query
async def top(ctx: QueryCtx, n: int = 3) -> list[dict]:
    """The best ``n`` scores, best first."""
    out = []
    for i in range(min(n, await ranks.count(ctx))):
        item = await ranks.at(ctx, i)
        out.append({"rank": i + 1, "player": item["key"][1], "score": item["sum_value"]})
    return out


@app.query
async def percentile(ctx: QueryCtx, score: int) -> float:
    """The share of recorded scores strictly below ``score``, in percent."""
    total = await ranks.count(ctx)
    if total == 0:
        return 0.0
    # keys are [-score, player] and a list sorts after its prefixes: every lower score sorts at or after [-score + 1]
    below = await ranks.count(ctx, bounds={"lower": {"key": [-score + 1], "inclusive": True}})
    return round(100.0 * below / total, 1)


@app.query
async def stats(ctx: QueryCtx) -> dict:
    total = await ranks.count(ctx)
    return {"plays": await plays.count(ctx, "all"), "scores": total,
            "mean": round(await ranks.sum(ctx) / total, 2) if total else None}
