"""The syscall router: what a worker may ask of the coordinator, and who answers it.

The kernel and each service register their syscalls here as
:class:`SyscallSpec` entries: the op, the function kinds that may issue it, the
refusal for the others, and the handler(s).  A frame from a worker is checked
in one order for every op — a live capability token from that very worker,
then the writes it buffered, then the invocation's state, then the kind — and
is answered inline from the socket's reader callback when its handler is
synchronous (database work: no task, no future), or from a task when it waits
(nested calls, and what an action does outside any transaction).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from runtime.coordinator.kernel.invocations import Invocation
from runtime.errors import BulkheadError, CallRuleError, IsolationError, ValidationError, WorkerCrashed, error_of
from runtime.protocol.messages import Syscall, SyscallResult
from runtime.protocol.syscalls import SyscallArgs, SyscallOp, parse_args, parse_buffered
from sandbox.supervisor import WorkerHandle

Inline = Callable[[Invocation, Any], Any]
"""Answers a syscall at once, in the invocation's transaction; gets the op's args model
(:mod:`runtime.protocol.syscalls`)."""

Waiting = Callable[[Invocation, Any], Awaitable[Any]]
"""Answers a syscall from a task (it waits: for another worker, or for a transaction of its own)."""

ALL_KINDS = frozenset({"query", "mutation", "action"})

IN_CALL = ("an invocation may not use the database while one of its nested calls is running; "
           "await each call before the next operation")
IN_CALL_ACTION = "an invocation may not use ctx while one of its nested calls is running"


@dataclass(frozen=True)
class SyscallSpec:
    """One syscall: who may issue it and what answers it.

    ``inline`` answers it inside a query's or mutation's transaction (and, when
    ``needs_txn`` is false, in an action too); ``action`` answers it from an
    action, outside any transaction; ``waiting`` answers it from a task for
    every kind and does its own checks.
    """

    op: SyscallOp
    kinds: frozenset[str]
    denied: str = "a {kind} cannot use {op}"
    """The refusal for a kind not in ``kinds``; ``{kind}`` and ``{op}`` are filled in."""
    inline: Inline | None = None
    action: Waiting | None = None
    waiting: Waiting | None = None
    needs_txn: bool = True
    checks_in_call: bool = True


class SyscallRouter:
    """Checks and dispatches every syscall frame; the registry services add to."""

    def __init__(self, tokens: dict[str, Invocation], stats: dict[str, int] | None = None) -> None:
        self.tokens = tokens
        self.stats: dict[str, int] = {"syscalls": 0, "cached_reads": 0} if stats is None else stats
        """``syscalls`` received; ``cached_reads``: reads by Id workers answered from their caches instead."""
        self.specs: dict[str, SyscallSpec] = {}

    def register(self, spec: SyscallSpec) -> None:
        if spec.op in self.specs:
            raise ValueError(f"syscall {spec.op.value!r} is registered twice")
        self.specs[spec.op] = spec

    def missing(self) -> list[str]:
        """Ops of the protocol no one registered (the daemon refuses to start with any)."""
        return sorted(op.value for op in SyscallOp if op not in self.specs)

    # --- frames ---------------------------------------------------------------------------

    def on_syscall(self, worker: WorkerHandle, msg: Syscall) -> None:
        """A worker's syscall, from the socket's reader callback."""
        inv = self.tokens.get(msg.token)
        if inv is None or inv.worker is not worker:
            self.reply(worker, msg, error=IsolationError("unknown or revoked capability token"))
            return
        self.stats["syscalls"] += 1
        if inv.failed_write is None and msg.reads:
            self.stats["cached_reads"] += len(msg.reads)
            try:
                inv.note_cached_reads(msg.reads)
            except BulkheadError as exc:
                inv.failed_write = exc
        if inv.failed_write is None and msg.pre:
            try:
                self.apply_writes(inv, msg.pre)
            except BulkheadError as exc:
                inv.failed_write = exc
        if inv.failed_write is not None:
            self.reply(worker, msg, error=inv.failed_write)
            return
        try:
            args = parse_args(msg.op, msg.args)
        except ValidationError as exc:
            self.reply(worker, msg, error=exc)
            return
        spec = self.specs[args.op]
        if spec.waiting is not None:
            asyncio.create_task(self._wait(worker, msg, spec.waiting(inv, args)))
            return
        if spec.action is not None and inv.execution.txn is None:
            if inv.in_call:
                self.reply(worker, msg, error=CallRuleError(IN_CALL_ACTION))
                return
            asyncio.create_task(self._wait(worker, msg, spec.action(inv, args)))  # each its own transaction
            return
        try:
            value = self._inline(inv, spec, args)
        except BulkheadError as exc:
            self.reply(worker, msg, error=exc)
        else:
            self.reply(worker, msg, value=value)

    def _inline(self, inv: Invocation, spec: SyscallSpec, args: SyscallArgs) -> Any:
        if spec.checks_in_call and inv.in_call:
            raise CallRuleError(IN_CALL)
        if spec.needs_txn and inv.execution.txn is None:
            raise CallRuleError(f"actions have no ctx.db ({spec.op.value}); use ctx.run_query / ctx.run_mutation")
        if inv.kind not in spec.kinds:
            raise CallRuleError(spec.denied.format(kind=inv.kind, op=spec.op.value))
        assert spec.inline is not None, f"syscall {spec.op.value!r} has no inline handler"
        return spec.inline(inv, args)

    async def _wait(self, worker: WorkerHandle, msg: Syscall, answer: Awaitable[Any]) -> None:
        try:
            value = await answer
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            self.reply(worker, msg, error=exc)
        else:
            self.reply(worker, msg, value=value)

    def apply_writes(self, inv: Invocation, writes: list[tuple[str, dict[str, Any]]]) -> None:
        """Writes a worker buffered (``insert`` with its Id, ``replace``, ``delete``), in order; the first that
        fails fails the caller."""
        for op, args in writes:
            write = parse_buffered(op, args)
            try:
                self._inline(inv, self.specs[write.op], write)
            except BulkheadError as exc:
                exc.message = f"a buffered {op} of {(write.id or '')[:40]!r} failed: {exc.message}"
                raise

    @staticmethod
    def reply(worker: WorkerHandle, msg: Syscall, value: Any = None, error: BaseException | None = None) -> None:
        try:
            if error is None:
                worker.send_now(SyscallResult(request_id=msg.request_id, ok=True, value=value))
            else:
                worker.send_now(SyscallResult(request_id=msg.request_id, ok=False, error=error_of(error).to_wire()))
        except WorkerCrashed:
            pass
        except (TypeError, ValueError) as exc:  # a value msgpack cannot carry
            worker.send_now(SyscallResult(request_id=msg.request_id, ok=False,
                                          error=ValidationError(f"the reply cannot be sent: {exc}").to_wire()))
