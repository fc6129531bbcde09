"""The worker-side ``ctx``: what :mod:`runtime.ctx` describes, implemented over syscalls.

Every database operation and nested call is a *syscall* to the coordinator,
made with the capability token of the current invocation; the coordinator
owns the transaction.  Documents are validated against this mount's table
models here, before they are sent (the callee's namespace), and again by the
coordinator against the value limits.

One :class:`WorkerInvocation` per running call holds the token, the writes buffered
but not yet shipped, and the documents the call has seen (so ``patch`` needs no
extra read).  The ctx classes are built by the worker (``CTX_CLASSES[kind]``)
and satisfy the protocols of :mod:`runtime.ctx` (checked statically at the
bottom of this module).  Outside the call rules they raise
:class:`~runtime.errors.CallRuleError`, for code that is not type-checked.
"""

from __future__ import annotations

import logging
import random as _random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn

from runtime import ctx as api
from runtime import systables, values
from runtime.ctx import Document, FunctionRef, Page
from runtime.errors import CallRuleError, NotFoundError, ValidationError
from runtime.limits import DEFAULT, WORKER_SCAN_BATCH
from sandbox.files import StorageActionWriter, StorageReader, StorageWriter
from sandbox.invocation import WorkerInvocation

SYSTEM_TABLES = systables.NAMES
"""The runtime's own tables of each mount, readable through ``ctx.db.system``."""


# --- the database -------------------------------------------------------------------------------------------


class RangeBuilder:
    """``q.eq("a", 1).gte("b", 2)``: records the operators; the coordinator checks the shape."""

    def __init__(self) -> None:
        self.ops: list[list[Any]] = []

    def _add(self, op: str, field: str, value: Any) -> RangeBuilder:
        if not isinstance(field, str):
            raise ValidationError(f"index range: field names are strings, not {field!r}")
        self.ops.append([op, field, value])
        return self

    def eq(self, field: str, value: Any) -> RangeBuilder:
        return self._add("eq", field, value)

    def gt(self, field: str, value: Any) -> RangeBuilder:
        return self._add("gt", field, value)

    def gte(self, field: str, value: Any) -> RangeBuilder:
        return self._add("gte", field, value)

    def lt(self, field: str, value: Any) -> RangeBuilder:
        return self._add("lt", field, value)

    def lte(self, field: str, value: Any) -> RangeBuilder:
        return self._add("lte", field, value)


class Query:
    """A lazily built query over one table; nothing is read until a terminal method."""

    def __init__(self, db: DatabaseReader, table: str) -> None:
        self._db = db
        self._spec: dict[str, Any] = {"table": table, "index": "by_creation_time", "range": [], "order": "asc"}
        self._filters: list[Callable[[Document], bool]] = []

    def with_index(self, name: str, range: Callable[[api.RangeBuilder], api.RangeBuilder] | None = None) -> Query:
        """Read through index ``name``, optionally limited to a range built by ``range(q)``."""
        self._spec["index"] = name
        if range is not None:
            b = RangeBuilder()
            out = range(b)
            if out is not b and not isinstance(out, RangeBuilder):
                raise ValidationError("the index range function must return the builder it was given")
            self._spec["range"] = b.ops
        return self

    def order(self, order: str) -> Query:
        """``"asc"`` (default) or ``"desc"``."""
        if order not in ("asc", "desc"):
            raise ValidationError(f"order must be 'asc' or 'desc', not {order!r}")
        self._spec["order"] = order
        return self

    def filter(self, predicate: Callable[[Document], bool]) -> Query:
        """Keep documents for which ``predicate(doc)`` is true (filtered-out ones still count as scanned)."""
        self._filters.append(predicate)
        return self

    def _keep(self, doc: Document) -> bool:
        return all(f(doc) for f in self._filters)

    async def _scan(self, limit: int | None) -> list[Document]:
        out: list[Document] = []
        after: bytes | None = None
        while True:
            want = WORKER_SCAN_BATCH if self._filters or limit is None else max(1, limit - len(out))
            if not self._filters and limit is None:
                want = 0  # the whole range in one syscall
            res = await self._db._call("scan", {**self._spec, "limit": want, "after": after})
            self._db._inv.remember(self._spec["table"], res["docs"])
            out.extend(d for d in res["docs"] if self._keep(d))
            if limit is not None and len(out) >= limit:
                return out[:limit]
            if res["done"]:
                return out
            after = res["last"]

    async def collect(self) -> list[Document]:
        """Every matching document."""
        return await self._scan(None)

    async def take(self, n: int) -> list[Document]:
        """The first ``n`` matching documents."""
        if not isinstance(n, int) or n < 0:
            raise ValidationError(f"take(n) needs a non-negative int, not {n!r}")
        return await self._scan(n) if n else []

    async def first(self) -> Document | None:
        """The first matching document, or None."""
        docs = await self._scan(1)
        return docs[0] if docs else None

    async def unique(self) -> Document | None:
        """The only matching document, or None; more than one is an error."""
        docs = await self._scan(2)
        if len(docs) > 1:
            raise ValidationError(f"unique() found more than one document in {self._spec['table']!r}")
        return docs[0] if docs else None

    async def paginate(self, cursor: str | None = None, num_items: int = 100) -> Page:
        """One page; pass ``continue_cursor`` back for the next one (cursors work only for this query)."""
        res = await self._db._call("paginate", {**self._spec, "cursor": cursor, "num_items": num_items})
        self._db._inv.remember(self._spec["table"], res["page"])
        return Page(page=[d for d in res["page"] if self._keep(d)], is_done=res["is_done"],
                    continue_cursor=res["continue_cursor"])

    def __aiter__(self) -> AsyncIterator[Document]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Document]:
        for doc in await self.collect():
            yield doc


class SystemReader:
    """``ctx.db.system``: read this mount's system tables (``_scheduled``: its jobs; ``_crons``: its crons)."""

    def __init__(self, db: DatabaseReader) -> None:
        self._db = db

    async def get(self, id: str) -> Document | None:
        """A system document (e.g. a job, by the Id ``run_after`` returned) of this mount, or None."""
        return await self._db.get(id)

    def query(self, table: str) -> Query:
        """Query a system table; ``_scheduled`` has the index ``by_state`` (``state``, ``scheduled_time``)."""
        if table not in SYSTEM_TABLES:
            raise NotFoundError(f"there is no system table {table!r} (there are {', '.join(SYSTEM_TABLES)})")
        return Query(self._db, table)


_CACHED_READS = frozenset({"get", "scan"})
"""Reads the worker's cache may answer (sandbox.readcache); ``paginate`` always asks (its cursors are signed)."""


class _ReadOnlyDatabase(CallRuleError, AttributeError):
    """A write method asked of a query's ``ctx.db``: an AttributeError too, so ``hasattr`` and the runtime-checkable
    protocols still see no write methods there; it crosses the wire as the ``CallRuleError`` it is."""

    def to_wire(self) -> dict[str, Any]:
        return {**super().to_wire(), "type": "CallRuleError"}


class DatabaseReader:
    """``ctx.db`` of a query."""

    def __init__(self, inv: WorkerInvocation) -> None:
        self._inv = inv
        self.system = SystemReader(self)

    def __getattr__(self, name: str) -> NoReturn:
        if name in ("insert", "patch", "replace", "delete"):
            raise _ReadOnlyDatabase(f"ctx.db.{name}: a query cannot write (its ctx.db is read-only); "
                                "do the write in a mutation, and call that mutation instead")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    async def _call(self, op: str, args: dict[str, Any]) -> Any:
        if op in _CACHED_READS:
            return await self._inv.read(op, args)
        return await self._inv.syscall(op, args)

    async def _read(self, id: str) -> tuple[str | None, Document | None]:
        res = await self._call("get", {"id": id})
        table, doc = res["table"], res["doc"]
        if doc is not None and table is not None and not table.startswith("_"):
            self._inv.known[id] = (table, doc)
        return table, doc

    async def get(self, id: str) -> Document | None:
        """The document with this Id, or None.  An Id of another mount is refused."""
        return (await self._read(id))[1]

    async def table_of(self, id: str) -> str | None:
        """The name of the table document ``id`` is in, or None if there is no such document."""
        known = self._inv.known.get(id) if isinstance(id, str) else None
        if known is not None:
            return known[0]
        table, doc = await self._read(id)
        return table if doc is not None else None

    def query(self, table: str) -> Query:
        """Start a query over one of this mount's tables."""
        self._inv.table(table)
        return Query(self, table)


class DatabaseWriter(DatabaseReader):
    """``ctx.db`` of a mutation."""

    async def insert(self, table: str, doc: dict[str, Any]) -> str:
        """Validate and insert a document; return its Id."""
        body = self._inv.table(table).validate(doc)
        minted = self._inv.mint_id(table)
        if minted is None:
            new_id: str = await self._call("insert", {"table": table, "doc": body, "id": None})
            return new_id
        self._inv.buffer("insert", {"table": table, "doc": body, "id": minted})  # checked new at commit
        if self._inv.buffer_full:
            await self._call("flush", {})
        return minted

    async def _current(self, id: str, verb: str) -> tuple[str, Document]:
        """The document as this invocation last saw it (no round trip), else read now."""
        known = self._inv.known.get(id) if isinstance(id, str) else None
        if known is not None:
            return known
        table, doc = await self._read(id)
        if doc is None or table is None:
            raise NotFoundError(f"cannot {verb} {id!r}: no such document")
        return table, doc

    async def patch(self, id: str, fields: dict[str, Any]) -> None:
        """Shallow-merge ``fields`` into a document (the result must match the schema)."""
        if not isinstance(fields, dict):
            raise ValidationError(f"patch fields must be a dict, not {type(fields).__name__}")
        table, current = await self._current(id, "patch")
        body = {k: v for k, v in current.items() if not k.startswith("_")}
        body.update(fields)
        body = self._inv.table(table).validate(body)
        await self._write("replace", id, {"id": id, "doc": body})
        self._inv.known[id] = (table, {**body, "_id": id, "_creation_time": current["_creation_time"]})

    async def replace(self, id: str, doc: dict[str, Any]) -> None:
        """Replace a document's fields entirely."""
        table, current = await self._current(id, "replace")
        body = self._inv.table(table).validate(doc)
        await self._write("replace", id, {"id": id, "doc": body})
        self._inv.known[id] = (table, {**body, "_id": id, "_creation_time": current["_creation_time"]})

    async def delete(self, id: str) -> None:
        """Delete a document."""
        await self._write("delete", id, {"id": id})
        if isinstance(id, str):
            self._inv.known.pop(id, None)

    async def _write(self, op: str, id: Any, args: dict[str, Any]) -> None:
        """A write to a document this invocation has seen is buffered (no round trip): it travels with the next
        syscall or the result, so every later read still sees it.  Others go now, for their errors."""
        if isinstance(id, str) and id in self._inv.known:
            self._inv.buffer(op, args)
            if self._inv.buffer_full:
                await self._call("flush", {})
            return
        await self._call(op, args)


# --- calls, scheduling, files, logs -----------------------------------------------------------------------


def _ref_wire(ref: FunctionRef[..., Any] | str) -> dict[str, Any]:
    if isinstance(ref, str):
        return {"handle": ref}
    if isinstance(ref, FunctionRef):
        return ref.to_wire()
    raise TypeError(f"expected a function reference or a function handle string, not {ref!r}")


def _keyword_only(what: str, ref: object, args: tuple[Any, ...]) -> None:
    if args:
        raise TypeError(f"{what}: pass the arguments of {ref!r} by keyword ({len(args)} given by position)")


class _Log:
    """``ctx.log``: ``ctx.log("x")`` or ``ctx.log.info("x")``; lines land in ``bulkhead logs``."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def __call__(self, *parts: object) -> None:
        self._logger.info(" ".join(str(p) for p in parts))

    def debug(self, msg: object, *args: object, **kw: Any) -> None:
        self._logger.debug(msg, *args, **kw)

    def info(self, msg: object, *args: object, **kw: Any) -> None:
        self._logger.info(msg, *args, **kw)

    def warning(self, msg: object, *args: object, **kw: Any) -> None:
        self._logger.warning(msg, *args, **kw)

    def error(self, msg: object, *args: object, **kw: Any) -> None:
        self._logger.error(msg, *args, **kw)

    def exception(self, msg: object, *args: object, **kw: Any) -> None:
        self._logger.exception(msg, *args, **kw)

    def critical(self, msg: object, *args: object, **kw: Any) -> None:
        self._logger.critical(msg, *args, **kw)


class Scheduler:
    """``ctx.scheduler`` of mutations and actions.

    From a mutation, scheduling is part of the transaction: if the mutation
    (or the sub-transaction that scheduled) rolls back, nothing is scheduled.
    From an action, a job is scheduled at once, whatever the action does next.
    Each method returns the job's Id in this mount's ``_scheduled`` table.
    """

    def __init__(self, ctx: BaseCtx) -> None:
        self._ctx = ctx

    async def run_after(self, seconds: float, ref: FunctionRef[..., Any] | str, /, *args: Any, **kwargs: Any) -> str:
        """Run a mutation or action ``seconds`` from now (0: as soon as this transaction commits)."""
        _keyword_only("run_after", ref, args)
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds != seconds:
            raise ValidationError(f"run_after: seconds must be a number, not {seconds!r}")
        if seconds < 0:
            raise ValidationError(f"run_after: seconds must be >= 0, not {seconds!r}")
        return await self.run_at(self._ctx.now() + float(seconds), ref, **kwargs)

    async def run_at(self, timestamp: Any, ref: FunctionRef[..., Any] | str, /, *args: Any, **kwargs: Any) -> str:
        """Run a mutation or action at ``timestamp`` (seconds since the epoch, or an aware ``datetime``)."""
        _keyword_only("run_at", ref, args)
        if hasattr(timestamp, "timestamp") and callable(timestamp.timestamp):
            if getattr(timestamp, "tzinfo", None) is None:
                raise ValidationError("run_at: a datetime must be timezone-aware (e.g. datetime.now(timezone.utc))")
            timestamp = timestamp.timestamp()
        if not isinstance(timestamp, (int, float)) or isinstance(timestamp, bool) or timestamp != timestamp:
            raise ValidationError(f"run_at: the time must be seconds since the epoch or a datetime, not {timestamp!r}")
        job: str = await self._ctx._inv.syscall("schedule", {"ref": _ref_wire(ref), "at": float(timestamp),
                                                             "args": kwargs})
        return job

    async def cancel(self, job_id: str) -> None:
        """Cancel a pending job (an action already running keeps running, but what it schedules is canceled)."""
        if not isinstance(job_id, str):
            raise ValidationError(f"cancel takes a job Id string, not {job_id!r}")
        await self._ctx._inv.syscall("cancel", {"id": job_id})


class BaseCtx:
    """What every kind of ctx has."""

    kind = ""

    def __init__(
        self, inv: WorkerInvocation, *, now: float, seed: int, env: Mapping[str, str], log: logging.Logger
    ) -> None:
        self._inv = inv
        self._now = now
        self.random = _random.Random(seed)
        """Seeded per transaction in queries and mutations: deterministic across retries of one attempt."""
        self.env: Mapping[str, str] = MappingProxyType(dict(env))
        """This mount's environment variables only."""
        self.log = _Log(log)

    def now(self) -> float:
        """Seconds since the epoch; frozen at the start of the top-level call in queries and mutations."""
        return self._now

    async def _run(self, kind: str, ref: FunctionRef[..., Any] | str, args: dict[str, Any]) -> Any:
        wire = _ref_wire(ref)
        # the coordinator checks again; checked here, a mistake fails at once instead of as a malformed frame
        values.check_limits(args, getattr(self._inv.channel, "limits", DEFAULT),
                            f"arguments of {wire.get('name') or 'the call'!r}")
        return await self._inv.syscall("run", {"ref": wire, "kind": kind, "args": args})

    async def run_query(self, ref: FunctionRef[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Run a query: in this transaction (queries, mutations) or as its own (actions)."""
        _keyword_only("run_query", ref, args)
        return await self._run("query", ref, kwargs)

    async def run_mutation(self, ref: FunctionRef[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Queries cannot call mutations (overridden where allowed)."""
        raise CallRuleError(f"cannot call a mutation from a {self.kind}: queries call only queries")

    async def run_action(self, ref: FunctionRef[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Only actions run actions (overridden there)."""
        raise CallRuleError(f"cannot call an action from a {self.kind}: only actions run actions "
                            "(schedule it from a mutation instead)")

    async def function_handle(self, ref: FunctionRef[..., Any]) -> str:
        """A handle string naming one of this mount's functions, to pass to another mount."""
        if not isinstance(ref, FunctionRef):
            raise TypeError(f"function_handle takes a function reference, not {ref!r}")
        handle: str = await self._inv.syscall("handle", {"ref": ref.to_wire()})
        return handle


class QueryCtx(BaseCtx):
    """The ctx of a query."""

    kind = "query"

    def __init__(self, inv: WorkerInvocation, **kw: Any) -> None:
        super().__init__(inv, **kw)
        self.db = DatabaseReader(inv)
        self.storage = StorageReader(inv)


class MutationCtx(BaseCtx):
    """The ctx of a mutation."""

    kind = "mutation"

    def __init__(self, inv: WorkerInvocation, **kw: Any) -> None:
        super().__init__(inv, **kw)
        self.db = DatabaseWriter(inv)
        self.scheduler = Scheduler(self)
        self.storage = StorageWriter(inv)

    async def run_mutation(self, ref: FunctionRef[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Run a mutation as a sub-transaction: if it raises, only its writes are discarded."""
        _keyword_only("run_mutation", ref, args)
        return await self._run("mutation", ref, kwargs)


class ActionCtx(BaseCtx):
    """The ctx of an action: no ``db``; each run_query/run_mutation is its own transaction."""

    kind = "action"

    def __init__(self, inv: WorkerInvocation, **kw: Any) -> None:
        super().__init__(inv, **kw)
        self.scheduler = Scheduler(self)
        self.storage = StorageActionWriter(inv)
        self._started = time.monotonic()

    def now(self) -> float:
        """The coordinator's time at the start of the action plus the time elapsed since: actions are not frozen."""
        return self._now + (time.monotonic() - self._started)

    async def run_mutation(self, ref: FunctionRef[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Run a mutation in a transaction of its own."""
        _keyword_only("run_mutation", ref, args)
        return await self._run("mutation", ref, kwargs)

    async def run_action(self, ref: FunctionRef[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Run another action."""
        _keyword_only("run_action", ref, args)
        return await self._run("action", ref, kwargs)


CTX_CLASSES: dict[str, type[BaseCtx]] = {"query": QueryCtx, "mutation": MutationCtx, "action": ActionCtx}
"""The ctx class the worker builds for each kind of function."""


if TYPE_CHECKING:  # each implementation satisfies the protocol user code is typed against
    def _query(c: QueryCtx) -> api.QueryCtx: return c
    def _mutation(c: MutationCtx) -> api.MutationCtx: return c
    def _action(c: ActionCtx) -> api.ActionCtx: return c
    def _range(b: RangeBuilder) -> api.RangeBuilder: return b
