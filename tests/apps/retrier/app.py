"""Test app for the action retrier: flaky, fatal and blocking actions, an on_complete that records, two mounts."""

import asyncio
from typing import Any

from pydantic import BaseModel

from components.action_retrier import ActionRetrier, Canceled, NonRetryableError, RunResult, Success
from runtime import ActionCtx, App, ComponentError, MutationCtx, QueryCtx

app = App()
retrier = ActionRetrier(app.use("components.action_retrier", name="retries"), initial_backoff=0.0, max_failures=4)
other = ActionRetrier(app.use("components.action_retrier", name="other", env={
    "ACTION_RETRIER_LOG_LEVEL": "DEBUG", "ACTION_RETRIER_RETENTION_S": str(2 * 24 * 3600)}), initial_backoff=0.0)


@app.table("attempts", indexes={"by_key": ["key"]})
class Attempt(BaseModel):
    key: str
    n: int


@app.table("completions", indexes={"by_run": ["run_id"]})
class Completion(BaseModel):
    run_id: str
    result: dict[str, Any]
    context: Any = None


@app.table("gates", indexes={"by_key": ["key"]})
class Gate(BaseModel):
    key: str


# --- what the actions use ---------------------------------------------------------------------------------


@app.mutation(internal=True)
async def bump(ctx: MutationCtx, key: str) -> int:
    doc = await ctx.db.query("attempts").with_index("by_key", lambda q: q.eq("key", key)).unique()
    if doc is None:
        await ctx.db.insert("attempts", {"key": key, "n": 1})
        return 1
    await ctx.db.patch(doc["_id"], {"n": doc["n"] + 1})
    return int(doc["n"]) + 1


@app.query
async def attempts(ctx: QueryCtx, key: str) -> int:
    doc = await ctx.db.query("attempts").with_index("by_key", lambda q: q.eq("key", key)).unique()
    return int(doc["n"]) if doc else 0


@app.mutation
async def open_gate(ctx: MutationCtx, key: str) -> None:
    await ctx.db.insert("gates", {"key": key})


@app.query
async def gate_open(ctx: QueryCtx, key: str) -> bool:
    return await ctx.db.query("gates").with_index("by_key", lambda q: q.eq("key", key)).first() is not None


# --- the retried actions ----------------------------------------------------------------------------------


ARMED: set[str] = set()
"""Keys whose on_complete spins until its worker is killed, once per worker process (memory is not rolled back)."""


@app.action
async def flaky(ctx: ActionCtx, key: str, fail_times: int = 0, value: Any = None, arm: bool = False) -> Any:
    """Fails (ComponentError) on its first ``fail_times`` attempts, then returns ``value``.

    ``arm``: the on_complete of this key spins (until the CPU limit kills its worker) the first time it runs
    in this worker process; the replacement process runs it normally.
    """
    if arm:
        ARMED.add(key)
    n = await ctx.run_mutation(bump, key=key)
    if n <= fail_times:
        raise ComponentError({"attempt": n}, f"attempt {n} of {key} fails on purpose")
    return value


@app.action
async def fatal(ctx: ActionCtx, key: str) -> None:
    await ctx.run_mutation(bump, key=key)
    raise NonRetryableError("the input is bad for good", data={"key": key})


@app.action
async def blocking(ctx: ActionCtx, key: str, value: Any = None) -> Any:
    """Attempt n waits until the gate ``key`` opens or a newer attempt started; returns ``value``.

    Attempts after the first with ``key`` ending in ``-once`` do not wait.
    """
    n = await ctx.run_mutation(bump, key=key)
    if n > 1 and key.endswith("-once"):
        return value
    while not await ctx.run_query(gate_open, key=key):
        if await ctx.run_query(attempts, key=key) > n:
            return f"superseded attempt {n}"
        await asyncio.sleep(0.02)
    return value


@app.action
async def big(ctx: ActionCtx, key: str) -> str:
    await ctx.run_mutation(bump, key=key)
    return "x" * (2 * 1024 * 1024)


@app.mutation
async def not_an_action(ctx: MutationCtx) -> None:
    return None


# --- on_complete ----------------------------------------------------------------------------------------


@app.mutation(internal=True)
async def done(ctx: MutationCtx, run_id: str, result: dict[str, Any], context: Any) -> None:
    await ctx.db.insert("completions", {"run_id": run_id, "result": result, "context": context})
    if isinstance(context, dict) and context.get("spin") in ARMED:
        ARMED.discard(context["spin"])
        while True:  # the CPU limit kills this worker mid-callback
            pass
    if isinstance(context, dict) and context.get("raise"):
        raise ComponentError({"on_complete": "raised"})


@app.mutation(internal=True)
async def done_typed(ctx: MutationCtx, run_id: str, result: RunResult, context: Any) -> None:
    """An on_complete whose result is validated into the models."""
    kind = "success" if isinstance(result, Success) else "canceled" if isinstance(result, Canceled) else "failed"
    await ctx.db.insert("completions", {"run_id": run_id, "result": {**result.model_dump(), "model": kind},
                                        "context": context})


@app.query
async def completions(ctx: QueryCtx, run_id: str) -> list[dict[str, Any]]:
    docs = await ctx.db.query("completions").with_index("by_run", lambda q: q.eq("run_id", run_id)).collect()
    return [{"result": d["result"], "context": d["context"]} for d in docs]


# --- what the tests call ---------------------------------------------------------------------------------

ACTIONS = {"flaky": flaky, "fatal": fatal, "blocking": blocking, "big": big, "not_an_action": not_an_action}


def _pick(mount: str) -> ActionRetrier:
    return other if mount == "other" else retrier


@app.mutation
async def start(ctx: MutationCtx, action: str, args: dict[str, Any], options: dict[str, Any] | None = None,
                context: Any = None, mount: str = "retries", callback: bool = True,
                after: float | None = None, at: float | None = None, typed: bool = False) -> str:
    r = _pick(mount)
    cb = (done_typed if typed else done) if callback else None
    if after is not None:
        return await r.run_after(ctx, after, ACTIONS[action], args, on_complete=cb, context=context,
                                 **(options or {}))
    if at is not None:
        return await r.run_at(ctx, at, ACTIONS[action], args, on_complete=cb, context=context, **(options or {}))
    return await r.run(ctx, ACTIONS[action], args, on_complete=cb, context=context, **(options or {}))


@app.mutation
async def start_many(ctx: MutationCtx, prefix: str, n: int, fail_times: int) -> list[str]:
    """``n`` runs started by one mutation (they commit together)."""
    return [await retrier.run(ctx, flaky, {"key": f"{prefix}{i}", "fail_times": fail_times, "value": i},
                              on_complete=done, context=i) for i in range(n)]


@app.action
async def start_from_action(ctx: ActionCtx, key: str) -> str:
    return await retrier.run(ctx, flaky, {"key": key, "value": "from an action"}, on_complete=done,
                             context={"from": "action"})


@app.query
async def status(ctx: QueryCtx, run_id: str, mount: str = "retries") -> dict[str, Any]:
    return await _pick(mount).status(ctx, run_id)


@app.mutation
async def cancel(ctx: MutationCtx, run_id: str, mount: str = "retries") -> bool:
    return await _pick(mount).cancel(ctx, run_id)


@app.mutation
async def cleanup(ctx: MutationCtx, run_id: str, mount: str = "retries") -> bool:
    return await _pick(mount).cleanup(ctx, run_id)


@app.mutation
async def start_with_bad_retrier(ctx: MutationCtx, options: dict[str, Any]) -> str:
    bad = ActionRetrier(retrier.mount, **options)
    return await bad.run(ctx, flaky, {"key": "never"})
