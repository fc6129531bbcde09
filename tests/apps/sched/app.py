"""Test app for the scheduler and crons: jobs counted in a side table."""

import asyncio

from pydantic import BaseModel

from runtime import App, ComponentError, MutationCtx, QueryCtx

app = App()
helper = app.use("helper", name="helper")


@app.table("hits", indexes={"by_key": ["key"]})
class Hit(BaseModel):
    key: str
    n: int


async def bump(ctx: MutationCtx, key: str) -> int:
    row = await ctx.db.query("hits").with_index("by_key", lambda q: q.eq("key", key)).unique()
    if row is None:
        await ctx.db.insert("hits", {"key": key, "n": 1})
        return 1
    await ctx.db.patch(row["_id"], {"n": row["n"] + 1})
    return row["n"] + 1


@app.mutation(internal=True)
async def record(ctx: MutationCtx, key: str) -> int:
    return await bump(ctx, key)


@app.mutation(internal=True)
async def boom(ctx: MutationCtx, key: str) -> None:
    await bump(ctx, key)
    raise ComponentError({"why": "boom"})


@app.mutation
async def schedule_many(ctx: MutationCtx, n: int, delay: float = 0.0, prefix: str = "k") -> list[str]:
    return [await ctx.scheduler.run_after(delay, record, key=f"{prefix}{i}") for i in range(n)]


@app.mutation
async def schedule_one(ctx: MutationCtx, key: str, delay: float = 0.0, fn: str = "record") -> str:
    target = {"record": record, "boom": boom, "act": act, "slow": slow}[fn]
    return await ctx.scheduler.run_after(delay, target, key=key)


@app.mutation
async def schedule_at(ctx: MutationCtx, key: str, at: float) -> str:
    return await ctx.scheduler.run_at(at, record, key=key)


@app.mutation
async def schedule_then_fail(ctx: MutationCtx, key: str) -> None:
    await ctx.scheduler.run_after(0, record, key=key)
    raise ComponentError({"rolled": "back"})


@app.mutation
async def child_schedules_and_fails(ctx: MutationCtx, key: str) -> str:
    """The child schedules then raises; its job goes with its writes. Ours stays."""
    try:
        await ctx.run_mutation(helper.schedule_and_fail, key=key)
    except ComponentError:
        pass
    return await ctx.scheduler.run_after(0, record, key=key + "-parent")


@app.mutation
async def cancel(ctx: MutationCtx, job: str) -> None:
    await ctx.scheduler.cancel(job)


@app.action
async def cancel_from_action(ctx, job: str) -> None:
    await ctx.scheduler.cancel(job)


@app.query
async def hits(ctx: QueryCtx, key: str) -> int:
    row = await ctx.db.query("hits").with_index("by_key", lambda q: q.eq("key", key)).unique()
    return row["n"] if row else 0


@app.query
async def all_hits(ctx: QueryCtx) -> dict[str, int]:
    return {r["key"]: r["n"] for r in await ctx.db.query("hits").collect()}


@app.query
async def job(ctx: QueryCtx, id: str) -> dict:
    doc = await ctx.db.system.get(id)
    return doc or {}


@app.query
async def jobs_in(ctx: QueryCtx, state: str) -> int:
    return len(await ctx.db.system.query("_scheduled").with_index("by_state", lambda q: q.eq("state", state)).collect())


@app.action(internal=True)
async def act(ctx, key: str) -> None:
    await ctx.run_mutation(record, key=key)
    await ctx.scheduler.run_after(0, record, key=key + "-from-action")


@app.action(internal=True)
async def slow(ctx, key: str) -> None:
    """Marks that it started, then takes long: the daemon is killed meanwhile."""
    await ctx.run_mutation(record, key=key + "-started")
    await asyncio.sleep(3.0)
    await ctx.scheduler.run_after(0, record, key=key + "-after-sleep")
    await ctx.run_mutation(record, key=key + "-finished")


# --- crons -------------------------------------------------------------------------------------


@app.mutation(internal=True)
async def tick(ctx: MutationCtx, key: str) -> None:
    await bump(ctx, key)


@app.table("gauges", indexes={"by_key": ["key"]})
class Gauge(BaseModel):
    key: str
    active: int
    peak: int


@app.mutation(internal=True)
async def enter(ctx: MutationCtx, key: str, delta: int) -> None:
    row = await ctx.db.query("gauges").with_index("by_key", lambda q: q.eq("key", key)).unique()
    if row is None:
        await ctx.db.insert("gauges", {"key": key, "active": delta, "peak": max(delta, 0)})
    else:
        active = row["active"] + delta
        await ctx.db.patch(row["_id"], {"active": active, "peak": max(row["peak"], active)})


@app.query
async def gauge(ctx: QueryCtx, key: str) -> dict:
    row = await ctx.db.query("gauges").with_index("by_key", lambda q: q.eq("key", key)).unique()
    return {"active": row["active"], "peak": row["peak"]} if row else {}


@app.query
async def cron_state(ctx: QueryCtx, name: str) -> dict:
    row = await ctx.db.system.query("_crons").with_index("by_name", lambda q: q.eq("name", name)).unique()
    return {k: v for k, v in row.items() if k in ("next_run", "last_run", "runs", "skipped")} if row else {}


@app.action(internal=True)
async def long_tick(ctx, key: str) -> None:
    await ctx.run_mutation(enter, key=key, delta=1)
    await ctx.run_mutation(record, key=key)
    await asyncio.sleep(2.0)
    await ctx.run_mutation(enter, key=key, delta=-1)


app.crons.interval("every-minute", tick, minutes=1, args={"key": "minutely"})
app.crons.daily("daily", tick, hour_utc=3, minute_utc=30, args={"key": "daily"})
app.crons.cron("five", "*/5 * * * *", tick, args={"key": "five"})
app.crons.interval("overlap", long_tick, hours=6, args={"key": "overlap"})
app.crons.interval("child-tick", helper.tick, hours=1)


@app.action(internal=True)
async def spawner(ctx, key: str) -> None:
    """Schedules one job, waits (gets canceled meanwhile), schedules another."""
    await ctx.scheduler.run_after(3600, record, key=key + "-first")
    await ctx.run_mutation(record, key=key + "-spawned")
    await asyncio.sleep(1.5)
    await ctx.scheduler.run_after(0, record, key=key + "-second")
    await ctx.run_mutation(record, key=key + "-done")


@app.mutation
async def schedule_spawner(ctx: MutationCtx, key: str) -> str:
    return await ctx.scheduler.run_after(0, spawner, key=key)


@app.query
async def children_of(ctx: QueryCtx, id: str) -> list[dict]:
    jobs = await ctx.db.system.query("_scheduled").with_index("by_parent", lambda q: q.eq("parent", id)).collect()
    return [{"key": j["args"].get("key"), "state": j["state"]} for j in jobs]
