"""Durable scheduled jobs and crons (guarantee 8).

A job is a document in the scheduling mount's ``_scheduled`` system table,
inserted by the same transaction that scheduled it: if that transaction (or
the sub-transaction that scheduled) rolls back, the job never existed.
The coordinator keeps an in-memory heap of when each pending job falls due;
the heap is only a hint — every run re-reads the job in its own transaction.

* A **mutation** job runs in one transaction that reads the job (``pending``),
  runs the mutation and sets the job to ``success``: its writes and its state
  commit together, so it runs exactly once.  OCC conflicts are re-run in place;
  a crashed worker re-runs it later (``scheduler_crash_retries``); an error of
  the code marks it ``failed`` in a fresh transaction.
* An **action** job is set ``in_progress`` in a transaction of its own before
  it starts; if the daemon dies meanwhile it is marked ``failed`` at the next
  start and never re-run: at most once.
* A **cron** is a document in ``_crons`` holding its schedule and next run.
  Each run becomes a job; a run that falls due while the previous run's job is
  still pending or in progress is skipped (and logged), so a cron never
  overlaps itself, and after downtime a missed run happens once, not in a burst.

Completed jobs are removed ``scheduler_retention_s`` after they completed.
All times come from the kernel's :class:`~runtime.coordinator.clock.Clock`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from runtime import systables, values
from runtime.coordinator.host import Deployment, Execution, Host, Invocation, Mount, Prepared, SyscallSpec
from runtime.coordinator.services.scheduler.crons import CronRuns, Skip, error_text
from runtime.errors import (
    BulkheadError,
    CallRuleError,
    ConflictError,
    LimitExceeded,
    NotFoundError,
    ValidationError,
    WorkerCrashed,
)
from runtime.limits import SCHEDULER_GC_EVERY_S, SCHEDULER_SCAN_BATCH
from runtime.protocol.syscalls import CancelArgs, ScheduleArgs, SyscallOp
from runtime.transactions.ranges import IndexRange
from runtime.transactions.transaction import Transaction

JOBS = systables.JOBS
DONE_STATES = ("success", "failed", "canceled")


# --- the scheduler ------------------------------------------------------------------------------


class JobScheduler(CronRuns):
    """Runs due jobs and crons of the current deployment; see the module docstring."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.limits = host.limits
        self._heap: list[tuple[float, int, str, str, str]] = []
        """``(due, seq, "job" | "cron", mount, job id | cron name)``."""
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._running: set[str] = set()
        self._cron_due: dict[tuple[str, str], float] = {}
        self._crash_counts: dict[str, int] = {}
        self._loaded: set[str] = set()
        self._sem = asyncio.Semaphore(max(1, self.limits.scheduler_parallelism))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[Any] | None = None
        self._next_gc = 0.0
        self.stats = {"jobs_succeeded": 0, "jobs_failed": 0, "jobs_retried": 0, "cron_runs": 0, "cron_skips": 0,
                      "jobs_removed": 0}

    # --- lifecycle ----------------------------------------------------------------------------

    async def deployed(self, dep: Deployment) -> None:
        """After each deploy switch: recover jobs of newly present mounts, bring crons in line, start the loop."""
        first = self._loop_task is None
        for path in dep.mounts:
            if path not in self._loaded:
                await self._recover(path, fail_in_progress=first)
                self._loaded.add(path)
        self._loaded &= set(dep.mounts)  # an unmounted mount's jobs are queued again if it comes back
        await self._sync_crons(dep)
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._loop())
        self._wake.set()

    async def stop(self) -> None:
        tasks = [t for t in [self._loop_task, *self._tasks] if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def status(self) -> dict[str, Any]:
        return {**self.stats, "queued": len(self._heap), "running": len(self._running)}

    def notify(self, jobs: list[tuple[float, str, str]]) -> None:
        """Jobs committed by a transaction: ``(due, mount, job id)``."""
        for due, mount, job_id in jobs:
            heapq.heappush(self._heap, (due, next(self._seq), "job", mount, job_id))
        self._wake.set()

    # --- scheduling and canceling (inside a transaction) ----------------------------------------

    def schedule(self, txn: Transaction, ex: Execution, caller: Mount, args: dict[str, Any],
                 canceled: bool = False, cron: str | None = None) -> str:
        """Insert a job into ``caller``'s ``_scheduled`` table in ``txn``; return its Id."""
        target, name, fman = self.host.resolve_ref(caller, args.get("ref"))
        kind = fman["kind"]
        if kind == "query":
            raise CallRuleError(f"{name!r} is a query: only mutations and actions can be scheduled")
        at = args.get("at")
        if not isinstance(at, (int, float)) or isinstance(at, bool) or at != at:
            raise ValidationError(f"schedule: the time must be a number of seconds, not {at!r}")
        if abs(at - ex.now) > self.limits.scheduler_max_delay_s:
            raise ValidationError(f"schedule: {at!r} is more than scheduler_max_delay_s="
                                  f"{self.limits.scheduler_max_delay_s:.0f} s away from now")
        call_args = args.get("args") or {}
        if not isinstance(call_args, dict):
            raise ValidationError("schedule: arguments must be an object")
        if len(ex.scheduled) >= self.limits.txn_scheduled_functions:
            raise LimitExceeded("txn_scheduled_functions", len(ex.scheduled) + 1, self.limits.txn_scheduled_functions,
                                "jobs scheduled by one transaction")
        size = len(values.pack(call_args))
        room = self.limits.document_size_bytes - 4096
        if size > room:
            raise LimitExceeded("document_size_bytes", size, room, f"arguments of the scheduled {name!r}")
        parent = ex.job[1] if ex.job else None
        doc = {
            "name": f"{target.path}:{name}" if target.path else name, "mount": target.path, "function": name,
            "kind": kind, "args": call_args, "scheduled_time": float(at),
            "state": "canceled" if canceled else "pending",
            "completed_time": ex.now if canceled else None, "error": None, "cron": cron,
            "parent": parent,
        }
        job_id = txn.insert(caller.path, JOBS, doc)
        if not canceled:
            ex.scheduled.append((float(at), caller.path, job_id))
        return job_id

    def cancel(self, txn: Transaction, mount: str, job_id: Any) -> None:
        """Cancel a pending or running job of ``mount`` in ``txn``; a completed one is an error."""
        if not isinstance(job_id, str):
            raise ValidationError(f"cancel takes a job Id string, not {job_id!r}")
        if txn.table_of_id(mount, job_id).name != JOBS:  # refuses another mount's Id
            raise ValidationError(f"{job_id!r} is not a scheduled job's Id")
        job = txn.get(mount, job_id)
        if job is None:
            raise NotFoundError(f"no scheduled job {job_id!r} (removed after completing?)")
        if job["state"] in DONE_STATES:
            raise ValidationError(f"job {job_id!r} already completed ({job['state']}): only pending or running "
                                  "jobs can be canceled")
        txn.patch(mount, job_id, {"state": "canceled", "completed_time": txn.now})
        # What a canceled job scheduled and that has not run yet goes with it (recursively, up to a batch).
        todo, done = [job_id], 1
        while todo:
            parent = todo.pop()
            for state in ("pending", "in_progress"):
                children, _l, _d = txn.scan(mount, JOBS, "by_parent",
                                            IndexRange.from_ops([["eq", "parent", parent], ["eq", "state", state]]))
                for child in children:
                    done += 1
                    if done > self.limits.cancel_batch_count:
                        raise LimitExceeded("cancel_batch_count", done, self.limits.cancel_batch_count,
                                            "jobs canceled at once (with those the job scheduled)")
                    txn.patch(mount, child["_id"], {"state": "canceled", "completed_time": txn.now})
                    todo.append(child["_id"])

    async def parent_canceled(self, txn: Transaction, job: tuple[str, str] | None) -> bool:
        """Whether the job this action runs for was canceled (what it schedules then is canceled too)."""
        if job is None:
            return False
        doc = txn.get(job[0], job[1])
        return doc is not None and doc["state"] == "canceled"

    # --- the loop ---------------------------------------------------------------------------

    async def _loop(self) -> None:
        clock = self.host.clock
        while not self.host.closing:
            now = clock.now()
            while self._heap and self._heap[0][0] <= now:
                await self._sem.acquire()
                due, _seq, what, mount, key = heapq.heappop(self._heap)
                if what == "job":
                    if key in self._running:
                        self._sem.release()
                        continue
                    self._running.add(key)
                    self._spawn(self._run_job(mount, key))
                elif self._cron_due.get((mount, key)) == due:
                    self._spawn(self._fire_cron(mount, key))
                else:
                    self._sem.release()  # superseded by a newer due time
                now = clock.now()
            if now >= self._next_gc:
                self._next_gc = now + SCHEDULER_GC_EVERY_S
                self._spawn(self._gc(), limited=False)
            timeout = min(self._heap[0][0] - now, 1.0) if self._heap else 1.0
            self._wake.clear()
            clock.changed.clear()
            waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(clock.changed.wait())]
            try:
                await asyncio.wait(waits, timeout=max(timeout, 0.001), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    def _spawn(self, coro: Awaitable[Any], limited: bool = True) -> None:
        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self.host.logs.add("", None, f"scheduler: internal error: {error_text(exc)}")
            finally:
                if limited:
                    self._sem.release()

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _push_job(self, due: float, mount: str, job_id: str) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), "job", mount, job_id))
        self._wake.set()

    # --- running jobs ------------------------------------------------------------------------

    async def _txn(self, body: Callable[[Execution], Awaitable[Any]]) -> Any:
        value, _ts, _ex = await self.host.run_transaction("mutation", body)
        return value

    async def _read(self, mount: str, job_id: str) -> dict[str, Any] | None:
        txn = self.host.read_only()
        try:
            return txn.get(mount, job_id)
        finally:
            txn.close()

    async def _run_job(self, mount: str, job_id: str) -> None:
        try:
            dep = self.host.deployment
            if dep is None or mount not in dep.mounts:
                return  # unmounted: the job waits, read-only, until its mount comes back
            job = await self._read(mount, job_id)
            if job is None or job["state"] != "pending":
                return
            target = dep.mounts.get(job["mount"])
            fman = target.function(job["function"]) if target is not None else None
            if target is None or fman is None or fman["kind"] != job["kind"]:
                await self._finish(mount, job_id, "failed", f"NotFoundError: {job['name']!r} no longer exists "
                                   f"as a {job['kind']} in the deployed app")
                return
            label = f"job:{job_id[-8:]}"
            if job["kind"] == "mutation":
                await self._run_mutation(mount, job_id, target, job, label)
            else:
                await self._run_action(mount, job_id, target, job, label)
        finally:
            self._running.discard(job_id)

    async def _run_mutation(self, mount: str, job_id: str, target: Mount, job: dict[str, Any], label: str) -> None:
        async def body(ex: Execution) -> Any:
            assert ex.txn is not None
            current = ex.txn.get(mount, job_id)  # in the read set: a concurrent cancel conflicts with this run
            if current is None or current["state"] != "pending":
                raise Skip()
            return await self.host.invoke(target, job["function"], "mutation", current["args"], ex, 1)

        def done(ex: Execution, _value: Any) -> None:
            assert ex.txn is not None
            ex.txn.patch(mount, job_id, {"state": "success", "completed_time": ex.now})

        try:
            await self.host.run_transaction("mutation", body, label=label, job=(mount, job_id), before_commit=done)
        except Skip:
            return
        except (WorkerCrashed, ConflictError) as exc:  # system errors: run it again later
            n = self._crash_counts.get(job_id, 0) + 1
            if n > self.limits.scheduler_crash_retries:
                self._crash_counts.pop(job_id, None)
                await self._finish(mount, job_id, "failed", error_text(exc), job, label)
                return
            self._crash_counts[job_id] = n
            self.stats["jobs_retried"] += 1
            self.host.logs.add(mount, job["function"], f"scheduled {job['name']} hit a system error "
                                 f"({error_text(exc)}); retry {n} of {self.limits.scheduler_crash_retries}", label)
            self._push_job(self.host.clock.now() + 0.5 * 2 ** (n - 1), mount, job_id)
            return
        except BulkheadError as exc:
            self._crash_counts.pop(job_id, None)
            await self._finish(mount, job_id, "failed", error_text(exc), job, label)
            return
        self._crash_counts.pop(job_id, None)
        self.stats["jobs_succeeded"] += 1

    async def _run_action(self, mount: str, job_id: str, target: Mount, job: dict[str, Any], label: str) -> None:
        async def claim(ex: Execution) -> dict[str, Any]:
            assert ex.txn is not None
            current = ex.txn.get(mount, job_id)
            if current is None or current["state"] != "pending":
                raise Skip()
            ex.txn.patch(mount, job_id, {"state": "in_progress"})
            return current

        try:
            current = await self._txn(claim)
        except Skip:
            return
        ex = self.host.action_execution(label, (mount, job_id))
        try:
            await self.host.invoke(target, job["function"], "action", current["args"], ex, 1)
        except BulkheadError as exc:
            await self._finish(mount, job_id, "failed", error_text(exc), job, label)
            return
        await self._finish(mount, job_id, "success", None, job, label)

    async def _finish(self, mount: str, job_id: str, state: str, error: str | None,
                      job: dict[str, Any] | None = None, label: str | None = None) -> None:
        """Record a job's outcome in a transaction of its own (a job canceled meanwhile stays canceled)."""
        async def body(ex: Execution) -> None:
            assert ex.txn is not None
            current = ex.txn.get(mount, job_id)
            if current is not None and current["state"] in ("pending", "in_progress"):
                ex.txn.patch(mount, job_id, {"state": state, "completed_time": ex.now, "error": error})

        await self._txn(body)
        if state == "failed":
            self.stats["jobs_failed"] += 1
            name = job["name"] if job else job_id
            self.host.logs.add(mount, job["function"] if job else None, f"scheduled {name} failed: {error}", label)
        else:
            self.stats["jobs_succeeded"] += 1

    # --- recovery and clean-up ------------------------------------------------------------------

    def _scan(self, mount: str, table: str, index: str, ops: list[list[Any]]) -> list[dict[str, Any]]:
        """Every document of a range, read in batches (each batch its own snapshot: budgets stay per batch)."""
        out: list[dict[str, Any]] = []
        after: bytes | None = None
        while True:
            txn = self.host.read_only()
            try:
                if (mount, table) not in txn.catalog.tables:
                    return out
                docs, last, done = txn.scan(mount, table, index, IndexRange.from_ops(ops), "asc",
                                            SCHEDULER_SCAN_BATCH, after)
            finally:
                txn.close()
            out.extend(docs)
            if done or last is None:
                return out
            after = last

    async def _recover(self, mount: str, fail_in_progress: bool) -> None:
        """At start (or re-mount): queue pending jobs; at start, fail actions a previous daemon left in progress."""
        for doc in self._scan(mount, JOBS, "by_state", [["eq", "state", "pending"]]):
            heapq.heappush(self._heap, (doc["scheduled_time"], next(self._seq), "job", mount, doc["_id"]))
        if not fail_in_progress:
            return  # a re-mount: an old worker may still be finishing one of them
        stale = self._scan(mount, JOBS, "by_state", [["eq", "state", "in_progress"]])
        for i in range(0, len(stale), SCHEDULER_SCAN_BATCH):
            batch = [d["_id"] for d in stale[i:i + SCHEDULER_SCAN_BATCH]]

            async def body(ex: Execution, batch: list[str] = batch) -> None:
                assert ex.txn is not None
                for job_id in batch:
                    current = ex.txn.get(mount, job_id)
                    if current is not None and current["state"] == "in_progress":
                        ex.txn.patch(mount, job_id, {
                            "state": "failed", "completed_time": ex.now,
                            "error": "the daemon stopped while this action ran; actions run at most once, so it "
                                     "was not run again"})

            await self._txn(body)
            self.host.logs.add(mount, None, f"scheduler: {len(batch)} action job(s) left in progress by the "
                                 "previous daemon were marked failed (at most once)")

    async def _gc(self) -> None:
        """Remove jobs that completed more than ``scheduler_retention_s`` ago, 1000 per transaction."""
        dep = self.host.deployment
        if dep is None:
            return
        for mount in list(dep.mounts):
            while True:
                async def body(ex: Execution, mount: str = mount) -> int:
                    assert ex.txn is not None
                    cutoff = ex.now - self.limits.scheduler_retention_s
                    docs, _last, _done = ex.txn.scan(
                        mount, JOBS, "by_completed", IndexRange.from_ops([["gte", "completed_time", 0],
                                                                          ["lt", "completed_time", cutoff]]),
                        "asc", SCHEDULER_SCAN_BATCH)
                    for d in docs:
                        ex.txn.delete(mount, d["_id"])
                    return len(docs)

                removed = await self._txn(body)
                self.stats["jobs_removed"] += removed
                if removed < SCHEDULER_SCAN_BATCH:
                    break

    # --- wiring -----------------------------------------------------------------------------------

    def install(self) -> None:
        """Register the ``schedule`` and ``cancel`` syscalls and the scheduler's hooks with the host."""
        denied = "a {kind} cannot schedule or cancel jobs; mutations and actions can"
        host = self.host
        host.register_syscall(SyscallSpec(SyscallOp.SCHEDULE, frozenset({"mutation"}), denied,
                                          inline=self._schedule_syscall, action=self._schedule_from_action))
        host.register_syscall(SyscallSpec(SyscallOp.CANCEL, frozenset({"mutation"}), denied,
                                          inline=self._cancel_syscall, action=self._cancel_from_action))
        host.on_commit(self._committed)
        host.before_switch(self.check_crons)
        host.after_deploy(self._after_deploy)
        host.on_shutdown(self.stop)
        host.register_status("scheduler", self.status)

    def _committed(self, ex: Execution, _prepared: Prepared) -> None:
        if ex.scheduled:
            self.notify(ex.scheduled)

    async def _after_deploy(self, dep: Deployment) -> None:
        try:
            await self.deployed(dep)
        except BulkheadError as exc:  # the new code serves already; jobs and crons catch up at the next deploy
            self.host.logs.add("", None,
                               f"scheduler: could not take up the new deployment's jobs and crons: {exc.message}")

    def _schedule_syscall(self, inv: Invocation, args: ScheduleArgs) -> str:
        assert inv.execution.txn is not None
        return self.schedule(inv.execution.txn, inv.execution, inv.mount, _job_request(args))

    def _cancel_syscall(self, inv: Invocation, args: CancelArgs) -> None:
        assert inv.execution.txn is not None
        self.cancel(inv.execution.txn, inv.mount.path, args.id)

    async def _schedule_from_action(self, inv: Invocation, args: ScheduleArgs) -> str:
        """``ctx.scheduler.run_at`` from an action: a transaction of its own, counted against the whole action."""
        async def body(ex: Execution) -> str:
            assert ex.txn is not None
            canceled = await self.parent_canceled(ex.txn, inv.execution.job)
            ex.job = inv.execution.job  # what an action's job schedules names it as parent
            ex.scheduled = list(inv.execution.scheduled)  # the limit counts the whole action
            job_id = self.schedule(ex.txn, ex, inv.mount, _job_request(args), canceled=canceled)
            inv.execution.scheduled = ex.scheduled
            return job_id

        value, _ts, _ex = await self.host.run_transaction("mutation", body)
        return str(value)

    async def _cancel_from_action(self, inv: Invocation, args: CancelArgs) -> None:
        async def body(ex: Execution) -> None:
            assert ex.txn is not None
            self.cancel(ex.txn, inv.mount.path, args.id)

        await self.host.run_transaction("mutation", body)


def _job_request(args: ScheduleArgs) -> dict[str, Any]:
    """A schedule syscall as :meth:`JobScheduler.schedule` takes it (crons build the same from ``_crons``)."""
    return {"ref": args.ref, "at": args.at, "args": args.args}
