"""The ``ctx`` a function receives, as the types component code annotates with.

The ctx types are :class:`typing.Protocol` classes: they say what a query, mutation or
action may do and do none of it.  The worker running the function hands it the
implementation (``sandbox/ctx.py``), which turns each database operation and
nested call into a syscall to the coordinator.  Nothing here imports the wire
protocol, so ``import runtime`` stays light::

    RunQueryCtx              run_query                  what a client wrapper's reads need
    └── RunMutationCtx       + run_mutation             what its writes need
        └── RunActionCtx     + run_action
    QueryCtx                 db: DatabaseReader, storage: StorageReader, random, env, log, now(),
                             function_handle(), run_query
    MutationCtx              QueryCtx, with db: DatabaseWriter, storage: StorageWriter, scheduler, run_mutation
    ActionCtx                no db; storage: StorageActionWriter, scheduler, run_query/run_mutation/run_action

A mutation's ctx is also a :class:`QueryCtx` (a helper that only reads takes a
``QueryCtx`` and serves both).  Calls outside the call rules are type errors
(``run_mutation`` from a query, ``ctx.db`` in an action) and, for code that is
not type-checked, :class:`~runtime.errors.CallRuleError` at run time.

``run_query`` / ``run_mutation`` / ``run_action`` / ``scheduler.run_after``
take a :class:`FunctionRef` (defined here, with the values ctx methods return:
:class:`Page`, ``Document``) and that function's own keyword arguments, and
return what it returns::

    @component.mutation
    async def add(ctx: MutationCtx, *, name: str, count: int = 1) -> int: ...

    n = await ctx.run_mutation(add, name="x")      # int
    await ctx.run_mutation(add, nam="x")           # type error: no argument "nam"

A function handle (a ``str``) is accepted too, unchecked (result ``Any``).
Arguments go by keyword: passing them positionally raises ``TypeError``.

Every protocol is ``runtime_checkable``.  For the ctx protocols ``isinstance``
asks what kind of function is running, as it did when they were classes:
``isinstance(ctx, QueryCtx)`` holds in queries only, ``isinstance(ctx,
RunMutationCtx)`` in mutations and actions.  (An object without a ``kind``, a
test double, is checked by shape.)
"""

from __future__ import annotations

from abc import ABCMeta
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from random import Random
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, Protocol, Self, TypeVar, overload, runtime_checkable

from typing_extensions import ParamSpec as DefaultParamSpec
from typing_extensions import TypeVar as DefaultTypeVar

__all__ = [
    "KINDS", "ActionCtx", "DatabaseReader", "DatabaseWriter", "Document", "FunctionRef", "Kind", "Log", "MutationCtx",
    "Page", "Query", "QueryCtx", "RangeBuilder", "RunActionCtx", "RunMutationCtx", "RunQueryCtx", "Scheduler",
    "StorageActionWriter", "StorageReader", "StorageWriter", "SystemReader",
]

Kind = Literal["query", "mutation", "action"]
"""The kinds of function."""
KINDS: tuple[Kind, ...] = ("query", "mutation", "action")

P = DefaultParamSpec("P", default=...)
"""The keyword arguments of a referenced function (its parameters after ``ctx``); unknown: ``...``."""
R = DefaultTypeVar("R", covariant=True, default=Any)
"""What a referenced function returns (awaited); unknown: ``Any``."""
_P = ParamSpec("_P")
_R = TypeVar("_R")


class FunctionRef(Generic[P, R]):
    """A reference to a function of some mount, relative to the mount that holds it.

    ``path`` is ``""`` for the mount's own functions, or the name of a direct
    child (``likes``).  References travel to the coordinator as
    ``{"path", "name"}`` and are resolved there, relative to the calling mount.

    The type parameters are the function's keyword arguments (``P``) and what
    it returns (``R``): a decorated function knows both; a child's function
    (``mount.add``, or ``FunctionRef(path, name)`` built by hand) is a
    ``FunctionRef[..., Any]``, checked only when it runs.
    """

    __slots__ = ("path", "name", "kind")

    def __init__(self, path: str, name: str, kind: Kind | None = None) -> None:
        self.path = path
        self.name = name
        self.kind = kind

    def to_wire(self) -> dict[str, str]:
        """The form sent to the coordinator."""
        return {"path": self.path, "name": self.name}

    def __repr__(self) -> str:
        where = f"{self.path}:" if self.path else ""
        return f"<{self.kind or 'function'} {where}{self.name}>"


Document = dict[str, Any]
"""A stored document: its fields plus ``_id`` (str) and ``_creation_time`` (float seconds)."""

Order = Literal["asc", "desc"]


class Page(dict[str, Any]):
    """One page of :meth:`Query.paginate`: ``{"page": [...], "is_done": bool, "continue_cursor": str}``.

    A plain dict (a function may return it as is), with attribute access too.
    """

    @property
    def page(self) -> list[Document]:
        """The documents of this page (after ``filter``)."""
        value: list[Document] = self["page"]
        return value

    @property
    def is_done(self) -> bool:
        """Whether this is the last page."""
        value: bool = self["is_done"]
        return value

    @property
    def continue_cursor(self) -> str:
        """Pass it back as ``cursor=`` for the next page (it works for this query, in this mount, only)."""
        value: str = self["continue_cursor"]
        return value


@runtime_checkable
class RangeBuilder(Protocol):
    """``q.eq("a", 1).gte("b", 2)``: ``eq`` on a prefix of the index fields, then one lower and one upper bound."""

    def eq(self, field: str, value: Any) -> Self:
        """``field == value``."""
        ...

    def gt(self, field: str, value: Any) -> Self:
        """``field > value`` (the lower bound)."""
        ...

    def gte(self, field: str, value: Any) -> Self:
        """``field >= value`` (the lower bound)."""
        ...

    def lt(self, field: str, value: Any) -> Self:
        """``field < value`` (the upper bound)."""
        ...

    def lte(self, field: str, value: Any) -> Self:
        """``field <= value`` (the upper bound)."""
        ...


@runtime_checkable
class Query(Protocol):
    """A lazily built query over one table; nothing is read until a terminal method is awaited."""

    def with_index(self, name: str, range: Callable[[RangeBuilder], RangeBuilder] | None = None) -> Self:
        """Read through index ``name``, optionally limited to a range built by ``range(q)``."""
        ...

    def order(self, order: Order) -> Self:
        """``"asc"`` (default) or ``"desc"``."""
        ...

    def filter(self, predicate: Callable[[Document], bool]) -> Self:
        """Keep documents for which ``predicate(doc)`` is true (filtered-out ones still count as scanned)."""
        ...

    async def collect(self) -> list[Document]:
        """Every matching document."""
        ...

    async def take(self, n: int) -> list[Document]:
        """The first ``n`` matching documents."""
        ...

    async def first(self) -> Document | None:
        """The first matching document, or None."""
        ...

    async def unique(self) -> Document | None:
        """The only matching document, or None; more than one is a ValidationError."""
        ...

    async def paginate(self, cursor: str | None = None, num_items: int = 100) -> Page:
        """One page; pass ``continue_cursor`` back for the next one."""
        ...

    def __aiter__(self) -> AsyncIterator[Document]:
        """``async for doc in ctx.db.query(...)``: every matching document."""
        ...


@runtime_checkable
class SystemReader(Protocol):
    """``ctx.db.system``: this mount's system tables (``_scheduled``: its jobs; ``_crons``: its crons)."""

    async def get(self, id: str) -> Document | None:
        """A system document (e.g. a job, by the Id ``run_after`` returned) of this mount, or None."""
        ...

    def query(self, table: str) -> Query:
        """Query a system table; ``_scheduled`` has the index ``by_state`` (``state``, ``scheduled_time``)."""
        ...


@runtime_checkable
class DatabaseReader(Protocol):
    """``ctx.db`` of a query: this mount's tables, read at the transaction's snapshot."""

    @property
    def system(self) -> SystemReader:
        """This mount's system tables."""
        ...

    async def get(self, id: str) -> Document | None:
        """The document with this Id, or None.  An Id of another mount is refused."""
        ...

    def query(self, table: str) -> Query:
        """Start a query over one of this mount's tables."""
        ...

    async def table_of(self, id: str) -> str | None:
        """The name of the table document ``id`` is in, or None if there is no such document."""
        ...


@runtime_checkable
class DatabaseWriter(DatabaseReader, Protocol):
    """``ctx.db`` of a mutation: reads, and writes validated against the table's model."""

    async def insert(self, table: str, doc: dict[str, Any]) -> str:
        """Validate and insert a document; return its Id."""
        ...

    async def patch(self, id: str, fields: dict[str, Any]) -> None:
        """Shallow-merge ``fields`` into a document (the result must match the schema)."""
        ...

    async def replace(self, id: str, doc: dict[str, Any]) -> None:
        """Replace a document's fields entirely."""
        ...

    async def delete(self, id: str) -> None:
        """Delete a document."""
        ...


@runtime_checkable
class Scheduler(Protocol):
    """``ctx.scheduler`` of mutations and actions; each method returns the job's Id in ``_scheduled``.

    From a mutation, scheduling is part of the transaction: if it rolls back,
    nothing is scheduled.  From an action, the job is scheduled at once.
    """

    @overload
    async def run_after(self, seconds: float, ref: FunctionRef[_P, Any], /,
                        *args: _P.args, **kwargs: _P.kwargs) -> str: ...
    @overload
    async def run_after(self, seconds: float, ref: str, /, **kwargs: Any) -> str: ...
    async def run_after(self, seconds: float, ref: Any, /, *args: Any, **kwargs: Any) -> str:
        """Run a mutation or action ``seconds`` from now (0: as soon as this transaction commits)."""
        ...

    @overload
    async def run_at(self, timestamp: float | datetime, ref: FunctionRef[_P, Any], /,
                     *args: _P.args, **kwargs: _P.kwargs) -> str: ...
    @overload
    async def run_at(self, timestamp: float | datetime, ref: str, /, **kwargs: Any) -> str: ...
    async def run_at(self, timestamp: float | datetime, ref: Any, /, *args: Any, **kwargs: Any) -> str:
        """Run a mutation or action at ``timestamp`` (seconds since the epoch, or an aware ``datetime``)."""
        ...

    async def cancel(self, job_id: str) -> None:
        """Cancel a pending job (an action already running keeps running)."""
        ...


@runtime_checkable
class StorageReader(Protocol):
    """``ctx.storage`` of a query: URLs of this mount's files."""

    async def get_url(self, storage_id: str) -> str | None:
        """A bearer URL serving the file (valid until it is deleted), or None if there is no such file."""
        ...


@runtime_checkable
class StorageWriter(StorageReader, Protocol):
    """``ctx.storage`` of a mutation: also upload URLs and deletion."""

    async def generate_upload_url(self) -> str:
        """A URL to POST a file's bytes to (it answers ``{"storage_id": ...}``); it expires."""
        ...

    async def delete(self, storage_id: str) -> None:
        """Delete a file of this mount (its URL stops working)."""
        ...


@runtime_checkable
class StorageActionWriter(StorageWriter, Protocol):
    """``ctx.storage`` of an action: also store and read bytes."""

    async def store(self, data: bytes, content_type: str | None = None) -> str:
        """Store bytes as a file of this mount; return its storage id."""
        ...

    async def get(self, storage_id: str) -> bytes | None:
        """The file's bytes, or None if there is no such file."""
        ...


@runtime_checkable
class Log(Protocol):
    """``ctx.log``: ``ctx.log("x", 1)`` or ``ctx.log.info("x %s", 1)``; lines land in ``bulkhead logs``."""

    def __call__(self, *parts: object) -> None:
        """Log ``parts`` joined by spaces, at level INFO."""
        ...

    def debug(self, msg: object, *args: object) -> None:
        """Log at level DEBUG (``%``-style ``args``)."""
        ...

    def info(self, msg: object, *args: object) -> None:
        """Log at level INFO."""
        ...

    def warning(self, msg: object, *args: object) -> None:
        """Log at level WARNING."""
        ...

    def error(self, msg: object, *args: object) -> None:
        """Log at level ERROR."""
        ...

    def exception(self, msg: object, *args: object) -> None:
        """Log at level ERROR with the exception being handled."""
        ...

    def critical(self, msg: object, *args: object) -> None:
        """Log at level CRITICAL."""
        ...


if TYPE_CHECKING:
    _ProtocolMeta = ABCMeta
else:
    _ProtocolMeta = type(Protocol)

_CTX_KINDS: dict[type, frozenset[str]] = {}
"""Ctx protocol -> the kinds of function whose ctx it is (filled in below each protocol)."""


class _CtxMeta(_ProtocolMeta):
    """``isinstance(ctx, P)`` for the ctx protocols: by the running function's kind (``ctx.kind``)."""

    def __instancecheck__(cls, instance: Any) -> bool:
        kinds = _CTX_KINDS.get(cls)
        kind = getattr(instance, "kind", None)
        if kinds is not None and isinstance(kind, str):
            return kind in kinds
        return super().__instancecheck__(instance)


@runtime_checkable
class RunQueryCtx(Protocol, metaclass=_CtxMeta):
    """Any ctx that runs queries: every kind of function (what a client wrapper's reads take)."""

    @overload
    async def run_query(self, ref: FunctionRef[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> _R: ...
    @overload
    async def run_query(self, ref: str, /, **kwargs: Any) -> Any: ...
    async def run_query(self, ref: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Run a query: in this transaction (queries, mutations) or as its own (actions)."""
        ...


@runtime_checkable
class RunMutationCtx(RunQueryCtx, Protocol):
    """A ctx that runs mutations too: mutations and actions (what a client wrapper's writes take)."""

    @overload
    async def run_mutation(self, ref: FunctionRef[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> _R: ...
    @overload
    async def run_mutation(self, ref: str, /, **kwargs: Any) -> Any: ...
    async def run_mutation(self, ref: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Run a mutation: a sub-transaction from a mutation (its writes alone roll back if it raises),
        a transaction of its own from an action."""
        ...


@runtime_checkable
class RunActionCtx(RunMutationCtx, Protocol):
    """A ctx that runs actions too: an action's."""

    @overload
    async def run_action(self, ref: FunctionRef[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> _R: ...
    @overload
    async def run_action(self, ref: str, /, **kwargs: Any) -> Any: ...
    async def run_action(self, ref: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Run another action."""
        ...


class _FunctionCtx(RunQueryCtx, Protocol):
    """What the ctx of every kind of function has."""

    @property
    def random(self) -> Random:
        """Seeded per transaction in queries and mutations: deterministic across retries."""
        ...

    @property
    def env(self) -> Mapping[str, str]:
        """This mount's environment variables only."""
        ...

    @property
    def log(self) -> Log:
        """This invocation's log (``print`` and ``logging`` land there too)."""
        ...

    def now(self) -> float:
        """Seconds since the epoch; frozen at the start of the top-level call in queries and mutations."""
        ...

    async def function_handle(self, ref: FunctionRef[..., Any]) -> str:
        """A handle string naming one of this mount's functions, to pass to another mount."""
        ...


@runtime_checkable
class QueryCtx(_FunctionCtx, Protocol):
    """The ctx of a query: read this mount's tables and files, run queries."""

    @property
    def db(self) -> DatabaseReader:
        """This mount's tables, read-only."""
        ...

    @property
    def storage(self) -> StorageReader:
        """This mount's files: URLs only."""
        ...


@runtime_checkable
class MutationCtx(QueryCtx, RunMutationCtx, Protocol):
    """The ctx of a mutation: a serializable transaction over this mount's tables."""

    @property
    def db(self) -> DatabaseWriter:
        """This mount's tables, read-write."""
        ...

    @property
    def storage(self) -> StorageWriter:
        """This mount's files: URLs, upload URLs, deletion."""
        ...

    @property
    def scheduler(self) -> Scheduler:
        """Schedule mutations and actions (transactionally)."""
        ...


@runtime_checkable
class ActionCtx(_FunctionCtx, RunActionCtx, Protocol):
    """The ctx of an action: no ``db``; each run_query/run_mutation is a transaction of its own."""

    @property
    def storage(self) -> StorageActionWriter:
        """This mount's files: store and read bytes too."""
        ...

    @property
    def scheduler(self) -> Scheduler:
        """Schedule mutations and actions (at once)."""
        ...


_CTX_KINDS.update({
    RunQueryCtx: frozenset(KINDS), RunMutationCtx: frozenset({"mutation", "action"}),
    RunActionCtx: frozenset({"action"}), QueryCtx: frozenset({"query"}), MutationCtx: frozenset({"mutation"}),
    ActionCtx: frozenset({"action"}),
})
