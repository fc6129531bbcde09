"""The workpool's implementation: runs only in its own workers.

The tables and the engine (the drain, the wrappers that run jobs, completion) are
:mod:`components.workpool.jobs`; this module adds what callers use (enqueue, status, cancel, config)
and the upkeep crons (recovery, the report, the status clean-up).
"""

import json
from typing import Any

from components.workpool.jobs import (
    BY_RELEASE,
    BY_STATE_TS,
    SCAN_LIMIT,
    _complete,
    _config,
    _drain,
    _finish,
    _log,
    _state,
    _write_config,
    component,
    kick,
)
from components.workpool.shared import DEFAULT_LOG_LEVEL, LOG_LEVELS, RetryBehavior, check_parallelism
from runtime import Document, MutationCtx, Query, QueryCtx, ValidationError

__all__ = ["component"]

CANCEL_PAGE = 64
"""Jobs one ``cancel_all`` transaction cancels; it schedules itself for the next page."""
GC_PAGE = 500
PAYLOAD_BYTES = 8 * 1024
"""Arguments at least this big (as JSON) are stored in ``payloads``, out of the ``work`` document."""
YEAR_S = 365 * 24 * 3600.0
FN_TYPES = ("action", "mutation", "query")


# --- enqueue ----------------------------------------------------------------------------------------------------


async def _run_time(ctx: MutationCtx, run_at: float | None, run_after: float | None) -> float:
    now = ctx.now()
    if run_at is not None and run_after is not None:
        raise ValidationError("enqueue: give run_at or run_after, not both")
    if run_after is not None:
        if run_after < 0:
            raise ValidationError(f"enqueue: run_after must be >= 0 seconds, not {run_after!r}")
        run_at = now + run_after
    if run_at is None:
        return now
    if run_at < now - YEAR_S:
        await _log(ctx, "ERROR", f"workpool: run_at {run_at!r} is more than a year in the past; running it now")
        return now
    if run_at > now + 4 * YEAR_S:
        await _log(ctx, "ERROR", f"workpool: run_at {run_at!r} is more than 4 years ahead; running it in a year")
        return now + YEAR_S
    return float(run_at)


@component.mutation
async def enqueue(ctx: MutationCtx, fn_type: str, handle: str, args_list: list[dict[str, Any]], name: str = "",
                  retry: RetryBehavior | None = None, on_complete: str | None = None, context: Any = None,
                  run_at: float | None = None, run_after: float | None = None, key: str | None = None,
                  max_parallelism: int | None = None, log_level: str | None = None) -> list[str]:
    """Insert one job per element of ``args_list`` (pending at the run time) and schedule one kick; their Ids.

    It reads nothing of the pool's bookkeeping (only ``config``, and writes it only when
    ``max_parallelism`` differs), so enqueueing does not conflict with running jobs.
    """
    if fn_type not in FN_TYPES:
        raise ValidationError(f"enqueue: fn_type must be one of {', '.join(FN_TYPES)}, not {fn_type!r}")
    if retry is not None and fn_type != "action":
        raise ValidationError(f"enqueue: only actions are retried ({fn_type}s run exactly once)")
    if not handle.startswith("function://"):
        raise ValidationError(f"enqueue: {handle[:40]!r} is not a function handle")
    if on_complete is not None and not on_complete.startswith("function://"):
        raise ValidationError(f"enqueue: on_complete {on_complete[:40]!r} is not a function handle")
    if max_parallelism is not None:
        await _set_parallelism(ctx, max_parallelism)
    if log_level is not None:
        await _set_log_level(ctx, log_level)
    at = await _run_time(ctx, run_at, run_after)
    ids = []
    for args in args_list:
        body: dict[str, Any] = {
            "fn_type": fn_type, "handle": handle, "name": name, "args": args, "state": "pending", "ts": at,
            "key": key, "retry": retry.model_dump() if retry is not None else None,
            "on_complete": {"handle": on_complete, "context": context} if on_complete is not None else None,
        }
        if len(json.dumps(args, default=repr)) >= PAYLOAD_BYTES:
            body["args"], body["payload_id"] = None, await ctx.db.insert("payloads", {"args": args})
        ids.append(await ctx.db.insert("work", body))
    if ids:
        await ctx.scheduler.run_at(at, kick)
    return ids


# --- status -----------------------------------------------------------------------------------------------------


def _in_state(ctx: QueryCtx, state: str) -> Query:
    return ctx.db.query("work").with_index(BY_STATE_TS, lambda q: q.eq("state", state))


def _work(id: str, doc: Document | None) -> Document | None:
    if doc is not None and "fn_type" not in doc:
        raise ValidationError(f"{id!r} is not a work Id of this pool")
    return doc


def _status(work: Document | None) -> dict[str, Any]:
    if work is None:
        return {"state": "finished"}
    if work["state"] == "finished":
        return {"state": "finished", "result": work.get("result")}
    return {"state": work["state"], "previous_attempts": work["attempts"]}


@component.query
async def status(ctx: QueryCtx, id: str) -> dict[str, Any]:
    """``{state: "pending" | "running", previous_attempts}`` or ``{state: "finished", result}``
    (a job whose status outlived ``status_ttl_s`` is a bare ``{state: "finished"}``)."""
    return _status(_work(id, await ctx.db.get(id)))


@component.query
async def status_batch(ctx: QueryCtx, ids: list[str]) -> list[dict[str, Any]]:
    """``status`` of each Id, in order."""
    return [_status(_work(i, await ctx.db.get(i))) for i in ids]


@component.query
async def stats(ctx: QueryCtx) -> dict[str, Any]:
    """``{pending, running, finished, slots_in_use, max_parallelism, scheduled, payloads}``: jobs in each state, slots
    counted as taken, and the pool's own scheduler jobs due and not started (each count up to SCAN_LIMIT * 40)."""
    cap = SCAN_LIMIT * 40
    out: dict[str, Any] = {}
    for s in ("pending", "running", "finished"):
        out[s] = len(await _in_state(ctx, s).take(cap))
    st = await ctx.db.query("state").first()
    out["slots_in_use"] = st["running"] if st is not None else 0
    out["max_parallelism"] = (await _config(ctx))["max_parallelism"]
    jobs = ctx.db.system.query("_scheduled").with_index(
        "by_state", lambda q: q.eq("state", "pending").lte("scheduled_time", ctx.now()))
    out["scheduled"] = len(await jobs.take(cap))
    out["payloads"] = len(await ctx.db.query("payloads").take(cap))
    out["to_release"] = len(await ctx.db.query("work").with_index(BY_RELEASE, lambda q: q.eq("release", True))
                            .take(cap))
    return out


# --- cancel -----------------------------------------------------------------------------------------------------


async def _cancel(ctx: MutationCtx, work: Document) -> bool:
    if work["state"] == "finished" or work.get("canceled"):
        return False
    if work["state"] == "pending":
        await ctx.db.patch(work["_id"], {"canceled": True})
        await _finish(ctx, work, {"kind": "canceled"})
    else:  # running: no further attempts; its outcome is still recorded
        await ctx.db.patch(work["_id"], {"canceled": True})
    return True


@component.mutation
async def cancel(ctx: MutationCtx, id: str, max_parallelism: int | None = None) -> bool:
    """Cancel a job: a pending one finishes as canceled now, a running one gets no further attempts.

    False if it had finished (or was canceled) already.
    """
    if max_parallelism is not None:
        await _set_parallelism(ctx, max_parallelism)
    work = _work(id, await ctx.db.get(id))
    if work is None:
        return False
    done = await _cancel(ctx, work)
    if done:
        await ctx.scheduler.run_after(0, kick)  # counts it; its key may have held others back
    return done


@component.mutation
async def cancel_all(ctx: MutationCtx, limit: int | None = None, max_parallelism: int | None = None) -> int:
    """Cancel every pending and running job, CANCEL_PAGE per transaction (the rest in scheduled
    continuations), at most ``limit`` in all; how many this transaction canceled."""
    if limit is not None and limit < 1:
        raise ValidationError(f"cancel_all: limit must be >= 1 (or None for all), not {limit!r}")
    if max_parallelism is not None:
        await _set_parallelism(ctx, max_parallelism)
    page = CANCEL_PAGE if limit is None else min(limit, CANCEL_PAGE)
    n = 0
    for s in ("running", "pending"):
        if n >= page:
            break
        docs = await _in_state(ctx, s).filter(lambda d: not d.get("canceled")).take(page - n)
        for doc in docs:
            n += int(await _cancel(ctx, doc))
    left = None if limit is None else limit - n
    if n >= page and (left is None or left > 0):
        await ctx.scheduler.run_after(0, cancel_all, limit=left)
    if n:
        await ctx.scheduler.run_after(0, kick)
    return n


# --- config -----------------------------------------------------------------------------------------------------


async def _set_parallelism(ctx: MutationCtx, max_parallelism: int) -> None:
    try:
        check_parallelism(max_parallelism)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    await _write_config(ctx, max_parallelism=max_parallelism)


@component.mutation
async def set_parallelism(ctx: MutationCtx, max_parallelism: int) -> int:
    """Set ``max_parallelism`` (0 pauses: nothing new starts, running jobs finish); start what now fits."""
    await _set_parallelism(ctx, max_parallelism)
    await _drain(ctx)
    return max_parallelism


@component.mutation
async def set_status_ttl(ctx: MutationCtx, seconds: float) -> float:
    """Keep finished jobs' status (and result) for ``seconds`` (>= 0) after they finish."""
    if not 0 <= seconds <= 10 * YEAR_S:
        raise ValidationError(f"status_ttl_s must be from 0 to ten years of seconds, not {seconds!r}")
    await _write_config(ctx, status_ttl_s=float(seconds))
    return float(seconds)


@component.query
async def get_config(ctx: QueryCtx) -> dict[str, Any]:
    """``{max_parallelism, status_ttl_s, log_level}``."""
    cfg = await _config(ctx)
    return {"max_parallelism": cfg["max_parallelism"], "status_ttl_s": cfg["status_ttl_s"],
            "log_level": cfg.get("log_level", DEFAULT_LOG_LEVEL)}


async def _set_log_level(ctx: MutationCtx, level: str) -> None:
    if level not in LOG_LEVELS:
        raise ValidationError(f"log_level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    await _write_config(ctx, log_level=level)


@component.mutation
async def set_log_level(ctx: MutationCtx, level: str) -> str:
    """What the pool logs: DEBUG (every start), INFO (retries), REPORT (the minute's report; the default),
    WARNING (recoveries), ERROR (clamped run times)."""
    await _set_log_level(ctx, level)
    return level


# --- recovery, report, clean-up (crons) -------------------------------------------------------------------------


@component.mutation
async def recover(ctx: MutationCtx) -> int:
    """Fail the attempt of every running job whose scheduled job (its wrapper, or for a mutation or query its
    completion) failed, was canceled, is gone or ended without reporting (its worker was killed, the daemon
    stopped while an action ran, the outcome could not be stored...); retries apply.  How many."""
    docs = await ctx.db.query("work").with_index(BY_STATE_TS, lambda q: q.eq("state", "running")).take(SCAN_LIMIT)
    n = 0
    for work in docs:
        sid = work.get("scheduled_id")
        job = await ctx.db.system.get(sid) if sid is not None else None
        if job is None:
            error = "the pool's scheduled job was not found"
        elif job["state"] == "failed":
            error = f"the job's run died: {job.get('error')}"
        elif job["state"] == "canceled":
            error = "canceled via the scheduler"
        elif job["state"] == "success":  # it ended and committed without moving the job on: a lost report
            error = "the job's run ended without reporting its outcome"
        else:
            continue
        await _log(ctx, "WARNING", f"workpool: recovering {work['name'] or work['_id']} "
                   f"(attempt {work['attempts'] + 1}): {error}")
        await _complete(ctx, work, {"kind": "failed", "error": error, "non_retryable": False})
        n += 1
    if n:
        await _drain(ctx)
    return n


@component.mutation(internal=True)
async def report(ctx: MutationCtx) -> dict[str, Any] | None:
    """Log ``workpool report {...}`` (backlog, running, counters and permanent failure rate since the last
    report) when anything happened, and reset the counters."""
    backlog = len(await ctx.db.query("work").with_index(
        BY_STATE_TS, lambda q: q.eq("state", "pending").lte("ts", ctx.now())).take(SCAN_LIMIT * 40))
    if not backlog and await ctx.db.query("state").first() is None:
        return None  # a pool that never ran a job: nothing to report, and nothing written (a fresh mount stays empty)
    st = await _state(ctx)
    counters = {k: st[k] for k in ("completed", "succeeded", "failed", "retries", "canceled")}
    if not backlog and not st["running"] and not any(counters.values()):
        return None
    rate = st["failed"] / st["completed"] if st["completed"] else 0.0
    line = {"backlog": backlog, "running": st["running"], **counters, "permanent_failure_rate": round(rate, 4),
            "since": st["last_report"]}
    await _log(ctx, "REPORT", "workpool report " + json.dumps(line, sort_keys=True))
    await ctx.db.patch(st["_id"], {**{k: 0 for k in counters}, "last_report": ctx.now()})
    return line


@component.mutation(internal=True)
async def gc(ctx: MutationCtx) -> int:
    """Delete finished jobs older than ``status_ttl_s`` (GC_PAGE at a time, rescheduling while more)."""
    cutoff = ctx.now() - (await _config(ctx))["status_ttl_s"]
    docs = await ctx.db.query("work").with_index(
        BY_STATE_TS, lambda q: q.eq("state", "finished").lt("ts", cutoff)).take(GC_PAGE)
    for d in docs:
        if not d.get("release"):  # one whose slot and outcome the drain has not taken yet stays for now
            await ctx.db.delete(d["_id"])
    if len(docs) == GC_PAGE:
        await ctx.scheduler.run_after(0, gc)
    return len(docs)


component.crons.interval("workpool recovery", recover, minutes=1)
component.crons.interval("workpool report", report, minutes=1)
component.crons.interval("workpool status clean-up", gc, hours=1)
