"""Test app for the workpool component, mounted three times with separate data (``pool_a``,
``pool_b``; ``pool_c`` has its parallelism and log level set on the client).

The jobs record what they do in the app's tables: ``gauges`` count how many jobs of a pool (or of a
key) run at once and the most ever seen, ``events`` list starts and ends in order, ``tries`` count the
attempts of each job, ``completions`` hold every ``on_complete`` call.  A job can wait on a ``gate``
(polled from the action) so a test can hold jobs running.  Every function takes ``which`` ("a", "b" or "c").
"""

import asyncio
from typing import Any

from pydantic import BaseModel

from components.workpool import NonRetryableError, Workpool
from runtime import ActionCtx, App, ComponentError, MutationCtx, QueryCtx

app = App()
pools = {
    "a": Workpool(app.use("components.workpool", name="pool_a")),
    "b": Workpool(app.use("components.workpool", name="pool_b"), retry_actions_by_default=True,
                  default_retry_behavior={"max_attempts": 3, "initial_backoff_ms": 1000, "base": 10}),
    "c": Workpool(app.use("components.workpool", name="pool_c"), max_parallelism=1, log_level="WARNING"),
}


@app.table("gauges", indexes={"by_name": ["name"]})
class Gauge(BaseModel):
    name: str
    active: int
    max_active: int
    starts: int


@app.table("events", indexes={"by_group": ["group"]})
class Event(BaseModel):
    group: str
    job: str
    what: str


@app.table("tries", indexes={"by_job": ["job"]})
class Tries(BaseModel):
    job: str
    n: int
    at: list[float]


@app.table("gates", indexes={"by_name": ["name"]})
class Gate(BaseModel):
    name: str
    open: bool


@app.table("completions", indexes={"by_work": ["work_id"]})
class Completion(BaseModel):
    work_id: str
    context: Any = None
    result: dict[str, Any]


# --- what the jobs call ---------------------------------------------------------------------------------------


async def _gauge(ctx: MutationCtx, name: str, delta: int) -> None:
    g = await ctx.db.query("gauges").with_index("by_name", lambda q: q.eq("name", name)).unique()
    if g is None:
        g = {"name": name, "active": 0, "max_active": 0, "starts": 0}
        g["_id"] = await ctx.db.insert("gauges", dict(g))
    active = g["active"] + delta
    await ctx.db.patch(g["_id"], {"active": active, "max_active": max(g["max_active"], active),
                                  "starts": g["starts"] + (delta > 0)})


@app.mutation(internal=True)
async def enter(ctx: MutationCtx, gauges: list[str], job: str, group: str) -> int:
    """A job starts: count it in its gauges, log it, count its attempt; the attempt number."""
    for name in gauges:
        await _gauge(ctx, name, 1)
    await ctx.db.insert("events", {"group": group, "job": job, "what": "start"})
    t = await ctx.db.query("tries").with_index("by_job", lambda q: q.eq("job", job)).unique()
    if t is None:
        await ctx.db.insert("tries", {"job": job, "n": 1, "at": [ctx.now()]})
        return 1
    await ctx.db.patch(t["_id"], {"n": t["n"] + 1, "at": [*t["at"], ctx.now()]})
    return int(t["n"]) + 1


@app.mutation(internal=True)
async def leave(ctx: MutationCtx, gauges: list[str], job: str, group: str) -> None:
    for name in gauges:
        await _gauge(ctx, name, -1)
    await ctx.db.insert("events", {"group": group, "job": job, "what": "end"})


@app.query(internal=True)
async def gate_open(ctx: QueryCtx, name: str) -> bool:
    g = await ctx.db.query("gates").with_index("by_name", lambda q: q.eq("name", name)).unique()
    return g is not None and g["open"]


@app.action(internal=True)
async def work(ctx: ActionCtx, job: str, gauges: list[str], group: str = "g", gate: str | None = None,
               fail_times: int = 0, non_retryable: bool = False, note: str = "") -> str:
    """The action jobs run: enter, wait for ``gate`` (if any), leave; fail the first ``fail_times`` attempts.

    It returns ``"<job> done"`` followed by ``note`` (a big ``note`` makes big arguments: ``job`` is indexed).
    """
    attempt = await ctx.run_mutation(enter, gauges=gauges, job=job, group=group)
    try:
        while gate is not None and not await ctx.run_query(gate_open, name=gate):
            await asyncio.sleep(0.02)
    finally:
        await ctx.run_mutation(leave, gauges=gauges, job=job, group=group)
    if non_retryable:
        raise NonRetryableError(f"{job} cannot work")
    if attempt <= fail_times:
        raise ComponentError({"attempt": attempt}, f"{job} failed attempt {attempt}")
    return f"{job} done{note}"


@app.mutation(internal=True)
async def write_event(ctx: MutationCtx, job: str, group: str = "m", fail: bool = False) -> str:
    """The mutation jobs run: one write (rolled back when ``fail``)."""
    await ctx.db.insert("events", {"group": group, "job": job, "what": "mutation"})
    if fail:
        raise ComponentError({"job": job}, f"{job} refused")
    return job


@app.action(internal=True)
async def big_result(ctx: ActionCtx, size: int) -> str:
    """A job whose outcome is too big to be stored."""
    return "x" * size


@app.query(internal=True)
async def double(ctx: QueryCtx, x: int) -> int:
    return 2 * x


@app.mutation(internal=True)
async def on_done(ctx: MutationCtx, work_id: str, context: Any, result: dict[str, Any]) -> None:
    await ctx.db.insert("completions", {"work_id": work_id, "context": context, "result": result})


# --- what the tests call --------------------------------------------------------------------------------------

RUNS = {"enqueue": 0}
"""How many times the body of ``enqueue`` ran in this worker, OCC re-runs included."""

FNS = {"work": work, "write_event": write_event, "double": double, "big_result": big_result}


@app.mutation
async def enqueue(ctx: MutationCtx, which: str, kind: str, fn: str, args: list[dict[str, Any]],
                  opts: dict[str, Any] | None = None, batch: bool = False, callback: bool = True) -> list[str]:
    """Enqueue ``args`` (one job each) of app function ``fn`` as ``kind`` on pool ``which``."""
    RUNS["enqueue"] += 1
    pool = pools[which]
    o: dict[str, Any] = dict(opts or {})
    if callback:
        o.setdefault("on_complete", on_done)
    single = {"action": pool.enqueue_action, "mutation": pool.enqueue_mutation, "query": pool.enqueue_query}[kind]
    many = {"action": pool.enqueue_action_batch, "mutation": pool.enqueue_mutation_batch,
            "query": pool.enqueue_query_batch}[kind]
    if batch:
        return await many(ctx, FNS[fn], args, **o)
    return [await single(ctx, FNS[fn], a, **o) for a in args]


@app.mutation
async def enqueue_runs(ctx: MutationCtx) -> int:
    """``RUNS["enqueue"]`` (a mutation: never answered from the query cache)."""
    return RUNS["enqueue"]


@app.mutation
async def enqueue_handle(ctx: MutationCtx, which: str, handle: str, args: dict[str, Any]) -> str:
    """Enqueue a handle string (as another mount's function would come)."""
    return await pools[which].enqueue_mutation(ctx, handle, args, on_complete=on_done, context="by handle")


@app.mutation
async def handle_of(ctx: MutationCtx, fn: str) -> str:
    return await ctx.function_handle(FNS[fn])


@app.mutation
async def set_parallelism(ctx: MutationCtx, which: str, n: int) -> int:
    return await pools[which].set_max_parallelism(ctx, n)


@app.mutation
async def set_log_level(ctx: MutationCtx, which: str, level: str) -> str:
    return await pools[which].set_log_level(ctx, level)


@app.mutation
async def cancel(ctx: MutationCtx, which: str, id: str) -> bool:
    return await pools[which].cancel(ctx, id)


@app.mutation
async def cancel_all(ctx: MutationCtx, which: str, limit: int | None = None) -> int:
    return await pools[which].cancel_all(ctx, limit=limit)


@app.mutation
async def open_gate(ctx: MutationCtx, name: str) -> None:
    g = await ctx.db.query("gates").with_index("by_name", lambda q: q.eq("name", name)).unique()
    if g is None:
        await ctx.db.insert("gates", {"name": name, "open": True})
    else:
        await ctx.db.patch(g["_id"], {"open": True})


@app.query
async def status(ctx: QueryCtx, which: str, id: str) -> dict[str, Any]:
    return await pools[which].status(ctx, id)


@app.query
async def status_batch(ctx: QueryCtx, which: str, ids: list[str]) -> list[dict[str, Any]]:
    return await pools[which].status_batch(ctx, ids)


@app.query
async def config(ctx: QueryCtx, which: str) -> dict[str, Any]:
    return await ctx.run_query(pools[which].mount.get_config)


@app.query
async def stats(ctx: QueryCtx, which: str) -> dict[str, Any]:
    return await pools[which].stats(ctx)


@app.query
async def gauge(ctx: QueryCtx, name: str) -> dict[str, Any] | None:
    g = await ctx.db.query("gauges").with_index("by_name", lambda q: q.eq("name", name)).unique()
    return None if g is None else {k: g[k] for k in ("active", "max_active", "starts")}


@app.query
async def events(ctx: QueryCtx, group: str) -> list[list[str]]:
    docs = await ctx.db.query("events").with_index("by_group", lambda q: q.eq("group", group)).collect()
    return [[d["job"], d["what"]] for d in docs]


@app.query
async def tries(ctx: QueryCtx, job: str) -> dict[str, Any] | None:
    t = await ctx.db.query("tries").with_index("by_job", lambda q: q.eq("job", job)).unique()
    return None if t is None else {"n": t["n"], "at": t["at"]}


@app.query
async def completions(ctx: QueryCtx, work_ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for w in work_ids:
        out += [{"work_id": d["work_id"], "context": d["context"], "result": d["result"]} for d in
                await ctx.db.query("completions").with_index("by_work", lambda q, w=w: q.eq("work_id", w)).collect()]
    return out
