"""The action retrier's implementation: runs only in its own workers.

One table, ``runs``, indexed by ``(state, completed_at)``.  A run is started by
``start`` (a mutation: the run and the job of its first attempt commit
together), each attempt is the internal action ``execute`` scheduled at its
time, and every outcome goes through ``finish`` (a mutation), which either
schedules the next attempt or completes the run and calls ``on_complete`` in
the same transaction: the run's completion and the callback's writes commit
together, so the callback takes effect exactly once.

Crashed attempts: an attempt whose worker (or daemon) died leaves its scheduler
job ``failed`` without ``finish`` having run.  Each unfinished run has a
``heartbeat`` (a scheduled mutation, every jittered ``HEARTBEAT_S``) that reads
its current attempt's job in ``_scheduled`` and turns a dead attempt into a
retryable failure, a job canceled outside the retrier into a canceled run.

A component cron deletes completed runs older than ``RETENTION_S`` every day.
"""


import math
from typing import Any, Literal

import pydantic
from pydantic import BaseModel

from components.action_retrier import shared
from components.action_retrier.shared import HEARTBEAT_S, LOG_LEVELS, RetryOptions
from runtime import (
    ActionCtx,
    BulkheadError,
    Component,
    ConflictError,
    LimitExceeded,
    MutationCtx,
    NotFoundError,
    QueryCtx,
    ValidationError,
    WorkerCrashed,
)

component = Component("action_retrier")

BY_STATE = "by_state"
CLEANUP_BATCH = 500
FINISH_TRIES = 5
"""``execute`` re-sends its outcome this often when the ``finish`` transaction hits a system error."""


@component.table("runs", indexes={BY_STATE: ["state", "completed_at"]})
class Run(BaseModel):
    """One run: the action to retry, its options, where it stands, and (once completed) its result."""

    handle: str | None
    """The action's function handle (None: the component's own ``noop``)."""
    args: dict[str, Any]
    options: dict[str, Any]
    on_complete: str | None = None
    context: Any = None
    state: Literal["in_progress", "completed"]
    attempt: int
    """Attempts scheduled so far (the current one's number); an outcome of an older attempt is dropped."""
    num_failures: int = 0
    job: str | None = None
    """The ``_scheduled`` job of the current attempt."""
    heartbeat: str | None = None
    start_time: float
    next_attempt_at: float | None = None
    last_error: str | None = None
    last_failure_at: float | None = None
    completed_at: float | None = None
    result: dict[str, Any] | None = None


# --- helpers ------------------------------------------------------------------------------------------


def _options(raw: dict[str, Any]) -> RetryOptions:
    try:
        return RetryOptions.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise ValidationError("action retrier options: " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors())) from None


def _level(ctx: QueryCtx | ActionCtx, options: RetryOptions) -> int:
    name = options.log_level or ctx.env.get("ACTION_RETRIER_LOG_LEVEL", "WARN").upper()
    return LOG_LEVELS.index(name) if name in LOG_LEVELS else LOG_LEVELS.index("WARN")


def _log(ctx: QueryCtx | ActionCtx, options: RetryOptions, level: str, msg: str) -> None:
    if LOG_LEVELS.index(level) >= _level(ctx, options):
        # the workers' log level is INFO: a DEBUG line the run's level lets through is written at INFO
        {"DEBUG": ctx.log.info, "INFO": ctx.log.info, "WARN": ctx.log.warning, "ERROR": ctx.log.error}[level](msg)


async def _run(ctx: QueryCtx, run_id: str) -> dict[str, Any] | None:
    """The run ``run_id`` of this mount, None if it is gone; a clear error for an Id that is not a run's."""
    if not isinstance(run_id, str) or not run_id:
        raise ValidationError(f"run_id must be a run's Id string, not {run_id!r}")
    table = await ctx.db.table_of(run_id)  # ValidationError for a malformed Id, IsolationError for another mount's
    if table is None:
        return None  # no such document (any more)
    if table != "runs":
        raise ValidationError(f"{run_id!r} is an Id of table {table!r}, not a run's")
    return await ctx.db.get(run_id)


def _jittered(ctx: MutationCtx, seconds: float) -> float:
    return seconds * (0.5 + ctx.random.random())


def error_text(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, BulkheadError) else str(exc)
    return f"{type(exc).__name__}: {message}"


async def _schedule_heartbeat(ctx: MutationCtx, run_id: str, not_before: float) -> str:
    at = max(not_before, ctx.now()) + _jittered(ctx, HEARTBEAT_S)
    return await ctx.scheduler.run_at(at, heartbeat, run_id=run_id)


async def _complete(ctx: MutationCtx, run: dict[str, Any], result: dict[str, Any]) -> None:
    """Mark the run completed with ``result`` and call its ``on_complete`` in this transaction.

    A callback that raises (its own error) is logged and its writes are discarded; the run completes
    anyway.  A system error (its worker died) is not caught: this whole transaction fails and whoever
    runs it goes again, so the callback never takes effect twice nor is skipped.
    """
    options = _options(run["options"])
    await ctx.db.patch(run["_id"], {"state": "completed", "completed_at": ctx.now(), "result": result,
                                    "next_attempt_at": None})
    level = "INFO" if result["type"] == "success" else "WARN" if result["type"] == "canceled" else "ERROR"
    _log(ctx, options, level, f"action retrier: run {run['_id']} {result['type']}"
         + (f" after {run['attempt']} attempt(s): {result.get('error')}" if result["type"] == "failed" else ""))
    if run["on_complete"] is None:
        return
    try:
        await ctx.run_mutation(run["on_complete"], run_id=run["_id"], result=result, context=run["context"])
    except (WorkerCrashed, ConflictError):
        raise
    except BulkheadError as exc:
        _log(ctx, options, "ERROR", f"action retrier: on_complete of run {run['_id']} failed (its writes were "
             f"discarded, the run stays {result['type']}): {error_text(exc)}")


async def _failed(ctx: MutationCtx, run: dict[str, Any], error: str, data: Any, retryable: bool) -> str:
    """An attempt failed: schedule the next one (``"retrying"``) or complete the run as failed (``"failed"``)."""
    options = _options(run["options"])
    failures = run["num_failures"] + 1
    now = ctx.now()
    if retryable and failures <= options.max_failures:
        wait = shared.delay(options, failures, ctx.random.random())
        at = now + wait
        job = await ctx.scheduler.run_at(at, execute, run_id=run["_id"], attempt=run["attempt"] + 1)
        await ctx.db.patch(run["_id"], {"num_failures": failures, "attempt": run["attempt"] + 1, "job": job,
                                        "next_attempt_at": at, "last_error": error, "last_failure_at": now})
        _log(ctx, options, "WARN", f"action retrier: run {run['_id']} attempt {run['attempt']} failed ({error}); "
             f"retry {failures} of {options.max_failures} in {wait:.3f} s")
        return "retrying"
    await ctx.db.patch(run["_id"], {"num_failures": failures, "last_error": error, "last_failure_at": now})
    run = {**run, "num_failures": failures}
    await _complete(ctx, run, {"type": "failed", "error": error, "data": data, "attempts": run["attempt"],
                               "retryable": retryable})
    return "failed"


def _status(run: dict[str, Any], job: dict[str, Any] | None) -> dict[str, Any]:
    if run["state"] == "completed":
        return {"type": "completed", "result": run["result"], "completed_at": run["completed_at"]}
    return {"type": "in_progress",
            "running": job is not None and job["state"] == "in_progress",
            "attempt": run["attempt"], "num_failures": run["num_failures"],
            "next_attempt_at": run["next_attempt_at"], "last_error": run["last_error"],
            "last_failure_at": run["last_failure_at"], "start_time": run["start_time"]}


# --- functions ------------------------------------------------------------------------------------------


@component.mutation
async def start(ctx: MutationCtx, handle: str | None, args: dict[str, Any], options: dict[str, Any],
                on_complete: str | None = None, context: Any = None, at: float | None = None) -> str:
    """Start a run of the action ``handle`` with ``args`` at time ``at`` (None: now); return the run's Id.

    ``handle`` None runs the component's own ``noop`` (a health check).  ``on_complete`` is a handle of a
    mutation called as ``on_complete(run_id=..., result=..., context=context)`` once the run completes.
    """
    opts = _options(options)
    now = ctx.now()
    if at is not None and not math.isfinite(at):
        raise ValidationError(f"at must be a finite time in seconds since the epoch, not {at!r}")
    when = now if at is None else float(at)
    run_id = await ctx.db.insert("runs", {
        "handle": handle, "args": args, "options": opts.model_dump(), "on_complete": on_complete,
        "context": context, "state": "in_progress", "attempt": 1, "num_failures": 0, "job": None,
        "heartbeat": None, "start_time": when, "next_attempt_at": when, "last_error": None,
        "last_failure_at": None, "completed_at": None, "result": None})
    job = await ctx.scheduler.run_at(when, execute, run_id=run_id, attempt=1)
    beat = await _schedule_heartbeat(ctx, run_id, when)
    await ctx.db.patch(run_id, {"job": job, "heartbeat": beat})
    _log(ctx, opts, "DEBUG", f"action retrier: run {run_id} starts at {when:.3f}")
    return run_id


@component.action
async def noop(ctx: ActionCtx, value: Any = None) -> Any:
    """The built-in target of ``start(handle=None)``: returns ``value``."""
    return value


@component.query(internal=True)
async def load(ctx: QueryCtx, run_id: str) -> dict[str, Any] | None:
    """The run document (for ``execute``)."""
    return await ctx.db.get(run_id)


@component.action(internal=True)
async def execute(ctx: ActionCtx, run_id: str, attempt: int) -> None:
    """One attempt: call the action, then record the outcome with ``finish``."""
    run = await ctx.run_query(load, run_id=run_id)
    if run is None or run["state"] != "in_progress" or run["attempt"] != attempt:
        return
    outcome: dict[str, Any]
    try:
        target: Any = run["handle"] if run["handle"] is not None else noop
        value = await ctx.run_action(target, **run["args"])
        outcome = {"outcome": "success", "value": value}
    except BulkheadError as exc:
        non_retryable = shared.is_non_retryable(exc)
        data = getattr(exc, "data", None)
        if non_retryable and isinstance(data, dict):
            data = data.get("data")
        outcome = {"outcome": "failed", "error": error_text(exc), "data": data, "retryable": not non_retryable}
    for tries in range(1, FINISH_TRIES + 1):
        try:
            await ctx.run_mutation(finish, run_id=run_id, attempt=attempt, **outcome)
            return
        except (LimitExceeded, ValidationError) as exc:
            if outcome["outcome"] != "success":
                raise
            # the return value cannot be stored (too big, not a value): the attempt failed, for good
            outcome = {"outcome": "failed", "error": f"the action's return value could not be stored: "
                       f"{error_text(exc)}", "data": None, "retryable": False}
        except (WorkerCrashed, ConflictError) as exc:
            if tries == FINISH_TRIES:
                raise  # the job fails; the heartbeat retries the attempt
            _log(ctx, _options(run["options"]), "WARN", f"action retrier: recording the outcome of run {run_id} "
                 f"attempt {attempt} hit {error_text(exc)}; again ({tries} of {FINISH_TRIES - 1})")


@component.mutation(internal=True)
async def finish(ctx: MutationCtx, run_id: str, attempt: int, outcome: Literal["success", "failed"],
                 value: Any = None, error: str | None = None, data: Any = None, retryable: bool = True) -> str:
    """Record attempt ``attempt``'s outcome: ``"completed"``, ``"retrying"``, ``"failed"``, or ``"dropped"``
    (the run completed meanwhile, e.g. canceled, or a newer attempt is current)."""
    run = await ctx.db.get(run_id)
    if run is None or run["state"] != "in_progress" or run["attempt"] != attempt:
        if run is not None:
            _log(ctx, _options(run["options"]), "DEBUG", f"action retrier: run {run_id} attempt {attempt} "
                 f"ended ({outcome}) after the run moved on ({run['state']}, attempt {run['attempt']}): dropped")
        return "dropped"
    if outcome == "success":
        await _complete(ctx, run, {"type": "success", "value": value, "attempts": attempt})
        return "completed"
    return await _failed(ctx, run, error or "the action failed", data, retryable)


@component.mutation(internal=True)
async def heartbeat(ctx: MutationCtx, run_id: str) -> str:
    """Check the current attempt's job: alive (check again later), dead (a retryable failure), canceled."""
    run = await ctx.db.get(run_id)
    if run is None or run["state"] != "in_progress":
        return "done"
    job = await ctx.db.system.get(run["job"]) if run["job"] is not None else None
    state = job["state"] if job is not None else "missing"
    verdict = "alive"
    if state == "pending":
        assert job is not None
        beat = await _schedule_heartbeat(ctx, run_id, job["scheduled_time"])
    elif state == "in_progress":
        beat = await _schedule_heartbeat(ctx, run_id, ctx.now())
    elif state == "canceled":
        await _complete(ctx, run, {"type": "canceled", "attempts": run["attempt"]})
        return "canceled"
    else:
        why = {"failed": f"the attempt's job failed without reporting (its worker or the daemon died?): "
                         f"{job['error'] if job else ''}",
               "success": "the attempt's job ended without recording its outcome",
               "missing": "the attempt's job is gone"}[state]
        verdict = await _failed(ctx, run, f"WorkerCrashed: {why}", None, True)
        if verdict == "failed":
            return verdict
        run = await ctx.db.get(run_id)
        assert run is not None
        beat = await _schedule_heartbeat(ctx, run_id, run["next_attempt_at"] or ctx.now())
    await ctx.db.patch(run_id, {"heartbeat": beat})
    return verdict


@component.query
async def status(ctx: QueryCtx, run_id: str) -> dict[str, Any]:
    """``{"type": "in_progress", ...}`` or ``{"type": "completed", "result": ...}``; NotFoundError if it is gone."""
    run = await _run(ctx, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id!r} (cleaned up?)")
    job = await ctx.db.system.get(run["job"]) if run["state"] == "in_progress" and run["job"] else None
    return _status(run, job)


@component.mutation
async def cancel(ctx: MutationCtx, run_id: str) -> bool:
    """Cancel a run that has not completed: True; False if it had completed already (or is gone).

    The attempt's job is canceled (a running action is not stopped, but its result is dropped), the
    run completes as canceled and ``on_complete`` is called with ``{"type": "canceled"}``.
    """
    run = await _run(ctx, run_id)
    if run is None or run["state"] != "in_progress":
        return False
    for field in ("job", "heartbeat"):
        job_id = run[field]
        job = await ctx.db.system.get(job_id) if job_id is not None else None
        if job is not None and job["state"] in ("pending", "in_progress"):
            await ctx.scheduler.cancel(job_id)
    await _complete(ctx, run, {"type": "canceled", "attempts": run["attempt"]})
    return True


@component.mutation
async def cleanup(ctx: MutationCtx, run_id: str) -> bool:
    """Delete a completed run: True; False if it is gone already.  A run in progress is refused (cancel it)."""
    run = await _run(ctx, run_id)
    if run is None:
        return False
    if run["state"] != "completed":
        raise ValidationError(f"run {run_id!r} is still in progress: cancel it before cleaning it up")
    await ctx.db.delete(run_id)
    return True


@component.mutation(internal=True)
async def cleanup_expired(ctx: MutationCtx) -> int:
    """Delete up to CLEANUP_BATCH runs completed more than the retention ago; reschedule itself while more."""
    raw = ctx.env.get("ACTION_RETRIER_RETENTION_S")
    try:
        retention = float(raw) if raw is not None else shared.RETENTION_S
    except ValueError:
        retention = shared.RETENTION_S
        ctx.log.error(f"action retrier: ACTION_RETRIER_RETENTION_S={raw!r} is not a number of seconds; "
                      f"using {retention:.0f}")
    cutoff = ctx.now() - retention
    old = await ctx.db.query("runs").with_index(
        BY_STATE, lambda q: q.eq("state", "completed").lt("completed_at", cutoff)).take(CLEANUP_BATCH)
    for doc in old:
        await ctx.db.delete(doc["_id"])
    if len(old) == CLEANUP_BATCH:
        await ctx.scheduler.run_after(0, cleanup_expired)
    return len(old)


@component.query
async def count_runs(ctx: QueryCtx, state: Literal["in_progress", "completed"] | None = None) -> int:
    """How many runs there are (in ``state``): reads every one of them, for inspection and tests."""
    q = ctx.db.query("runs")
    if state is not None:
        q = q.with_index(BY_STATE, lambda r: r.eq("state", state))
    return len(await q.collect())


component.crons.daily("clean up old runs", cleanup_expired, hour_utc=4)
