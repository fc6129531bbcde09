"""The workpool's implementation: runs only in its own workers.

Tables:

* ``config {max_parallelism, status_ttl_s, log_level}``: one document, the pool's settings;
* ``state {running, completed, succeeded, failed, retries, canceled, last_report}``: one document,
  the slots in use and the counters of the periodic report;
* ``work {fn_type, handle, name, args, attempts, state, ts, key, retry, on_complete, canceled,
  scheduled_id, result, slot, release, outcome}``: one document per job, indexed by ``(state, ts)`` where
  ``ts`` is the run time while ``pending``, the start while ``running`` and the end once ``finished``, and
  by ``release`` (an attempt ended and its slot and outcome wait for the next drain);
* ``key_locks {key, work_id}``: the job holding each serialization key, from its start until it finishes
  (through its retries), indexed by ``key``;
* ``payloads {args}``: arguments of 8 KiB and more, out of line.

The flow: ``enqueue`` only inserts ``work`` documents and schedules a ``kick``; a kick (and a config
change, a recovery) runs :func:`_drain`, which frees the slots of ended attempts (``release``), then
starts at most ``max_parallelism - running`` due jobs by scheduling a wrapper (``run_action_job`` /
``run_mutation_job``) and counting it in ``state.running``.  The wrapper runs the job through its handle
and records the outcome (``_complete``: a retry, or the finish with ``on_complete`` scheduled once),
writing only the job's own documents, and schedules a kick.
"""

import json
from typing import Any

from pydantic import BaseModel

from components.workpool.shared import (
    DEFAULT_LOG_LEVEL,
    DEFAULT_PARALLELISM,
    DEFAULT_STATUS_TTL_S,
    LOG_LEVELS,
    NON_RETRYABLE,
    RetryBehavior,
    check_parallelism,
)
from runtime import ActionCtx, Component, Document, MutationCtx, Query, QueryCtx, ValidationError

component = Component("workpool")

BY_STATE_TS = "by_state_ts"
BY_KEY = "by_key"
BY_RELEASE = "by_release"
COUNTERS = {"success": "succeeded", "failed": "failed", "canceled": "canceled", "retry": "retries"}
"""An attempt's outcome -> the report counter it adds to."""
SCAN_LIMIT = 256
"""Pending jobs one drain looks at (keyed jobs whose key is busy are skipped, so it may look past ``free``)."""
CANCEL_PAGE = 64
"""Jobs one ``cancel_all`` transaction cancels; it schedules itself for the next page."""
GC_PAGE = 500
PAYLOAD_BYTES = 8 * 1024
"""Arguments at least this big (as JSON) are stored in ``payloads``, out of the ``work`` document."""
YEAR_S = 365 * 24 * 3600.0
FN_TYPES = ("action", "mutation", "query")


@component.table("config")
class Config(BaseModel):
    """The pool's settings (one document)."""

    max_parallelism: int
    status_ttl_s: float
    log_level: str = DEFAULT_LOG_LEVEL


@component.table("state")
class State(BaseModel):
    """Slots in use and the counters since the last report (one document)."""

    running: int = 0
    completed: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    canceled: int = 0
    last_report: float = 0.0


@component.table("work", indexes={BY_STATE_TS: ["state", "ts"], BY_RELEASE: ["release"]})
class Work(BaseModel):
    """One job."""

    fn_type: str
    handle: str
    name: str
    args: dict[str, Any] | None = None
    payload_id: str | None = None
    attempts: int = 0
    state: str
    ts: float
    key: str | None = None
    retry: dict[str, Any] | None = None
    on_complete: dict[str, Any] | None = None
    canceled: bool = False
    scheduled_id: str | None = None
    result: dict[str, Any] | None = None
    slot: bool = False
    release: bool = False
    outcome: str | None = None


@component.table("key_locks", indexes={BY_KEY: ["key"]})
class KeyLock(BaseModel):
    """The job that holds a serialization key."""

    key: str
    work_id: str


@component.table("payloads")
class Payload(BaseModel):
    """Arguments stored out of line."""

    args: dict[str, Any]


# --- singletons ------------------------------------------------------------------------------------------------


async def _config(ctx: QueryCtx) -> Document:
    doc = await ctx.db.query("config").first()
    if doc is None:
        return {"max_parallelism": DEFAULT_PARALLELISM, "status_ttl_s": DEFAULT_STATUS_TTL_S,
                "log_level": DEFAULT_LOG_LEVEL}
    return doc


async def _write_config(ctx: MutationCtx, **fields: Any) -> Document:
    doc = await ctx.db.query("config").first()
    if doc is None:
        body = {"max_parallelism": DEFAULT_PARALLELISM, "status_ttl_s": DEFAULT_STATUS_TTL_S,
                "log_level": DEFAULT_LOG_LEVEL, **fields}
        await ctx.db.insert("config", body)
        return body
    changed = {k: v for k, v in fields.items() if doc.get(k) != v}
    if changed:
        await ctx.db.patch(doc["_id"], changed)
    return {**doc, **changed}


async def _log(ctx: QueryCtx, level: str, message: str) -> None:
    """Log ``message`` if the pool's ``log_level`` lets ``level`` through (REPORT logs at INFO)."""
    if LOG_LEVELS.index(level) >= LOG_LEVELS.index((await _config(ctx)).get("log_level", DEFAULT_LOG_LEVEL)):
        log = {"DEBUG": ctx.log.debug, "INFO": ctx.log.info, "REPORT": ctx.log.info, "WARNING": ctx.log.warning,
               "ERROR": ctx.log.error}[level]
        log(message)


async def _state(ctx: MutationCtx) -> Document:
    doc = await ctx.db.query("state").first()
    if doc is None:
        body = State().model_dump()
        return {**body, "_id": await ctx.db.insert("state", body)}
    return doc


async def _bump(ctx: MutationCtx, st: Document, **deltas: int) -> None:
    await ctx.db.patch(st["_id"], {k: st[k] + v for k, v in deltas.items()})
    for k, v in deltas.items():
        st[k] += v


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


# --- the drain --------------------------------------------------------------------------------------------------


async def _lock_of(ctx: QueryCtx, key: str) -> Document | None:
    return await ctx.db.query("key_locks").with_index(BY_KEY, lambda q: q.eq("key", key)).first()


async def _release(ctx: MutationCtx, work: Document) -> None:
    if work.get("key") is None:
        return
    lock = await _lock_of(ctx, work["key"])
    if lock is not None and lock["work_id"] == work["_id"]:
        await ctx.db.delete(lock["_id"])


async def _drain(ctx: MutationCtx) -> int:
    """Start due pending jobs while slots are free (keyed jobs only when their key is free); how many started."""
    cfg = await _config(ctx)
    st = await _state(ctx)
    deltas = dict.fromkeys(("running", "completed", *COUNTERS.values()), 0)
    released = await ctx.db.query("work").with_index(BY_RELEASE, lambda q: q.eq("release", True)).take(SCAN_LIMIT)
    for doc in released:  # attempts that ended since: free their slots, count their outcomes
        deltas["running"] -= bool(doc.get("slot"))
        outcome = doc.get("outcome") or "failed"
        deltas[COUNTERS[outcome]] += 1
        deltas["completed"] += outcome != "retry"
        await ctx.db.patch(doc["_id"], {"release": False, "slot": False, "outcome": None})
    free = cfg["max_parallelism"] - st["running"] - deltas["running"]
    if free <= 0:
        if released:
            await _bump(ctx, st, **deltas)
        return 0
    now = ctx.now()
    docs = await ctx.db.query("work").with_index(
        BY_STATE_TS, lambda q: q.eq("state", "pending").lte("ts", now)).take(min(SCAN_LIMIT, 4 * free + 8))
    started = 0
    holders: dict[str, str | None] = {}
    """Key -> the job holding it (None: free), read once per key."""
    for doc in docs:
        key = doc.get("key")
        if key is not None:
            if key not in holders:
                lock = await _lock_of(ctx, key)
                holders[key] = None if lock is None else lock["work_id"]
            holder = holders[key]
            if holder is not None and holder != doc["_id"]:
                continue  # a job of the same key runs, or waits to retry: this one waits its turn
            if holder is None:
                await ctx.db.insert("key_locks", {"key": key, "work_id": doc["_id"]})
                holders[key] = doc["_id"]
        wrapper = run_action_job if doc["fn_type"] == "action" else run_mutation_job
        sid = await ctx.scheduler.run_after(0, wrapper, work_id=doc["_id"], attempt=doc["attempts"])
        await ctx.db.patch(doc["_id"], {"state": "running", "ts": now, "scheduled_id": sid, "slot": True})
        started += 1
        if started >= free:
            break
    deltas["running"] += started
    if started or released:
        await _bump(ctx, st, **deltas)
    if started:
        await _log(ctx, "DEBUG", f"workpool: started {started} job(s); {st['running']} running")
    return started


@component.mutation(internal=True)
async def kick(ctx: MutationCtx) -> int:
    """Free the slots of ended attempts and start what can start now (scheduled by every enqueue, completion,
    cancel and retry: those only write their own documents, so they never conflict with each other)."""
    return await _drain(ctx)


# --- running a job ----------------------------------------------------------------------------------------------


async def _args_of(ctx: QueryCtx, work: Document) -> dict[str, Any]:
    if work.get("payload_id") is None:
        return dict(work.get("args") or {})
    payload = await ctx.db.get(work["payload_id"])
    return dict(payload["args"]) if payload is not None else {}


@component.query(internal=True)
async def job_spec(ctx: QueryCtx, work_id: str, attempt: int) -> dict[str, Any] | None:
    """What a wrapper needs to run a job, or None if it is not running at that attempt any more."""
    work = await ctx.db.get(work_id)
    if work is None or work["state"] != "running" or work["attempts"] != attempt:
        return None
    return {"handle": work["handle"], "fn_type": work["fn_type"], "args": await _args_of(ctx, work)}


def _failure(exc: BaseException) -> dict[str, Any]:
    data = getattr(exc, "data", None)
    non_retryable = isinstance(data, dict) and data.get("kind") == NON_RETRYABLE
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return {"kind": "failed", "error": str(message), "non_retryable": non_retryable}


@component.action(internal=True)
async def run_action_job(ctx: ActionCtx, work_id: str, attempt: int) -> None:
    """Run an action job through its handle, then record the outcome with ``complete``."""
    spec = await ctx.run_query(job_spec, work_id=work_id, attempt=attempt)
    if spec is None:
        return
    try:
        result: dict[str, Any] = {"kind": "success", "return_value": await ctx.run_action(spec["handle"],
                                                                                            **spec["args"])}
    except Exception as exc:
        result = _failure(exc)
    await ctx.run_mutation(complete, work_id=work_id, attempt=attempt, result=result)


@component.mutation(internal=True)
async def run_mutation_job(ctx: MutationCtx, work_id: str, attempt: int) -> None:
    """Run a mutation or query job (a sub-transaction: its writes go only if it returns) and record its
    outcome in the same transaction (exactly once); only the job's own documents are written, the slot is
    freed by the kick this schedules."""
    work = await ctx.db.get(work_id)
    if work is None or work["state"] != "running" or work["attempts"] != attempt:
        return
    args = await _args_of(ctx, work)
    try:
        if work["fn_type"] == "query":
            value = await ctx.run_query(work["handle"], **args)
        else:
            value = await ctx.run_mutation(work["handle"], **args)
        result: dict[str, Any] = {"kind": "success", "return_value": value}
    except Exception as exc:
        result = _failure(exc)
    await _complete(ctx, work, result)
    await ctx.scheduler.run_after(0, kick)


# --- completion -------------------------------------------------------------------------------------------------


def _backoff_s(ctx: MutationCtx, retry: dict[str, Any], attempts: int) -> float:
    """Attempt ``attempts`` failed: the delay before the next, jittered by U[0.5, 1.5)."""
    delay_ms = retry["initial_backoff_ms"] * retry["base"] ** (attempts - 1)
    return float(delay_ms * (0.5 + ctx.random.random()) / 1000.0)


async def _finish(ctx: MutationCtx, work: Document, result: dict[str, Any]) -> None:
    """Make a job finished with ``result``: release its key, drop its payload, call on_complete once, and
    leave its slot and its count to the next drain (``release``)."""
    public = {k: v for k, v in result.items() if k != "non_retryable"}
    await ctx.db.patch(work["_id"], {"state": "finished", "ts": ctx.now(), "result": public, "args": None,
                                     "payload_id": None, "release": True, "outcome": public["kind"]})
    if work.get("payload_id") is not None and await ctx.db.get(work["payload_id"]) is not None:
        await ctx.db.delete(work["payload_id"])
    await _release(ctx, work)
    cb = work.get("on_complete")
    if cb is not None:
        await ctx.scheduler.run_after(0, cb["handle"], work_id=work["_id"], context=cb["context"], result=public)


async def _complete(ctx: MutationCtx, work: Document, result: dict[str, Any]) -> str:
    """A running job's attempt ended with ``result``: retry or finish it (its slot is freed by the next
    drain); what happened."""
    attempts = work["attempts"] + 1
    await ctx.db.patch(work["_id"], {"attempts": attempts, "scheduled_id": None})
    work["attempts"] = attempts
    retry = work.get("retry")
    if result["kind"] == "failed" and retry is not None and not result.get("non_retryable") \
            and attempts < retry["max_attempts"]:
        if work.get("canceled"):
            await _finish(ctx, work, {"kind": "canceled"})
            return "canceled"
        at = ctx.now() + _backoff_s(ctx, retry, attempts)
        await ctx.db.patch(work["_id"], {"state": "pending", "ts": at, "release": True, "outcome": "retry"})
        await ctx.scheduler.run_at(at, kick)
        await _log(ctx, "INFO", f"workpool: {work['name'] or work['_id']} attempt {attempts} failed "
                   f"({result.get('error')}); retry in {at - ctx.now():.3f} s")
        return "retry"
    await _finish(ctx, work, result)
    return str(result["kind"])


@component.mutation(internal=True)
async def complete(ctx: MutationCtx, work_id: str, attempt: int, result: dict[str, Any]) -> str:
    """Record the outcome of attempt ``attempt`` of an action job (a stale or repeated report is ignored) and
    schedule a kick to free its slot: it writes only the job's own documents."""
    work = await ctx.db.get(work_id)
    if work is None or work["state"] != "running" or work["attempts"] != attempt:
        return "ignored"
    outcome = await _complete(ctx, work, result)
    await ctx.scheduler.run_after(0, kick)
    return outcome


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
    st = await _state(ctx)
    backlog = len(await ctx.db.query("work").with_index(
        BY_STATE_TS, lambda q: q.eq("state", "pending").lte("ts", ctx.now())).take(SCAN_LIMIT * 40))
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
