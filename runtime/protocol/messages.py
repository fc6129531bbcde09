"""Frame types.  Every frame is a msgpack map decoded, in one pass, into one of these.

Frames are frozen :class:`msgspec.Struct`\\ s told apart by their ``type`` tag
(the ``MessageType`` value, encoded first).  The annotations are the wire
contract: :mod:`runtime.protocol.codec` builds one ``msgspec.msgpack.Decoder``
over :data:`Message`, which refuses unknown fields, wrong types, out-of-range
integers and too-long strings and lists while it decodes.  What msgspec does
not check inside ``Any``-typed payloads (nesting depth, map keys, element
counts) the codec checks right after, over those fields only.

Only msgpack primitives travel: Ids are strings, errors are their
:meth:`~runtime.errors.BulkheadError.to_wire` dicts.  Constraints are checked
when a frame is *decoded*, not when it is built: a sender that builds a bad
frame learns it from the receiver's :class:`~runtime.errors.ProtocolError`.

Adding a field is one annotated line with a default (older senders omit it);
the codec finds any ``Any`` inside it by itself.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from runtime.limits import (
    WIRE_BUFFERED_WRITES_MAX,
    WIRE_CACHED_READS_MAX,
    WIRE_LOG_BATCH_MAX,
    WIRE_LOG_LINES_MAX,
    WIRE_NAME_MAX,
)
from runtime.values import INT64_MAX, MAX_CONTAINER_ITEMS

PROTOCOL_VERSION: Literal[1] = 1

MAX_BUFFERED_WRITES = WIRE_BUFFERED_WRITES_MAX
"""Writes (``replace``, ``delete``) a worker may buffer and ship with its next syscall or its result."""


class MessageType(StrEnum):
    """The kinds of frame (each is the ``type`` tag of one frame class)."""

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


HELLO_PROOF_MAX = 64
"""The longest :attr:`Hello.proof` (the secret is 32 url-safe characters)."""


# --- field types ---------------------------------------------------------------------------------

Version = Annotated[int, Meta(ge=PROTOCOL_VERSION, le=PROTOCOL_VERSION)]
"""The protocol version; a frame of any other version is refused."""
RequestId = Annotated[int, Meta(ge=0, le=INT64_MAX)]
"""Correlates a reply with its request: a non-negative 63-bit integer."""
Count = Annotated[int, Meta(ge=0)]
"""A non-negative integer (up to 2**64 - 1, msgpack's own bound)."""
Token = Annotated[str, Meta(min_length=1, max_length=128)]
"""A capability token of one invocation."""
Name = Annotated[str, Meta(min_length=1, max_length=WIRE_NAME_MAX)]
"""A function name as a worker knows it."""
FunctionRef = Annotated[str, Meta(min_length=1, max_length=512)]
"""A function as clients name it: ``name``, ``module:name`` or ``mount/path:name``."""
Auth = Annotated[str, Meta(max_length=WIRE_NAME_MAX)]
"""The admin key, for internal and component functions."""
Args = dict[str, Any]
"""Keyword arguments (or a syscall's arguments) as a map."""
ErrorWire = dict[str, Any]
"""A :meth:`~runtime.errors.BulkheadError.to_wire` dict."""
Writes = Annotated[list[tuple[str, dict[str, Any]]], Meta(max_length=MAX_BUFFERED_WRITES)]
"""Buffered ``(op, args)`` writes; decoded as a list of tuples."""
CachedReads = Annotated[list[tuple[int, bytes, bytes, int, int]], Meta(max_length=WIRE_CACHED_READS_MAX)]
"""Reads a worker answered from its cache, each ``(index number, lo, hi, documents, bytes)`` as the coordinator
reported it when it answered the read: they join the read set (see :mod:`sandbox.readcache`)."""
Announced = list[tuple[int, list[tuple[int, list[bytes]]]]]
"""``(ts, [(index number, written keys)])`` of commits that wrote a mount's indexes, oldest first."""


class Frame(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True,
            tag_field="type"):
    """Fields every frame has.  Subclasses set ``tag`` (the wire) and ``type`` (for readers)."""

    type: ClassVar[MessageType]
    """The frame's kind (the value of its ``type`` tag on the wire)."""
    version: Version = PROTOCOL_VERSION
    request_id: RequestId


class Call(Frame, tag=MessageType.CALL.value, frozen=True, kw_only=True):
    """Run ``function`` (``name``, ``module:name`` or ``mount/path:name``) with keyword ``args``."""

    type: ClassVar[MessageType] = MessageType.CALL
    function: FunctionRef
    args: Args = {}
    kind: Literal["query", "mutation", "action"] | None = None
    session: Annotated[str, Meta(max_length=128)] | None = None
    """Client session id: with ``request_id`` it makes a mutation idempotent."""
    auth: Auth | None = None
    """The admin key, for internal and component functions."""


class Result(Frame, tag=MessageType.RESULT.value, frozen=True, kw_only=True):
    """Outcome of a call, syscall or invocation: exactly one of ``value`` and ``error``."""

    type: ClassVar[MessageType] = MessageType.RESULT
    ok: bool
    value: Any = None
    error: ErrorWire | None = None
    commit_ts: int | None = None
    logs: Annotated[list[str], Meta(max_length=WIRE_LOG_LINES_MAX)] = []
    """Lines the invocation printed or logged (worker -> coordinator only)."""
    dropped: Count = 0
    writes: Writes = []
    """Writes the invocation buffered, applied before its result counts (worker -> coordinator only)."""
    reads: CachedReads = []
    """Reads the invocation answered from its worker's cache since its last syscall (worker -> coordinator)."""


class Syscall(Frame, tag=MessageType.SYSCALL.value, frozen=True, kw_only=True):
    """A worker's request made with the capability ``token`` of its current invocation."""

    type: ClassVar[MessageType] = MessageType.SYSCALL
    token: Token
    op: Annotated[str, Meta(min_length=1, max_length=64)]
    args: Args = {}
    pre: Writes = []
    """Writes the invocation buffered since its last syscall, applied (in order) before ``op``."""
    reads: CachedReads = []
    """Reads answered from the worker's cache since the last syscall, recorded before ``op`` runs."""


class SyscallResult(Frame, tag=MessageType.SYSCALL_RESULT.value, frozen=True, kw_only=True):
    """Reply to a syscall."""

    type: ClassVar[MessageType] = MessageType.SYSCALL_RESULT
    ok: bool
    value: Any = None
    error: ErrorWire | None = None


class Invoke(Frame, tag=MessageType.INVOKE.value, frozen=True, kw_only=True):
    """The coordinator asks a worker to run ``function`` of its mount."""

    type: ClassVar[MessageType] = MessageType.INVOKE
    token: Token
    function: Name
    kind: Literal["query", "mutation", "action", "system"]
    args: Args = {}
    now: float
    seed: Count
    """Seeds the invocation's ``ctx.random`` (below 2**64)."""
    ts: Count | None = None
    """The snapshot the invocation reads at, when its reads may be answered from the worker's cache (None:
    the transaction already wrote, or there is none)."""
    commits: Announced = []
    """Commits that wrote this mount's indexes since the last invoke to this worker (the worker's cache)."""
    lost_through: Count = 0
    """Nonzero: announcements of commits up to this timestamp were dropped; the worker drops its cache."""
    tables: dict[str, int] | None = None
    """The mount's table numbers, with the first invoke a worker gets: it mints its inserts' Ids with them."""


class Log(Frame, tag=MessageType.LOG.value, frozen=True, kw_only=True):
    """Captured output of one invocation."""

    type: ClassVar[MessageType] = MessageType.LOG
    token: Token
    lines: Annotated[list[str], Meta(max_length=WIRE_LOG_BATCH_MAX)]
    dropped: Count = 0


class Hello(Frame, tag=MessageType.HELLO.value, frozen=True, kw_only=True):
    """A worker's first frame: its manifest, or the error that stopped its code from loading."""

    type: ClassVar[MessageType] = MessageType.HELLO
    manifest: dict[str, Any] | None = None
    error: ErrorWire | None = None
    layers: Annotated[dict[str, str], Meta(max_length=MAX_CONTAINER_ITEMS)] = {}
    """Each isolation layer of the worker: ``"on: ..."`` or ``"off: why"``."""
    proof: Annotated[str, Meta(max_length=HELLO_PROOF_MAX)] | None = None
    """The one-time secret the supervisor handed this worker on its stdin: the Hello comes from the process
    it spawned, not from whoever connected to the socket first.  A Hello without it is refused."""


class Admin(Frame, tag=MessageType.ADMIN.value, frozen=True, kw_only=True):
    """An operation on the daemon itself, authorised by the admin key."""

    type: ClassVar[MessageType] = MessageType.ADMIN
    op: Literal["ping", "status", "deploy", "data", "logs", "stop", "clock", "env"]
    args: Args = {}
    auth: Auth | None = None


class Subscribe(Frame, tag=MessageType.SUBSCRIBE.value, frozen=True, kw_only=True):
    """Subscribe to a query (``function`` and ``args``) as ``sub``; ``function=None`` unsubscribes ``sub``."""

    type: ClassVar[MessageType] = MessageType.SUBSCRIBE
    sub: RequestId
    function: FunctionRef | None = None
    args: Args = {}
    auth: Auth | None = None


class Update(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """One subscription's new value (``ok``) or error inside a transition."""

    sub: RequestId
    ok: bool
    value: Any = None
    error: ErrorWire | None = None


class Transition(Frame, tag=MessageType.TRANSITION.value, frozen=True, kw_only=True):
    """Every subscription of one client now reflects commit ``ts``; ``updates`` lists the ones that changed."""

    type: ClassVar[MessageType] = MessageType.TRANSITION
    ts: Count
    updates: Annotated[list[Update], Meta(max_length=MAX_CONTAINER_ITEMS)] = []


Message = Call | Result | Syscall | SyscallResult | Invoke | Log | Hello | Admin | Subscribe | Transition
"""Any frame, told apart by its ``type`` tag."""
