"""Bench app for the workpool suite: two pools (parallelism 10 and 100), no-op and one-write jobs.

``enqueue`` queues a batch of jobs in one mutation (one transaction, one kick); ``unfinished`` counts
the given jobs not finished yet (what the suite polls); ``stamp`` is a no-op action that returns when it
started (epoch seconds), for the enqueue-to-start latency.
"""

import time
from typing import Any

from pydantic import BaseModel

from components.workpool import Workpool
from runtime import ActionCtx, App, MutationCtx, QueryCtx, ValidationError

app = App()
pools = {10: Workpool(app.use("components.workpool", name="p10"), max_parallelism=10),
         100: Workpool(app.use("components.workpool", name="p100"), max_parallelism=100)}


@app.table("writes")
class Write(BaseModel):
    i: int


@app.action(internal=True)
async def noop(ctx: ActionCtx, i: int) -> int:
    return i


@app.action(internal=True)
async def stamp(ctx: ActionCtx) -> float:
    return time.time()


@app.mutation(internal=True)
async def write_one(ctx: MutationCtx, i: int) -> None:
    await ctx.db.insert("writes", {"i": i})


def _pool(parallelism: int) -> Workpool:
    if parallelism not in pools:
        raise ValidationError(f"parallelism: {parallelism} is not one of the bench pools {sorted(pools)}")
    return pools[parallelism]


@app.mutation
async def enqueue(ctx: MutationCtx, parallelism: int, kind: str, start: int, count: int) -> list[str]:
    """Queue ``count`` no-op actions (``kind="action"``) or one-write mutations (``"mutation"``) at once."""
    args = [{"i": i} for i in range(start, start + count)]
    if kind == "action":
        return await _pool(parallelism).enqueue_action_batch(ctx, noop, args)
    if kind == "mutation":
        return await _pool(parallelism).enqueue_mutation_batch(ctx, write_one, args)
    raise ValidationError(f"kind must be 'action' or 'mutation', not {kind!r}")


@app.mutation
async def enqueue_stamp(ctx: MutationCtx, parallelism: int) -> str:
    """Queue one ``stamp`` action; its work Id."""
    return await _pool(parallelism).enqueue_action(ctx, stamp)


@app.query
async def unfinished(ctx: QueryCtx, parallelism: int, ids: list[str]) -> int:
    return sum(s["state"] != "finished" for s in await _pool(parallelism).status_batch(ctx, ids))


@app.query
async def status(ctx: QueryCtx, parallelism: int, id: str) -> dict[str, Any]:
    return await _pool(parallelism).status(ctx, id)
