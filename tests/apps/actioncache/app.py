"""Test app for the action_cache component: mounted twice, several caches over one counting action.

    cache_a   components.action_cache: every cache below except b_plain
    cache_b   components.action_cache: b_plain, named "plain" like a's, with separate data

``compute`` records each of its runs per ``tag`` (so a test sees how often the action really ran) and,
given a ``gate``, waits while that gate is closed (so a test holds a run in flight).  Every function
takes ``which``: the name of a cache in ``CACHES``.
"""

import asyncio
from typing import Any

from pydantic import BaseModel

from components.action_cache import ActionCache
from runtime import ActionCtx, App, ComponentError, MutationCtx, QueryCtx

app = App()
cache_a = app.use("components.action_cache", name="cache_a")
cache_b = app.use("components.action_cache", name="cache_b")


@app.table("runs", indexes={"by_tag": ["tag"]})
class Run(BaseModel):
    tag: str
    n: int


@app.table("gates", indexes={"by_name": ["name"]})
class Gate(BaseModel):
    name: str
    open: bool


@app.table("events", indexes={"by_name_kind": ["name", "kind"]})
class Event(BaseModel):
    name: str
    kind: str


@app.mutation
async def record_run(ctx: MutationCtx, tag: str) -> int:
    doc = await ctx.db.query("runs").with_index("by_tag", lambda q: q.eq("tag", tag)).unique()
    if doc is None:
        await ctx.db.insert("runs", {"tag": tag, "n": 1})
        return 1
    await ctx.db.patch(doc["_id"], {"n": doc["n"] + 1})
    return int(doc["n"]) + 1


@app.query
async def runs(ctx: QueryCtx, tag: str) -> int:
    doc = await ctx.db.query("runs").with_index("by_tag", lambda q: q.eq("tag", tag)).unique()
    return int(doc["n"]) if doc is not None else 0


@app.mutation
async def set_gate(ctx: MutationCtx, name: str, open: bool) -> None:
    doc = await ctx.db.query("gates").with_index("by_name", lambda q: q.eq("name", name)).unique()
    if doc is None:
        await ctx.db.insert("gates", {"name": name, "open": open})
    else:
        await ctx.db.patch(doc["_id"], {"open": open})


@app.query
async def gate_open(ctx: QueryCtx, name: str) -> bool:
    doc = await ctx.db.query("gates").with_index("by_name", lambda q: q.eq("name", name)).unique()
    return doc is None or bool(doc["open"])


@app.action
async def compute(ctx: ActionCtx, tag: str, x: Any = None, gate: str | None = None, fail: bool = False,
                  fail_after: int | None = None, pad: int = 0, sleep_s: float = 0.0) -> dict[str, Any]:
    """The cached action: ``{"tag", "x", "run"}`` where ``run`` counts this tag's runs.

    It raises with ``fail``, and once it ran more than ``fail_after`` times; ``pad`` adds that many bytes;
    ``sleep_s`` makes it that slow."""
    n = await ctx.run_mutation(record_run, tag=tag)
    if sleep_s:
        await asyncio.sleep(sleep_s)  # stands for a slow API (measurements only)
    while gate is not None and not await ctx.run_query(gate_open, name=gate):
        await asyncio.sleep(0.01)
    if fail or (fail_after is not None and n > fail_after):
        raise ComponentError({"kind": "ComputeFailed", "run": n})
    if pad:
        return {"tag": tag, "x": x, "run": n, "pad": "x" * pad}
    return {"tag": tag, "x": x, "run": n}


@app.mutation
async def note_event(ctx: MutationCtx, name: str, kind: str) -> None:
    await ctx.db.insert("events", {"name": name, "kind": kind})


@app.query
async def events(ctx: QueryCtx, name: str, kind: str) -> int:
    return len(await ctx.db.query("events").with_index(
        "by_name_kind", lambda q: q.eq("name", name).eq("kind", kind)).collect())


async def on_event(ctx: ActionCtx, event: dict[str, Any]) -> None:
    await ctx.run_mutation(note_event, name=event["name"], kind=event["get"])


CACHES = {
    "plain": ActionCache(cache_a, compute, name="plain", ttl=60),
    "noexp": ActionCache(cache_a, compute, name="noexp", log=True),
    "sf": ActionCache(cache_a, compute, name="sf", on_event=on_event),
    "nosf": ActionCache(cache_a, compute, name="nosf", single_flight=False, on_event=on_event),
    "crashy": ActionCache(cache_a, compute, name="crashy", fill_timeout=5, on_event=on_event),
    "swr": ActionCache(cache_a, compute, name="swr", ttl=60, stale_while_revalidate=600, on_event=on_event),
    "lru": ActionCache(cache_a, compute, name="lru", max_entries=3, touch_after=10),
    "purgeable": ActionCache(cache_a, compute, name="purgeable", ttl=60),
    "bulk": ActionCache(cache_a, compute, name="bulk"),
    "b_plain": ActionCache(cache_b, compute, name="plain", ttl=60),
    "default_name": ActionCache(cache_a, compute),
}
MOUNTS = {"a": cache_a, "b": cache_b}


@app.action
async def fetch(ctx: ActionCtx, which: str, args: dict[str, Any], ttl: float | None = None, force: bool = False
                ) -> Any:
    return await CACHES[which].fetch(ctx, args, ttl=ttl, force=force)


@app.mutation
async def remove(ctx: MutationCtx, which: str, args: dict[str, Any]) -> bool:
    return await CACHES[which].remove(ctx, args)


@app.mutation
async def remove_all_for_name(ctx: MutationCtx, which: str, batch_size: int = 100) -> dict[str, Any]:
    return await CACHES[which].remove_all_for_name(ctx, batch_size=batch_size)


@app.mutation
async def remove_all(ctx: MutationCtx, which: str, before: float | None = None) -> dict[str, Any]:
    return await CACHES[which].remove_all(ctx, before=before)


@app.query
async def count(ctx: QueryCtx, which: str) -> int:
    return await CACHES[which].count(ctx)


@app.query
async def lookup(ctx: QueryCtx, which: str, args: dict[str, Any], nonce: int = 0) -> dict[str, Any]:
    return await CACHES[which].get(ctx, args)


@app.mutation
async def prime(ctx: MutationCtx, which: str, args: dict[str, Any], value: Any) -> str:
    return await CACHES[which].set(ctx, args, value)


@app.query
async def peek(ctx: QueryCtx, which: str, args: dict[str, Any], nonce: int = 0) -> dict[str, Any]:
    """The component's ``get`` answer for ``args`` (no fetch, no touch).

    The coordinator's query cache ages by the real clock, not the controllable one: a test that moved
    the clock passes a new ``nonce`` so that the call is not answered from it."""
    cache = CACHES[which]
    result: dict[str, Any] = await ctx.run_query(cache.mount.get, name=cache.name, args=args, ttl=cache.ttl,
                                                 touch_after=cache.touch_after)
    return result


@app.action
async def claim_only(ctx: ActionCtx, which: str, args: dict[str, Any]) -> dict[str, Any]:
    """Claim a key's fill and never fill it: a caller that crashed after its claim."""
    cache = CACHES[which]
    result: dict[str, Any] = await ctx.run_mutation(cache.mount.claim, name=cache.name, args=args,
                                                    ttl=cache.ttl, fill_timeout=cache.fill_timeout)
    return result


@app.action
async def noop(ctx: ActionCtx) -> None:
    """A measurement baseline: an action that does nothing."""


@app.action
async def hit_loop(ctx: ActionCtx, which: str, args: dict[str, Any], n: int) -> list[float]:
    """Seconds each of ``n`` fetches of ``args`` took inside this action (a measurement helper)."""
    import time

    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await CACHES[which].fetch(ctx, args)
        out.append(time.perf_counter() - t0)
    return out


@app.mutation
async def fill_many(ctx: MutationCtx, name: str, count: int) -> None:
    """Store ``count`` entries under ``name`` in one transaction (values ``0..count-1``, no action runs)."""
    for i in range(count):
        await ctx.run_mutation(cache_a.put, name=name, args={"i": i}, value=i)


@app.action
async def fetch_capped(ctx: ActionCtx, name: str, args: dict[str, Any], max_entries: int) -> Any:
    """A fetch through a cache made for this call: ``name`` capped at ``max_entries``."""
    return await ActionCache(cache_a, compute, name=name, max_entries=max_entries).fetch(ctx, args)


@app.query
async def count_of(ctx: QueryCtx, name: str) -> int:
    return int(await ctx.run_query(cache_a.count, name=name))


@app.query
async def peek_name(ctx: QueryCtx, name: str, args: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = await ctx.run_query(cache_a.get, name=name, args=args)
    return result
