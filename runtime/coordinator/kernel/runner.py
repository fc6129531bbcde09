"""The transaction runner: one execution in a fresh transaction, committed, re-run on OCC conflicts.

An :class:`Execution` is one transaction (query, mutation) or one action run,
with its frozen time and seeded randomness.  :meth:`TransactionRunner.run`
runs a body in a new transaction, hands the prepared writes to the committer
and, once they are durable, calls the *after-commit hooks* services
registered (the scheduler queues the jobs the transaction inserted,
subscriptions re-check their read sets).

A deploy holds the *commit gate* while it checks the last documents written
under the old schema, and bumps the *epoch*: a mutation that ran on older code
re-runs instead of committing.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from runtime.coordinator.clock import Clock
from runtime.errors import ConflictError
from runtime.limits import Limits
from runtime.storage import Storage
from runtime.transactions import Committer
from runtime.transactions.readset import ReadSet
from runtime.transactions.transaction import Prepared, Transaction


class Execution:
    """One transaction (query, mutation) or one action run, with its frozen time and seeded randomness."""

    __slots__ = ("txn", "now", "rng", "label", "scheduled", "job", "after_commit")

    def __init__(self, txn: Transaction | None, now: float, seed: int, label: str,
                 job: tuple[str, str] | None = None) -> None:
        self.txn = txn
        self.now = now
        self.rng = random.Random(seed)
        self.label = label
        self.scheduled: list[tuple[float, str, str]] = []
        """Jobs this transaction inserted: ``(due, mount, job id)``, handed to the scheduler after the commit."""
        self.job = job
        """``(mount, job id)`` when this execution runs a scheduled job."""
        self.after_commit: list[Callable[[], None]] = []
        """What to do once this transaction is durable (e.g. remove a blob no file names any more)."""


AfterCommit = Callable[[Execution, Prepared], None]
"""A hook called once a transaction is durable, with its execution and what it wrote."""


class TransactionRunner:
    """Runs bodies in transactions against one storage and committer; owns the commit gate and the epoch."""

    def __init__(self, storage: Storage, committer: Committer, limits: Limits, clock: Clock,
                 stats: dict[str, int]) -> None:
        self.storage = storage
        self.committer = committer
        self.limits = limits
        self.clock = clock
        self.stats = stats
        self.epoch = 0
        """Bumped at each deploy switch: a mutation that ran on older code re-runs instead of committing."""
        self.after_commit: list[AfterCommit] = []
        self.lanes: dict[Any, _KeyLane] = {}
        """Retry lanes by conflict key ``(index number, key)``: a mutation that conflicted re-runs holding the
        lane of the key it conflicted on (see :class:`_Lane`); a lane nobody holds or waits for is dropped."""
        self._tickets = itertools.count(1)
        self._labels = itertools.count(1)
        self._gate = asyncio.Event()
        self._gate.set()
        self._committing = 0

    def label(self) -> str:
        """A fresh request label (``r1``, ``r2``…) that tags a call's log lines."""
        return f"r{next(self._labels)}"

    def action_execution(self, label: str | None = None, job: tuple[str, str] | None = None) -> Execution:
        """An execution for an action: no transaction, the clock's now, fresh randomness."""
        return Execution(None, self.clock.now(), secrets.randbits(63), label or self.label(), job)

    def read_only(self) -> Transaction:
        """A read-only transaction at the latest snapshot, for the runtime's own reads (close it when done)."""
        return Transaction(self.storage, now=self.clock.now(), limits=self.limits)

    async def run(self, kind: str, body: Callable[[Execution], Awaitable[Any]], label: str | None = None,
                  idem_key: str | None = None, job: tuple[str, str] | None = None,
                  before_commit: Callable[[Execution, Any], None] | None = None,
                  ) -> tuple[Any, int | None, Execution]:
        """Run ``await body(execution)`` in a fresh transaction and commit it; re-run on OCC conflicts.

        ``before_commit(execution, value)`` may add the coordinator's own writes
        (a job's new state) to the same transaction.  Returns the value, the
        commit timestamp (the snapshot's for a read-only one) and the execution.
        """
        label = label or self.label()
        lane: _Lane | None = None  # made at the first conflict of a mutation
        try:
            while True:
                epoch = self.epoch
                holder: list[Execution] = []

                def random_bytes(n: int, holder: list[Execution] = holder) -> bytes:
                    return holder[0].rng.randbytes(n)

                txn = Transaction(self.storage, now=self.clock.now(), limits=self.limits, random_bytes=random_bytes)
                ex = Execution(txn, txn.now, secrets.randbits(63), label, job)
                holder.append(ex)
                try:
                    value = await body(ex)
                    if kind == "query":
                        return value, txn.ts, ex
                    if before_commit is not None:
                        before_commit(ex, value)
                    if idem_key is not None and txn.has_writes():
                        # a mutation that wrote nothing needs no durable record: a re-sent one runs again,
                        # harmlessly, and no fsync is spent on it
                        txn.meta_put(idem_key, {"value": value, "ts": None})
                    prepared = txn.prepare()
                    prepared.lane = lane.owner if lane is not None else None
                    await self._gate.wait()
                    if epoch != self.epoch and not prepared.is_read_only:
                        self.stats["deploy_retries"] += 1
                        raise ConflictError("the app was redeployed while this mutation ran", table="(deploy)")
                    self._committing += 1
                    try:
                        ts = await self.committer.commit_async(prepared)
                    finally:
                        self._committing -= 1
                    for hook in self.after_commit:
                        hook(ex, prepared)
                    for fn in ex.after_commit:
                        fn()
                    return value, ts, ex
                except ConflictError as exc:
                    if kind != "mutation":
                        raise
                    lane = lane or _Lane(self)
                    self.stats["conflict_retries"] += 1
                    # raises the conflict once the deadline has passed
                    await lane.wait_turn(txn.reads, getattr(exc, "lane_key", None))
                finally:
                    txn.close()
        finally:
            if lane is not None:
                lane.leave()

    async def hold_commits(self) -> None:
        """Close the commit gate and wait for the commits under way to land (a deploy's final check)."""
        self._gate.clear()
        while self._committing:
            await asyncio.sleep(0.002)

    def release_commits(self, switched: bool) -> None:
        """Open the gate again; ``switched`` bumps the epoch (new code serves from now on)."""
        if switched:
            self.epoch += 1
        self._gate.set()


class _KeyLane:
    """The lane of one conflict key: a FIFO lock and how many mutations hold or wait for it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class _Lane:
    """One mutation's place in a retry lane: first come, first served, bounded by ``occ_retry_deadline_s``.

    After its first conflict a mutation waits for the lane of the key it
    conflicted on (an asyncio lock: FIFO), takes a ticket, then re-runs holding
    it, with everything it has read so far reserved in the committer under that
    ticket: no fresh attempt, and no holder with a younger ticket, can overtake
    it again.  Later conflicts (on any key) keep its lane and widen its
    reservation: it never waits for a second lane while holding one, so lanes
    cannot deadlock, and the oldest ticket always wins.
    """

    __slots__ = ("runner", "owner", "key", "deadline", "reads", "ticket")

    def __init__(self, runner: TransactionRunner) -> None:
        self.runner = runner
        self.owner = object()
        self.key: Any = None
        """The key of the lane held (None: none held yet)."""
        self.deadline = 0.0
        self.reads: ReadSet | None = None
        self.ticket = 0

    async def wait_turn(self, reads: ReadSet, key: Any) -> None:
        now = time.monotonic()
        limit = self.runner.limits.occ_retry_deadline_s
        if self.key is None:
            self.deadline = now + limit
            key = key if key is not None else _ANY_KEY
            lane = self.runner.lanes.get(key)
            if lane is None:
                lane = self.runner.lanes[key] = _KeyLane()
            lane.users += 1
            try:
                await asyncio.wait_for(lane.lock.acquire(), self.deadline - now)
            except BaseException as exc:
                self._drop_user(key, lane)
                if isinstance(exc, TimeoutError):
                    raise ConflictError(f"this mutation waited occ_retry_deadline_s={limit}"
                                        " s for its turn in the retry lane", table="(lane)") from None
                raise
            self.key = key
            self.ticket = next(self.runner._tickets)
        elif now > self.deadline:
            raise ConflictError(f"this mutation kept conflicting for occ_retry_deadline_s={limit} s", table="(lane)")
        self.reads = reads.merged(self.reads or ReadSet())
        self.runner.committer.reserve(self.owner, self.reads, self.ticket)

    def _drop_user(self, key: Any, lane: _KeyLane) -> None:
        lane.users -= 1
        if lane.users == 0 and self.runner.lanes.get(key) is lane:
            del self.runner.lanes[key]

    def leave(self) -> None:
        if self.key is not None:
            self.runner.committer.release(self.owner)
            lane = self.runner.lanes[self.key]
            lane.lock.release()
            self._drop_user(self.key, lane)
            self.key = None


_ANY_KEY = ("(no key)",)
"""The lane of conflicts that name no key (a deploy's)."""
