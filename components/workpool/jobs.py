"""The workpool's tables and its engine: the drain, the wrappers that run jobs, completion.

Part of the implementation (:mod:`components.workpool.component` registers the rest); runs only in
the pool's own workers.

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

from typing import Any

from pydantic import BaseModel

from components.workpool.shared import (
    DEFAULT_LOG_LEVEL,
    DEFAULT_PARALLELISM,
    DEFAULT_STATUS_TTL_S,
    LOG_LEVELS,
    NON_RETRYABLE,
)
from runtime import ActionCtx, Component, Document, MutationCtx, QueryCtx

component = Component("workpool")

BY_STATE_TS = "by_state_ts"
BY_KEY = "by_key"
BY_RELEASE = "by_release"
COUNTERS = {"success": "succeeded", "failed": "failed", "canceled": "canceled", "retry": "retries"}
"""An attempt's outcome -> the report counter it adds to."""
SCAN_LIMIT = 256
"""Pending jobs one drain looks at (keyed jobs whose key is busy are skipped, so it may look past ``free``)."""


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


# --- the drain --------------------------------------------------------------------------------------------------


async def _lock_of(ctx: QueryCtx, key: str) -> Document | None:
    return await ctx.db.query("key_locks").with_index(BY_KEY, lambda q: q.eq("key", key)).first()


async def _release(ctx: MutationCtx, work: Document) -> None:
    if work.get("key") is None:
        return
    lock = await _lock_of(ctx, work["key"])
    if lock is not None and lock["work_id"] == work["_id"]:
        await ctx.db.delete(lock["_id"])


async def _start(ctx: MutationCtx, doc: Document, holders: dict[str, str | None], now: float) -> int:
    """Start a pending job unless another job holds its key; 1 if it started."""
    key = doc.get("key")
    if key is not None:
        if key not in holders:
            lock = await _lock_of(ctx, key)
            holders[key] = None if lock is None else lock["work_id"]
        holder = holders[key]
        if holder is not None and holder != doc["_id"]:
            return 0  # a job of the same key runs, or waits to retry: this one waits its turn
        if holder is None:
            await ctx.db.insert("key_locks", {"key": key, "work_id": doc["_id"]})
            holders[key] = doc["_id"]
    if doc["fn_type"] != "action":
        sid = await ctx.scheduler.run_after(0, run_mutation_job, work_id=doc["_id"], attempt=doc["attempts"])
    elif doc.get("payload_id") is None:  # small arguments travel with the wrapper: no read before the run
        sid = await ctx.scheduler.run_after(0, run_action_job, work_id=doc["_id"], attempt=doc["attempts"],
                                            handle=doc["handle"], args=doc.get("args") or {})
    else:
        sid = await ctx.scheduler.run_after(0, run_action_job, work_id=doc["_id"], attempt=doc["attempts"])
    await ctx.db.patch(doc["_id"], {"state": "running", "ts": now, "scheduled_id": sid, "slot": True})
    return 1


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
    started = 0
    holders: dict[str, str | None] = {}
    """Key -> the job holding it (None: free), read once per key."""
    cursor: str | None = None
    scanned = 0
    while started < free and scanned < SCAN_LIMIT:  # pages, so keyed jobs waiting for their key do not
        page = await ctx.db.query("work").with_index(  # hide the jobs behind them (up to SCAN_LIMIT)
            BY_STATE_TS, lambda q: q.eq("state", "pending").lte("ts", now)).paginate(
            cursor, min(SCAN_LIMIT - scanned, 4 * free + 8))
        scanned += len(page.page)
        for doc in page.page:
            if started >= free:
                break
            started += await _start(ctx, doc, holders, now)
        if page.is_done:
            break
        cursor = page.continue_cursor
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
async def run_action_job(ctx: ActionCtx, work_id: str, attempt: int, handle: str | None = None,
                         args: dict[str, Any] | None = None) -> None:
    """Run an action job through its handle, then record the outcome with ``complete``.

    ``handle`` and ``args`` come with the wrapper unless the arguments are out of line (then ``job_spec``
    reads them).
    """
    spec: dict[str, Any] | None = {"handle": handle, "args": args or {}} if handle is not None else \
        await ctx.run_query(job_spec, work_id=work_id, attempt=attempt)
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
