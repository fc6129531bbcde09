"""Type-only checks of the authoring API, run through ``mypy --strict`` by ``tests/test_types.py``.

Never executed.  ``assert_type`` lines pin what the decorators and ``ctx.run_*`` give; each line
ending in ``# expect-error: CODE`` must get exactly that mypy error, and no other line any error.
"""

from __future__ import annotations

from typing import Any, assert_type

from components.aggregate import Aggregate, AggregateItem
from components.rate_limiter import RateLimiter, token_bucket
from components.sharded_counter import ShardedCounter
from runtime import (
    ActionCtx,
    App,
    Component,
    Document,
    FunctionRef,
    MountRef,
    MutationCtx,
    Page,
    QueryCtx,
    RunMutationCtx,
    RunQueryCtx,
)

component = Component("typed")
app = App()
counter_mount = app.use("sharded_counter", name="counter")
counter = ShardedCounter(counter_mount)
ranks = Aggregate(app.use("aggregate", name="ranks"))
limits = RateLimiter(app.use("rate_limiter", name="limits"), {"send": token_bucket(rate=1, period=60)})


@component.query
async def count(ctx: QueryCtx, *, name: str, default: int = 0) -> int:
    row = await ctx.db.query("counts").with_index("by_name", lambda q: q.eq("name", name)).unique()
    assert_type(row, Document | None)
    return default if row is None else int(row["value"])


@component.query(internal=True)
async def names(ctx: QueryCtx, prefix: str) -> list[str]:
    page = await ctx.db.query("counts").order("desc").paginate(None, 10)
    assert_type(page, Page)
    assert_type(page.is_done, bool)
    return [str(d["name"]) for d in page.page if str(d["name"]).startswith(prefix)]


@component.mutation
async def add(ctx: MutationCtx, *, name: str, by: int = 1) -> int:
    now = await ctx.run_query(count, name=name)
    assert_type(now, int)
    assert_type(await ctx.run_query(names, prefix="a"), list[str])
    assert_type(await ctx.run_mutation(add, name=name), int)  # a mutation calls mutations
    assert_type(await ctx.scheduler.run_after(0, add, name=name, by=2), str)
    assert_type(await ctx.run_query("a-function-handle", anything=1), Any)
    await ctx.db.insert("counts", {"name": name, "value": now + by})
    return now + by


@component.action
async def report(ctx: ActionCtx, *, name: str) -> str:
    total = await ctx.run_mutation(add, name=name, by=0)  # its own transaction, from an action
    assert_type(total, int)
    assert_type(await ctx.run_action(report, name=name), str)
    assert_type(await ctx.storage.store(b"x"), str)
    return f"{name}: {total}"


any_ref: FunctionRef[..., int] = add  # a decorated function is a FunctionRef of its result
assert_type(counter_mount, MountRef)
assert_type(counter_mount.add, FunctionRef[..., Any])  # a child's function: checked when it runs


async def helper_reads(ctx: QueryCtx) -> int:
    """A helper typed for queries serves mutations too."""
    return await ctx.run_query(count, name="x")


async def wrappers(q: QueryCtx, m: MutationCtx, a: ActionCtx) -> None:
    assert_type(await helper_reads(m), int)
    assert_type(await counter.count(q, "likes"), int | float)
    assert_type(await counter.add(m, "likes"), int)
    assert_type(await counter.add(a, "likes"), int)
    assert_type(await ranks.at(q, 0), AggregateItem | None)
    assert_type(await limits.check(q, "send"), dict[str, Any])
    await ranks.insert(m, key=1, id="x")
    await limits.limit(a, "send")
    reader: RunQueryCtx = a
    writer: RunMutationCtx = m
    assert_type(await reader.run_query(count, name="x"), int)
    assert_type(await writer.run_mutation(add, name="x"), int)


# --- what must not type-check -------------------------------------------------------------------------


async def mistakes(q: QueryCtx, m: MutationCtx, a: ActionCtx) -> None:
    await m.run_mutation(add, nam="x")  # expect-error: call-overload
    await m.run_mutation(add, name=1)  # expect-error: call-overload
    await m.run_mutation(add)  # expect-error: call-overload
    await m.scheduler.run_after(0, add, name="x", by="2")  # expect-error: call-overload
    await q.run_mutation(add, name="x")  # expect-error: attr-defined
    await m.run_action(report, name="x")  # expect-error: attr-defined
    await a.db.get("x")  # expect-error: attr-defined
    await q.db.insert("counts", {})  # expect-error: attr-defined
    await q.storage.store(b"x")  # expect-error: attr-defined
    result = await m.run_query(count, name="x")
    wrong: str = result  # expect-error: assignment
    await counter.add(q, "likes")  # expect-error: arg-type
    print(wrong)


@component.query  # expect-error: arg-type
async def mutation_ctx_in_a_query(ctx: MutationCtx) -> None: ...  # noqa: E704


@app.mutation  # a mutation's ctx is a QueryCtx too
async def query_ctx_is_fine_in_a_mutation(ctx: QueryCtx) -> None: ...  # noqa: E704
