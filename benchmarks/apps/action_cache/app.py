"""Bench app for the action_cache suite: one cache over a trivial action, and loops that time it inside an action."""

import time

from components.action_cache import ActionCache
from runtime import ActionCtx, App

app = App()


@app.action(internal=True)
async def square(ctx: ActionCtx, n: int) -> int:
    return n * n


mount = app.use("components.action_cache", name="cache")
caches = {"single_flight": ActionCache(mount, square), "plain": ActionCache(mount, square, name="plain",
                                                                          single_flight=False)}


@app.action
async def noop(ctx: ActionCtx) -> None:
    """The client-side baseline: an action that does nothing."""


@app.action
async def fetch(ctx: ActionCtx, n: int) -> int:
    return await caches["single_flight"].fetch(ctx, {"n": n})


@app.action
async def loop(ctx: ActionCtx, start: int, count: int, same: bool, which: str = "single_flight") -> list[float]:
    """µs of each of ``count`` fetches, timed inside this action: of one key (hits), or of new keys (misses)."""
    out: list[float] = []
    for i in range(count):
        t0 = time.perf_counter()
        await caches[which].fetch(ctx, {"n": start if same else start + i})
        out.append((time.perf_counter() - t0) * 1e6)
    return out


@app.action
async def run_direct(ctx: ActionCtx, start: int, count: int) -> list[float]:
    """µs of each of ``count`` plain ``run_action`` calls of the cached action (no cache): the miss's own part."""
    out: list[float] = []
    for i in range(count):
        t0 = time.perf_counter()
        await ctx.run_action(square, n=start + i)
        out.append((time.perf_counter() - t0) * 1e6)
    return out
