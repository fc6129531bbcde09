"""Invocations: one function running on a worker, reached by a capability token.

Each invocation gets a fresh token; the worker presents it with every syscall,
and the token is checked against the socket the syscall arrived on (the
worker's identity) and revoked when the invocation ends.  While an invocation
waits for one of its nested calls it is *in a call*: its worker may serve
other invocations (re-entrant chains do not deadlock), but that invocation may
not issue database syscalls or a second nested call until the first returns,
and the wait does not count against its time limits.

Time limits (issue 12): a query or mutation is charged the CPU time of its
worker's process while it is active, read by the coordinator from ``/proc``
(:mod:`~runtime.coordinator.kernel.cputime`), so waiting for the coordinator's
answers or for a CPU on a loaded machine costs it nothing, and a worker cannot
under-report what it used.  Queries and mutations cannot sleep (the sandbox
refuses it), so one that stops using CPU without waiting for a reply is a hang:
a wall-clock backstop (``query_mutation_wall_timeout_s``, generous) ends it.
Actions may sleep and wait for the network: their limit is wall time minus
nested calls.  On overrun the worker is killed (SIGKILL of its process group)
and restarted, and the caller gets ``LimitExceeded`` naming the limit.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import weakref
from collections.abc import Callable
from typing import Any, cast

from runtime import values
from runtime.coordinator.clock import Clock
from runtime.coordinator.kernel.cputime import CpuMeter
from runtime.coordinator.kernel.feed import CommitFeed
from runtime.coordinator.kernel.logs import LogStore
from runtime.coordinator.kernel.mounts import Mount
from runtime.coordinator.kernel.runner import Execution
from runtime.errors import BulkheadError, CallRuleError, LimitExceeded, WorkerCrashed, from_wire
from runtime.limits import CPU_READING_REUSE_S as _REUSE_S
from runtime.limits import TIME_LIMIT_CHECK_MIN_S, TIME_LIMIT_CHECKS, Limits
from runtime.protocol.messages import Invoke, Result
from sandbox.supervisor import WorkerHandle


class Invocation:
    """One invocation in flight on a worker, with the clocks its time limit reads.

    Two clocks run while the invocation is *active* (not waiting for a nested call):

    * its CPU clock (queries and mutations): the CPU time its worker's process used meanwhile, read from
      ``/proc`` (:mod:`~runtime.coordinator.kernel.cputime`).  Concurrent invocations of one worker are
      each charged all of the worker's CPU while they are active: an upper bound, never an undercount,
      whatever the worker does (its threads included);
    * its wall clock: wall time minus the time spent in nested calls.
    """

    __slots__ = ("token", "mount", "function", "kind", "execution", "depth", "worker", "_in_call", "paused",
                 "paused_since", "started", "failed_write", "_meter", "_pid", "cpu_start", "cpu_paused",
                 "_cpu_paused_since", "cache_since")

    def __init__(self, token: str, mount: Mount, function: str, kind: str, execution: Execution, depth: int,
                 worker: WorkerHandle, meter: CpuMeter | None = None) -> None:
        self.token = token
        self.mount = mount
        self.function = function
        self.kind = kind
        self.execution = execution
        self.depth = depth
        self.worker = worker
        self._in_call = False
        self.paused = 0.0
        """Wall seconds spent in nested calls that returned (kept by the caller of ``in_call``)."""
        self.paused_since = 0.0
        self.started = time.monotonic()
        self.failed_write: BulkheadError | None = None
        """A buffered write of this invocation failed: every later syscall, and its result, fail with it."""
        self._meter = meter
        self._pid = worker.pid
        self.cpu_start: float | None = None
        """The worker's CPU seconds when the invocation started (``None``: no CPU clock, wall time counts)."""
        if meter is not None and kind != "action":
            # a reading a few ms old is at most the true value: it can only overcharge this invocation
            self.cpu_start = meter.read(self._pid, _REUSE_S)
        self.cpu_paused = 0.0
        """The worker's CPU seconds during nested calls that returned (charged to the callees, not here)."""
        self._cpu_paused_since = 0.0
        self.cache_since: int | None = None
        """Reads at snapshots from this timestamp on may be kept by the worker's cache (None: none may)."""

    def note_cached_reads(self, reads: list[tuple[int, bytes, bytes, int, int]]) -> None:
        """Reads the worker answered from its cache: into the transaction's read set (refused outside one)."""
        txn = self.execution.txn
        if txn is None:
            raise CallRuleError("an action has no transaction: it cannot report cached reads")
        txn.note_cached_reads(self.mount.path, reads)

    @property
    def in_call(self) -> bool:
        """Waiting for a nested call: its clocks stand still (set by the call rules around each nested call)."""
        return self._in_call

    @in_call.setter
    def in_call(self, value: bool) -> None:
        if value == self._in_call:
            return
        self._in_call = value
        if self.cpu_start is None or self._meter is None:
            return
        # entering a call: a fresh reading (an old one would exclude CPU this invocation used);
        # leaving it: a recent one may do (it can only charge this invocation more)
        cpu = self._meter.read(self._pid, 0.0 if value else _REUSE_S)
        if cpu is None:
            self.cpu_start = None  # the process cannot be read any more: fall back to wall time
        elif value:
            self._cpu_paused_since = cpu
        else:
            self.cpu_paused += max(cpu - self._cpu_paused_since, 0.0)

    def wall_time(self) -> float:
        """Wall time so far, minus the time spent waiting for nested calls."""
        now = time.monotonic()
        waiting = self.paused + (now - self.paused_since if self._in_call else 0.0)
        return now - self.started - waiting

    def cpu_time(self) -> float | None:
        """The worker's CPU seconds while this invocation was active (``None``: not measured, use wall time)."""
        if self.cpu_start is None or self._meter is None:
            return None
        now = self._meter.read(self._pid)
        if now is None:
            return None
        paused = self.cpu_paused + (now - self._cpu_paused_since if self._in_call else 0.0)
        return max(now - self.cpu_start - paused, 0.0)


WriteApplier = Callable[[Invocation, list[tuple[str, dict[str, Any]]]], None]
"""Applies the writes a worker buffered and shipped with a frame (raises the first failure)."""


class Invoker:
    """Sends invocations to workers, waits for their results within the time limits, keeps the token table."""

    def __init__(self, limits: Limits, clock: Clock, logs: LogStore) -> None:
        self.limits = limits
        self.clock = clock
        self.logs = logs
        self.tokens: dict[str, Invocation] = {}
        self.cpu = CpuMeter()
        """Reads the workers' CPU clocks (the time limit of queries and mutations)."""
        self.apply_writes: WriteApplier | None = None
        """Set by the syscall router: a result's buffered writes are applied before the result counts."""
        self.feed: CommitFeed | None = None
        self.tables_of: Callable[[str], dict[str, int]] | None = None
        """Set by the kernel: a mount's user tables by number, told to each worker once (it mints Ids)."""
        self._told_tables: weakref.WeakSet[WorkerHandle] = weakref.WeakSet()
        self.stats: dict[str, int] = {"cached_reads": 0}
        """Set by the kernel: the commit feed that keeps workers' read caches exact."""

    async def invoke(self, mount: Mount, name: str, kind: str, args: dict[str, Any], ex: Execution,
                     depth: int) -> Any:
        """Run one function on its mount's worker and wait for its result (within its time limits)."""
        deadline = time.monotonic() + self.limits.worker_wait_s
        while True:
            result = await self._invoke_once(mount, name, kind, args, ex, depth, deadline)
            if result is not None:
                break
            # the worker died before the invoke left: nothing ran, so wait for its replacement and go again
        for line in result.logs:
            self.logs.add(mount.path, name, line, ex.label)
        if result.dropped:
            self.logs.add(mount.path, name, f"[{result.dropped} log lines dropped: limit log_lines_count]", ex.label)
        if not result.ok:
            raise from_wire(result.error or {})
        values.check_limits(result.value, self.limits, f"return value of {name!r}")  # the worker's check is its own
        return result.value

    async def _invoke_once(self, mount: Mount, name: str, kind: str, args: dict[str, Any], ex: Execution,
                           depth: int, deadline: float) -> Result | None:
        """One attempt: its result, or None if the worker was found gone before the invoke was sent."""
        while not mount.worker.accepts_calls or not mount.ready.is_set():
            if time.monotonic() > deadline:
                raise WorkerCrashed(f"the worker of mount {mount.label!r} is not running and did not restart in "
                                    f"worker_wait_s={self.limits.worker_wait_s:.0f} s")
            await asyncio.sleep(0.02)
        worker = mount.worker
        token = secrets.token_urlsafe(18)
        inv = Invocation(token, mount, name, kind, ex, depth, worker, self.cpu)
        rid = worker.next_id()
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        worker.results[rid] = (fut, name)
        self.tokens[token] = inv
        tables = None
        if worker not in self._told_tables and self.tables_of is not None:
            tables = self.tables_of(mount.path)
            self._told_tables.add(worker)
        cache_ts: int | None = None
        commits: list[tuple[int, list[tuple[int, list[bytes]]]]] = []
        lost = 0
        if self.feed is not None:
            inv.cache_since, commits, lost = self.feed.take(worker)
            txn = ex.txn
            if txn is not None and not txn.has_writes():  # after a write, reads must see it: ask
                cache_ts = txn.ts
        try:
            try:
                await worker.send(Invoke(request_id=rid, token=token, function=name, kind=cast(Any, kind),
                                         args=args, now=ex.now, seed=ex.rng.getrandbits(63), ts=cache_ts,
                                         commits=commits, lost_through=lost, tables=tables))
            except WorkerCrashed as exc:
                if getattr(exc, "unsent", False) and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                    return None
                raise
            try:
                result = await self._await_result(inv, fut)
            except WorkerCrashed:
                if kind == "query" and worker.killed_for not in (None, token) and time.monotonic() < deadline:
                    # killed for another call's time limit: a query has no effect, so it runs again on the
                    # replacement (its first reads stay in the read set: more conflicts at worst, never fewer)
                    return None
                raise
            if result.reads:
                self.stats["cached_reads"] += len(result.reads)
                try:
                    inv.note_cached_reads(result.reads)
                except BulkheadError as exc:
                    inv.failed_write = inv.failed_write or exc
            if result.ok and result.writes and inv.failed_write is None and self.apply_writes is not None:
                try:
                    self.apply_writes(inv, result.writes)
                except BulkheadError as exc:
                    inv.failed_write = exc
            if result.ok and inv.failed_write is not None:  # even if the code caught the error: its writes are partial
                result = Result(request_id=result.request_id, ok=False, error=inv.failed_write.to_wire(),
                                logs=result.logs, dropped=result.dropped)
        finally:
            self.tokens.pop(token, None)
            worker.results.pop(rid, None)
        return result

    async def _await_result(self, inv: Invocation, fut: asyncio.Future[Result]) -> Result:
        """Wait for the result; a timer (not a ``wait_for`` per call) enforces the time limits.

        A query or mutation may use ``query_mutation_timeout_s`` of CPU (its worker's, while it is active)
        and, as a backstop for one that blocks without using CPU (sleeping past the sandbox, a deadlock),
        ``query_mutation_wall_timeout_s`` of wall time.  An action may run ``action_timeout_s`` of wall
        time: it may sleep, and its sleeping counts.  Time spent waiting for a nested call counts in none.
        Where ``/proc`` cannot be read the CPU limit applies to wall time (the rule before issue 12).
        """
        if inv.kind == "action":
            limit_name, timeout = "action_timeout_s", self.limits.action_timeout_s
        else:
            limit_name, timeout = "query_mutation_timeout_s", self.limits.query_mutation_timeout_s
        backstop = self.limits.query_mutation_wall_timeout_s
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def overrun(limit: str, used: str, maximum: str, why: str) -> None:
            if not inv.worker.death_reason:
                inv.worker.killed_for = inv.token
            inv.worker.kill(f"{inv.function!r} ran past {limit}={maximum} ({why})")
            where = f"{inv.function!r} of mount {inv.mount.label!r}, {why}; its worker was killed"
            fut.set_exception(LimitExceeded(limit, used, maximum, where))

        def check() -> None:
            nonlocal timer
            if fut.done():
                return
            remaining = timeout
            if not inv.in_call:  # in a call its clocks stand still (the callee has a timer of its own)
                wall = inv.wall_time()
                cpu = inv.cpu_time() if inv.kind != "action" else None
                if cpu is None and inv.kind != "action" and (inv.worker.dead or inv.worker.death_reason):
                    pass  # its worker is gone or going (no /proc to read): the call fails as WorkerCrashed
                elif cpu is None:
                    if wall >= timeout:
                        why = "wall time" if inv.kind == "action" else "wall time: no CPU clock here"
                        overrun(limit_name, f"{wall:.2f}s", f"{timeout}s", why)
                        return
                    remaining = timeout - wall
                elif cpu >= timeout:
                    overrun(limit_name, f"{cpu:.2f}s", f"{timeout}s", "CPU time of its worker while it ran")
                    return
                elif wall >= backstop:
                    overrun("query_mutation_wall_timeout_s", f"{wall:.2f}s", f"{backstop}s",
                            f"wall time, blocked without using CPU: {cpu:.2f}s of its "
                            f"{limit_name}={timeout}s used")
                    return
                else:
                    remaining = min(timeout - cpu, backstop - wall)
            # the CPU clock may run faster than the wall clock (threads): look again after a fraction at most
            timer = loop.call_later(max(min(remaining, timeout / TIME_LIMIT_CHECKS), TIME_LIMIT_CHECK_MIN_S), check)

        timer = loop.call_later(max(timeout / TIME_LIMIT_CHECKS, TIME_LIMIT_CHECK_MIN_S), check)
        try:
            return await fut
        finally:
            if timer is not None:
                timer.cancel()

    async def system_call(self, worker: WorkerHandle, function: str, args: dict[str, Any]) -> Any:
        """A call of the coordinator's own to a worker (``kind="system"``, no token, no transaction)."""
        rid = worker.next_id()
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        worker.results[rid] = (fut, function)
        await worker.send(Invoke(request_id=rid, token="system", function=function, kind="system", args=args,
                                 now=self.clock.now(), seed=0))
        result = await asyncio.wait_for(fut, self.limits.system_call_timeout_s)
        if not result.ok:
            raise from_wire(result.error or {})
        return result.value
