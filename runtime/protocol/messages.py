"""Frame models.  Every frame is a msgpack map validated into one of these.

Only msgpack primitives travel: Ids are strings, errors are their
:meth:`~runtime.errors.BulkheadError.to_wire` dicts.  Unknown fields are
refused (``extra="forbid"``) so a typo on either side fails loudly.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from runtime.limits import WIRE_BUFFERED_WRITES_MAX, WIRE_CACHED_READS_MAX, WIRE_LOG_BATCH_MAX, WIRE_LOG_LINES_MAX, WIRE_NAME_MAX

PROTOCOL_VERSION: Literal[1] = 1

MAX_BUFFERED_WRITES = WIRE_BUFFERED_WRITES_MAX
"""Writes (``replace``, ``delete``) a worker may buffer and ship with its next syscall or its result."""


class MessageType(StrEnum):
    """The kinds of frame."""

    CALL = "call"
    """Client or worker asks the coordinator to run a function."""
    RESULT = "result"
    """Reply to a call: a value or an error."""
    SYSCALL = "syscall"
    """Worker asks the coordinator for a database/scheduler/storage operation."""
    SYSCALL_RESULT = "syscall_result"
    """Reply to a syscall."""
    INVOKE = "invoke"
    """Coordinator asks a worker to run one of its functions."""
    LOG = "log"
    """Worker ships captured log lines of an invocation."""
    HELLO = "hello"
    """A worker's first frame: the manifest of the definition it loaded (or its load error)."""
    ADMIN = "admin"
    """CLI or admin client asks the coordinator for an operation (deploy, status, data, logs, stop)."""
    SUBSCRIBE = "subscribe"
    """Client adds a query to its subscription set (or removes one: ``function`` None)."""
    TRANSITION = "transition"
    """Coordinator pushes the changed values of a client's subscriptions, all at one commit timestamp."""


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = PROTOCOL_VERSION
    request_id: int = Field(ge=0, lt=2**63)


class Call(_Frame):
    """Run ``function`` (``name``, ``module:name`` or ``mount/path:name``) with keyword ``args``."""

    type: Literal[MessageType.CALL] = MessageType.CALL
    function: str = Field(min_length=1, max_length=512)
    args: dict[str, Any] = Field(default_factory=dict)
    kind: Literal["query", "mutation", "action"] | None = None
    session: str | None = Field(default=None, max_length=128)
    """Client session id: with ``request_id`` it makes a mutation idempotent."""
    auth: str | None = Field(default=None, max_length=WIRE_NAME_MAX)
    """The admin key, for internal and component functions."""


class Result(_Frame):
    """Outcome of a call, syscall or invocation: exactly one of ``value`` and ``error``."""

    type: Literal[MessageType.RESULT] = MessageType.RESULT
    ok: bool
    value: Any = None
    error: dict[str, Any] | None = None
    commit_ts: int | None = None
    logs: list[str] = Field(default_factory=list, max_length=WIRE_LOG_LINES_MAX)
    """Lines the invocation printed or logged (worker -> coordinator only)."""
    dropped: int = Field(default=0, ge=0)
    writes: list[tuple[str, dict[str, Any]]] = Field(default_factory=list, max_length=MAX_BUFFERED_WRITES)
    """Writes the invocation buffered, applied before its result counts (worker -> coordinator only)."""
    reads: list[tuple[int, bytes, bytes, int, int]] = Field(default_factory=list, max_length=WIRE_CACHED_READS_MAX)
    """Reads the worker answered from its cache since its last syscall, each ``(index number, lo, hi, documents,
    bytes)`` as the coordinator reported it when it answered: they join the read set."""


class Syscall(_Frame):
    """A worker's request made with the capability ``token`` of its current invocation."""

    type: Literal[MessageType.SYSCALL] = MessageType.SYSCALL
    token: str = Field(min_length=1, max_length=128)
    op: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)
    pre: list[tuple[str, dict[str, Any]]] = Field(default_factory=list, max_length=MAX_BUFFERED_WRITES)
    """Writes the invocation buffered since its last syscall, applied (in order) before ``op``."""
    reads: list[tuple[int, bytes, bytes, int, int]] = Field(default_factory=list, max_length=WIRE_CACHED_READS_MAX)
    """Reads answered from the worker's cache since the last syscall (see :class:`Result`)."""


class SyscallResult(_Frame):
    """Reply to a syscall."""

    type: Literal[MessageType.SYSCALL_RESULT] = MessageType.SYSCALL_RESULT
    ok: bool
    value: Any = None
    error: dict[str, Any] | None = None


class Invoke(_Frame):
    """The coordinator asks a worker to run ``function`` of its mount."""

    type: Literal[MessageType.INVOKE] = MessageType.INVOKE
    token: str = Field(min_length=1, max_length=128)
    function: str = Field(min_length=1, max_length=WIRE_NAME_MAX)
    kind: Literal["query", "mutation", "action", "system"]
    args: dict[str, Any] = Field(default_factory=dict)
    now: float
    seed: int = Field(ge=0, lt=2**64)
    ts: int | None = Field(default=None, ge=0)
    """The snapshot the invocation reads at, when its reads by Id may come from the worker's cache (else None:
    the transaction already wrote, or there is none)."""
    commits: list[tuple[int, list[tuple[int, list[bytes]]]]] = Field(default_factory=list)
    """``(ts, [(index number, written keys)])`` of commits that wrote this mount's indexes since the last
    invoke to this worker (oldest first)."""
    lost_through: int = Field(default=0, ge=0)
    """Nonzero: announcements of commits up to this timestamp were dropped; the worker drops its cache."""
    tables: dict[str, int] | None = None
    """The mount's table numbers, with the first invoke a worker gets: it mints its inserts' Ids with them."""


class Log(_Frame):
    """Captured output of one invocation."""

    type: Literal[MessageType.LOG] = MessageType.LOG
    token: str = Field(min_length=1, max_length=128)
    lines: list[str] = Field(max_length=WIRE_LOG_BATCH_MAX)
    dropped: int = Field(default=0, ge=0)


class Hello(_Frame):
    """A worker's first frame: its manifest, or the error that stopped its code from loading."""

    type: Literal[MessageType.HELLO] = MessageType.HELLO
    manifest: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    layers: dict[str, str] = Field(default_factory=dict)
    """Each isolation layer of the worker: ``"on: ..."`` or ``"off: why"``."""


class Admin(_Frame):
    """An operation on the daemon itself, authorised by the admin key."""

    type: Literal[MessageType.ADMIN] = MessageType.ADMIN
    op: Literal["ping", "status", "deploy", "data", "logs", "stop", "clock"]
    args: dict[str, Any] = Field(default_factory=dict)
    auth: str | None = Field(default=None, max_length=WIRE_NAME_MAX)


class Subscribe(_Frame):
    """Subscribe to a query (``function`` and ``args``) as ``sub``; ``function=None`` unsubscribes ``sub``."""

    type: Literal[MessageType.SUBSCRIBE] = MessageType.SUBSCRIBE
    sub: int = Field(ge=0, lt=2**63)
    function: str | None = Field(default=None, min_length=1, max_length=512)
    args: dict[str, Any] = Field(default_factory=dict)
    auth: str | None = Field(default=None, max_length=WIRE_NAME_MAX)


class Update(BaseModel):
    """One subscription's new value (``ok``) or error inside a transition."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sub: int = Field(ge=0, lt=2**63)
    ok: bool
    value: Any = None
    error: dict[str, Any] | None = None


class Transition(_Frame):
    """Every subscription of one client now reflects commit ``ts``; ``updates`` lists the ones that changed."""

    type: Literal[MessageType.TRANSITION] = MessageType.TRANSITION
    ts: int = Field(ge=0)
    updates: list[Update] = Field(default_factory=list)


Message = Annotated[
    Call | Result | Syscall | SyscallResult | Invoke | Log | Hello | Admin | Subscribe | Transition,
    Field(discriminator="type"),
]
"""Any frame, told apart by its ``type``."""

MESSAGE_ADAPTER: TypeAdapter[Any] = TypeAdapter(Message)
