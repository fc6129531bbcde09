"""One running call on the worker side: its capability token, its channel, its buffered writes.

A :class:`WorkerInvocation` ships the writes it buffered in front of its next
syscall (or with its result), and remembers the documents the call has seen,
so ``patch`` needs no extra read.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from runtime.app import Definition, Table
from runtime.ctx import Document
from runtime.errors import NotFoundError
from runtime.values import pack as _pack

Pending = list[tuple[str, dict[str, Any]]]
"""Buffered writes: ``(op, args)`` in the order they were made."""


class Channel(Protocol):
    """How a ctx reaches the coordinator (implemented by the worker)."""

    def syscall(self, token: str, op: str, args: dict[str, Any],
                pre: Pending | None = None) -> Awaitable[Any]: ...


class WorkerInvocation:
    """One running call of one function in this worker: its token and its channel."""

    def __init__(self, channel: Channel, definition: Definition, token: str) -> None:
        self.channel = channel
        self.definition = definition
        self.token = token
        self.pending: Pending = []
        """Buffered writes not yet shipped (see DatabaseWriter._write)."""
        self.pending_bytes = 0
        self.known: dict[str, tuple[str, Document]] = {}
        """Documents this invocation read or wrote, as it last saw them: ``patch`` needs no extra read.
        Forgotten at every nested call (the callee may change them)."""

    def buffer(self, op: str, args: dict[str, Any]) -> None:
        """Keep a write to ship with the next syscall or the result."""
        self.pending.append((op, args))
        self.pending_bytes += len(_pack(args))

    def take_pending(self) -> Pending:
        """The buffered writes, which are no longer buffered."""
        pending, self.pending, self.pending_bytes = self.pending, [], 0
        return pending

    def give_back(self, pending: Pending) -> None:
        """Writes whose frame never left: they go first again."""
        self.pending[:0] = pending
        self.pending_bytes += sum(len(_pack(a)) for _op, a in pending)

    def remember(self, table: str, docs: list[Document]) -> None:
        """Note documents just read from a user table (system tables are not patched)."""
        if table.startswith("_"):
            return
        for d in docs:
            self.known[d["_id"]] = (table, d)

    def table(self, name: str) -> Table:
        """This mount's table ``name``, or NotFoundError."""
        t = self.definition.tables.get(name) if isinstance(name, str) else None
        if t is None:
            raise NotFoundError(f"this mount has no table {name!r}")
        return t

    async def syscall(self, op: str, args: dict[str, Any]) -> Any:
        """Send one syscall, with the buffered writes in front of it."""
        if op == "run" and args.get("kind") != "query":
            self.known.clear()  # the callee may change them (a query cannot)
        pre = self.take_pending()
        try:
            return await self.channel.syscall(self.token, op, args, pre)
        except BaseException as exc:
            if pre and getattr(exc, "unsent", False):
                self.give_back(pre)
            raise
