"""Invocations: one function running on a worker, reached by a capability token.

Each invocation gets a fresh token; the worker presents it with every syscall,
and the token is checked against the socket the syscall arrived on (the
worker's identity) and revoked when the invocation ends.  While an invocation
waits for one of its nested calls it is *in a call*: its worker may serve
other invocations (re-entrant chains do not deadlock), but that invocation may
not issue database syscalls or a second nested call until the first returns,
and the wait does not count against its deadline.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import weakref
from collections.abc import Callable
from typing import Any, cast

from runtime.coordinator.clock import Clock
from runtime.coordinator.kernel.feed import CommitFeed
from runtime.coordinator.kernel.logs import LogStore
from runtime.coordinator.kernel.mounts import Mount
from runtime.coordinator.kernel.runner import Execution
from runtime.errors import BulkheadError, CallRuleError, LimitExceeded, WorkerCrashed, from_wire
from runtime.limits import Limits
from runtime.protocol.messages import Invoke, Result
from sandbox.supervisor import WorkerHandle


class Invocation:
    """One invocation in flight on a worker."""

    __slots__ = ("token", "mount", "function", "kind", "execution", "depth", "worker", "in_call", "paused",
                 "paused_since", "started", "failed_write", "cache_since")

    def __init__(self, token: str, mount: Mount, function: str, kind: str, execution: Execution, depth: int,
                 worker: WorkerHandle) -> None:
        self.token = token
        self.mount = mount
        self.function = function
        self.kind = kind
        self.execution = execution
        self.depth = depth
        self.worker = worker
        self.in_call = False
        self.paused = 0.0
        self.paused_since = 0.0
        self.started = time.monotonic()
        self.failed_write: BulkheadError | None = None
        """A buffered write of this invocation failed: every later syscall, and its result, fail with it."""
        self.cache_since: int | None = None
        """Reads at snapshots from this timestamp on may be kept by the worker's cache (None: none may)."""

    def note_cached_reads(self, reads: list[tuple[int, bytes, bytes, int, int]]) -> None:
        """Reads the worker answered from its cache: into the transaction's read set (refused outside one)."""
        txn = self.execution.txn
        if txn is None:
            raise CallRuleError("an action has no transaction: it cannot report cached reads")
        txn.note_cached_reads(self.mount.path, reads)

    def user_time(self) -> float:
        """Wall time so far, minus the time spent waiting for nested calls."""
        now = time.monotonic()
        waiting = self.paused + (now - self.paused_since if self.in_call else 0.0)
        return now - self.started - waiting


WriteApplier = Callable[[Invocation, list[tuple[str, dict[str, Any]]]], None]
"""Applies the writes a worker buffered and shipped with a frame (raises the first failure)."""


class Invoker:
    """Sends invocations to workers, waits for their results with the user-code deadline, keeps the token table."""

    def __init__(self, limits: Limits, clock: Clock, logs: LogStore) -> None:
        self.limits = limits
        self.clock = clock
        self.logs = logs
        self.tokens: dict[str, Invocation] = {}
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
        """Run one function on its mount's worker and wait for its result (with the user-code deadline)."""
        deadline = time.monotonic() + self.limits.worker_wait_s
        while not mount.worker.usable or not mount.ready.is_set():
            if time.monotonic() > deadline:
                raise WorkerCrashed(f"the worker of mount {mount.label!r} is not running and did not restart in "
                                    f"worker_wait_s={self.limits.worker_wait_s:.0f} s")
            await asyncio.sleep(0.02)
        worker = mount.worker
        token = secrets.token_urlsafe(18)
        inv = Invocation(token, mount, name, kind, ex, depth, worker)
        rid = worker.next_id()
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        worker.results[rid] = (fut, name)
        self.tokens[token] = inv
        tables = None
        if worker not in self._told_tables and self.tables_of is not None:
            tables = self.tables_of(mount.path)
            self._told_tables.add(worker)
        cache_ts, commits, lost = None, [], 0
        if self.feed is not None:
            inv.cache_since, commits, lost = self.feed.take(worker)
            txn = ex.txn
            if txn is not None and not txn.has_writes():  # after a write, reads must see it: ask
                cache_ts = txn.ts
        try:
            await worker.send(Invoke(request_id=rid, token=token, function=name, kind=cast(Any, kind), args=args,
                                     now=ex.now, seed=ex.rng.getrandbits(63), ts=cache_ts, commits=commits,
                                     lost_through=lost, tables=tables))
            result = await self._await_result(inv, fut)
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
        for line in result.logs:
            self.logs.add(mount.path, name, line, ex.label)
        if result.dropped:
            self.logs.add(mount.path, name, f"[{result.dropped} log lines dropped: limit log_lines_count]", ex.label)
        if not result.ok:
            raise from_wire(result.error or {})
        return result.value

    async def _await_result(self, inv: Invocation, fut: asyncio.Future[Result]) -> Result:
        """Wait for the result; a timer (not a ``wait_for`` per call) enforces the user-code deadline."""
        limit_name = "action_timeout_s" if inv.kind == "action" else "query_mutation_timeout_s"
        timeout: float = getattr(self.limits, limit_name)
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def check() -> None:
            nonlocal timer
            if fut.done():
                return
            remaining = timeout - inv.user_time()
            if remaining <= 0 and not inv.in_call:
                inv.worker.kill(f"{inv.function!r} ran past {limit_name}={timeout}")
                where = f"{inv.function!r} of mount {inv.mount.label!r}; its worker was killed"
                fut.set_exception(LimitExceeded(limit_name, f"{inv.user_time():.2f}s", f"{timeout}s", where))
                return
            timer = loop.call_later(max(remaining, 0.05), check)  # waiting for a nested call: look again later

        timer = loop.call_later(max(timeout - inv.user_time(), 0.05), check)
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
