"""A child that schedules inside a sub-transaction, and has a cron of its own."""

from pydantic import BaseModel

from runtime import Component, ComponentError, MutationCtx, QueryCtx

component = Component("helper")


@component.table("ticks")
class Tick(BaseModel):
    at: float


@component.mutation
async def tick(ctx: MutationCtx) -> None:
    await ctx.db.insert("ticks", {"at": ctx.now()})


@component.mutation(internal=True)
async def own_tick(ctx: MutationCtx) -> None:
    await ctx.db.insert("ticks", {"at": -ctx.now()})


@component.mutation
async def schedule_and_fail(ctx: MutationCtx, key: str) -> None:
    await ctx.scheduler.run_after(0, own_tick)
    raise ComponentError({"child": "failed"})


@component.query
async def ticks(ctx: QueryCtx) -> int:
    return len(await ctx.db.query("ticks").collect())


component.crons.interval("own", own_tick, hours=2)
