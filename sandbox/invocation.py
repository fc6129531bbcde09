"""One running call on the worker side: its capability token, its channel, its buffered writes.

A :class:`WorkerInvocation` ships the writes it buffered in front of its next
syscall (or with its result), and remembers the documents the call has seen,
so ``patch`` needs no extra read.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable
from typing import Any, Protocol

from runtime.app import Definition, Table
from runtime.ctx import Document
from runtime.errors import NotFoundError
from runtime.limits import WIRE_BUFFERED_BYTES_MAX, WIRE_BUFFERED_WRITES_MAX, WIRE_CACHED_READS_MAX
from runtime.values import ID_RANDOM_BYTES, make_id
from runtime.values import pack as _pack
from sandbox.readcache import ReadCache, Report

Pending = list[tuple[str, dict[str, Any]]]
"""Buffered writes: ``(op, args)`` in the order they were made."""


class Channel(Protocol):
    """How a ctx reaches the coordinator (implemented by the worker)."""

    def syscall(self, token: str, op: str, args: dict[str, Any], pre: Pending | None = None,
                reads: list[Report] | None = None) -> Awaitable[Any]: ...


class WorkerInvocation:
    """One running call of one function in this worker: its token and its channel."""

    def __init__(self, channel: Channel, definition: Definition, token: str, cache: ReadCache | None = None,
                 cache_ts: int | None = None) -> None:
        self.channel = channel
        self.definition = definition
        self.token = token
        self.cache = cache
        self.cache_ts = cache_ts if cache is not None and cache.enabled else None
        """The snapshot reads by Id may be answered at from :attr:`cache`; None once this invocation wrote
        (or called a mutation): its reads must then see the transaction's writes, which only the coordinator has."""
        self.reads: list[Report] = []
        self._tables: dict[str, int] = {}
        self._now = 0.0
        self._seed: int | None = None
        self._id_rng: random.Random | None = None
        """Reads answered from the cache, not yet reported to the coordinator (they join the read set)."""
        self.pending: Pending = []
        """Buffered writes not yet shipped (see DatabaseWriter._write)."""
        self.pending_bytes = 0
        self.known: dict[str, tuple[str, Document]] = {}
        """Documents this invocation read or wrote, as it last saw them: ``patch`` needs no extra read.
        Forgotten at every nested call (the callee may change them)."""

    async def read(self, op: str, args: dict[str, Any]) -> Any:
        """A read syscall (``get``, ``scan``), answered from the worker's cache when it holds the answer at this
        invocation's snapshot; an answer the coordinator offers for keeping is kept."""
        cache, key = self.cache, b""
        if cache is not None and cache.enabled:
            key = op.encode() + _pack(args)
            if self.cache_ts is not None:
                hit = cache.lookup(key, self.cache_ts)
                if hit is not None:
                    answer, report = hit
                    self.reads.append(report)
                    if len(self.reads) >= WIRE_CACHED_READS_MAX:
                        await self.syscall("flush", {})  # the reports go with it
                    return answer
        answer = await self.syscall(op, args)
        offer = answer.pop("cache", None) if isinstance(answer, dict) else None
        if offer is not None and key:
            ts, number, lo, hi, docs, size = offer
            cache.store(key, answer, ts, (number, lo, hi, docs, size))  # type: ignore[union-attr]
        return answer

    def take_reads(self) -> list[Report]:
        reads, self.reads = self.reads, []
        return reads

    def set_id_source(self, tables: dict[str, int], now: float, seed: int) -> None:
        """Mint Ids for this invocation's inserts: the table numbers, its frozen time, a stream of its seed
        of its own (the user's ``ctx.random`` stream is not drawn from)."""
        self._tables = tables
        self._now = now
        self._seed = seed

    def mint_id(self, table: str) -> str | None:
        """A new Id for a document of ``table``, or None if this worker was not told the table's number."""
        number = self._tables.get(table)
        if number is None or self._seed is None:
            return None
        if self._id_rng is None:  # made at the first insert: most invocations insert nothing
            self._id_rng = random.Random(self._seed ^ _ID_STREAM)
        return make_id(number, self._now, self._id_rng.randbytes(ID_RANDOM_BYTES))

    @property
    def buffer_full(self) -> bool:
        return len(self.pending) >= WIRE_BUFFERED_WRITES_MAX or self.pending_bytes > WIRE_BUFFERED_BYTES_MAX

    def buffer(self, op: str, args: dict[str, Any]) -> None:
        """Keep a write to ship with the next syscall or the result."""
        self.cache_ts = None
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
        if op in _WRITES or (op == "run" and args.get("kind") != "query"):
            self.cache_ts = None  # reads from now on must see the transaction's writes
            if op == "run":
                self.known.clear()  # the callee may change them (a query cannot)
        pre, reads = self.take_pending(), self.take_reads()
        try:
            return await self.channel.syscall(self.token, op, args, pre, reads)
        except BaseException as exc:
            if getattr(exc, "unsent", False):
                if pre:
                    self.give_back(pre)
                self.reads[:0] = reads
            raise


_WRITES = frozenset({"insert", "replace", "delete"})
_ID_STREAM = 0x5EED_1D5
