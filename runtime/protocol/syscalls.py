"""The arguments of every syscall, one frozen model per operation.

A worker's :class:`~runtime.protocol.messages.Syscall` frame carries ``op`` and
``args`` as plain msgpack data; :func:`parse_args` turns them into the model
of that operation, or raises :class:`~runtime.errors.ValidationError` naming
the operation and every bad field.  The fields are exactly what the worker's
ctx (:mod:`sandbox.ctx`) sends today, in the same order, so
``values.pack(parse_args(op, args).model_dump())`` is the bytes that came in.

Values that belong to user code stay free-form: documents (``doc``) are
checked against the table's JSON schema by the coordinator, and the
arguments of a call (``args``) by the callee's own pydantic models.  Which
kinds of function may issue which operation is the kernel's business, not
this module's.

Examples:
    >>> parse_args("get", {"id": "abc"})
    GetArgs(id='abc')
    >>> parse_args("get", {"id": 5})
    Traceback (most recent call last):
    ...
    runtime.errors.ValidationError: malformed 'get' syscall: id: Input should be a valid string
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, cast

from pydantic import Field, Strict

from runtime.errors import ValidationError
from runtime.protocol.deploy import RefHandle, RefPath, RefWire, WireModel, issues_of, validate

__all__ = [
    "ARGS_MODEL", "BUFFERABLE", "BufferedWrite", "CallKind", "CancelArgs", "DeleteArgs", "FlushArgs", "GetArgs",
    "HandleArgs", "InsertArgs", "Order", "PaginateArgs", "RangeOp", "RefHandle", "RefPath", "RefWire", "ReplaceArgs",
    "RunArgs", "ScanArgs", "ScheduleArgs", "StorageDeleteArgs", "StorageGetArgs", "StorageStoreArgs",
    "StorageUploadUrlArgs", "StorageUrlArgs", "SyscallArgs", "SyscallOp", "issues_of", "parse_args", "parse_buffered",
]


class SyscallOp(StrEnum):
    """Every operation a worker may ask of the coordinator (``Syscall.op``)."""

    GET = "get"
    """Read one document by Id: ``{"doc", "table"}``."""
    SCAN = "scan"
    """Read a range of an index: ``{"docs", "last", "done"}``."""
    PAGINATE = "paginate"
    """Read one page of an index range: ``{"page", "is_done", "continue_cursor"}``."""
    INSERT = "insert"
    """Insert a document; the reply is its Id."""
    REPLACE = "replace"
    """Replace a document's fields.  Today always buffered (``pre``, ``writes``): the ctx replaces only
    documents it has just read."""
    DELETE = "delete"
    """Delete a document: buffered when the invocation has seen it, else sent at once."""
    FLUSH = "flush"
    """Nothing but the buffered writes in ``pre``: they are applied, then acknowledged."""
    HANDLE = "handle"
    """A handle string for one of the calling mount's own functions."""
    RUN = "run"
    """A nested call: ``ctx.run_query`` / ``run_mutation`` / ``run_action``."""
    SCHEDULE = "schedule"
    """``ctx.scheduler.run_at`` (``run_after`` sends the absolute time too); the reply is the job's Id."""
    CANCEL = "cancel"
    """``ctx.scheduler.cancel``."""
    STORAGE_URL = "storage_url"
    """``ctx.storage.get_url``."""
    STORAGE_UPLOAD_URL = "storage_upload_url"
    """``ctx.storage.generate_upload_url``."""
    STORAGE_DELETE = "storage_delete"
    """``ctx.storage.delete``."""
    STORAGE_STORE = "storage_store"
    """``ctx.storage.store`` (actions)."""
    STORAGE_GET = "storage_get"
    """``ctx.storage.get`` (actions)."""


Order = Literal["asc", "desc"]
"""The direction of a scan or page."""

CallKind = Literal["query", "mutation", "action"]
"""The kind of function a nested call expects its target to be."""

RangeOp = Annotated[tuple[Literal["eq", "gt", "gte", "lt", "lte"], str, Any], Strict(False)]
"""One operator of an index range, ``[op, field, value]`` as ``RangeBuilder`` records it.

Not strict, so the msgpack array (a list) is accepted as the tuple; its parts
keep their exact types all the same (pydantic never turns a number into a str).
"""


class _Args(WireModel):
    op: ClassVar[SyscallOp]
    """The operation these are the arguments of."""


class GetArgs(_Args):
    """``ctx.db.get(id)``, and the read behind ``patch``/``replace`` of a document not seen yet."""

    op: ClassVar[SyscallOp] = SyscallOp.GET
    id: str


class ScanArgs(_Args):
    """A batch of a query's index range (``collect``, ``take``, ``first``, ``unique``, iteration)."""

    op: ClassVar[SyscallOp] = SyscallOp.SCAN
    table: str
    index: str
    range: list[RangeOp]
    order: Order
    limit: int = Field(ge=0)
    """Documents wanted; ``0`` means the whole range (see :attr:`max_docs`)."""
    after: bytes | None
    """The ``last`` of the previous batch, to continue after it."""

    @property
    def max_docs(self) -> int | None:
        """``limit``, with ``None`` for the whole range."""
        return self.limit or None


class PaginateArgs(_Args):
    """``query.paginate(cursor, num_items)``."""

    op: ClassVar[SyscallOp] = SyscallOp.PAGINATE
    table: str
    index: str
    range: list[RangeOp]
    order: Order
    cursor: str | None
    num_items: int
    """Checked against ``page_size_items`` by the transaction."""


class InsertArgs(_Args):
    """``ctx.db.insert(table, doc)``; ``doc`` was validated by the worker, and is again by the coordinator."""

    op: ClassVar[SyscallOp] = SyscallOp.INSERT
    table: str
    doc: dict[str, Any]
    id: str | None = Field(default=None, max_length=64)
    """The new document's Id, minted by the worker (buffered inserts); None: the coordinator mints it."""


class ReplaceArgs(_Args):
    """``ctx.db.replace`` and ``ctx.db.patch`` (the merged document)."""

    op: ClassVar[SyscallOp] = SyscallOp.REPLACE
    id: str
    doc: dict[str, Any]


class DeleteArgs(_Args):
    """``ctx.db.delete(id)``."""

    op: ClassVar[SyscallOp] = SyscallOp.DELETE
    id: str


class FlushArgs(_Args):
    """No arguments: the frame's ``pre`` is the point."""

    op: ClassVar[SyscallOp] = SyscallOp.FLUSH


class HandleArgs(_Args):
    """``ctx.function_handle(ref)``: always a reference by path (a handle of a handle makes no sense)."""

    op: ClassVar[SyscallOp] = SyscallOp.HANDLE
    ref: RefPath


class RunArgs(_Args):
    """``ctx.run_query`` / ``run_mutation`` / ``run_action``."""

    op: ClassVar[SyscallOp] = SyscallOp.RUN
    ref: RefWire
    kind: CallKind
    args: dict[str, Any]
    """The callee's keyword arguments: user values, validated by the callee's own models."""


class ScheduleArgs(_Args):
    """``ctx.scheduler.run_at`` / ``run_after``."""

    op: ClassVar[SyscallOp] = SyscallOp.SCHEDULE
    ref: RefWire
    at: float = Field(allow_inf_nan=False)
    """Seconds since the epoch (``run_after`` adds its delay to ``ctx.now()`` in the worker)."""
    args: dict[str, Any]
    """The job's keyword arguments: user values, validated by the target when it runs."""


class CancelArgs(_Args):
    """``ctx.scheduler.cancel(job_id)``."""

    op: ClassVar[SyscallOp] = SyscallOp.CANCEL
    id: str


class StorageUrlArgs(_Args):
    """``ctx.storage.get_url(storage_id)``."""

    op: ClassVar[SyscallOp] = SyscallOp.STORAGE_URL
    id: str


class StorageUploadUrlArgs(_Args):
    """``ctx.storage.generate_upload_url()``: no arguments."""

    op: ClassVar[SyscallOp] = SyscallOp.STORAGE_UPLOAD_URL


class StorageDeleteArgs(_Args):
    """``ctx.storage.delete(storage_id)``."""

    op: ClassVar[SyscallOp] = SyscallOp.STORAGE_DELETE
    id: str


class StorageStoreArgs(_Args):
    """``ctx.storage.store(data, content_type)``."""

    op: ClassVar[SyscallOp] = SyscallOp.STORAGE_STORE
    data: bytes
    content_type: str | None


class StorageGetArgs(_Args):
    """``ctx.storage.get(storage_id)``."""

    op: ClassVar[SyscallOp] = SyscallOp.STORAGE_GET
    id: str


SyscallArgs = (
    GetArgs | ScanArgs | PaginateArgs | InsertArgs | ReplaceArgs | DeleteArgs | FlushArgs | HandleArgs | RunArgs
    | ScheduleArgs | CancelArgs | StorageUrlArgs | StorageUploadUrlArgs | StorageDeleteArgs | StorageStoreArgs
    | StorageGetArgs
)
"""The arguments of any syscall: ``match`` on the class (mypy checks the cases are exhaustive)."""

BufferedWrite = InsertArgs | ReplaceArgs | DeleteArgs
"""A write a worker may buffer and ship in ``Syscall.pre`` or ``Result.writes``."""

ARGS_MODEL: dict[SyscallOp, type[_Args]] = {
    model.op: model
    for model in (GetArgs, ScanArgs, PaginateArgs, InsertArgs, ReplaceArgs, DeleteArgs, FlushArgs, HandleArgs,
                  RunArgs, ScheduleArgs, CancelArgs, StorageUrlArgs, StorageUploadUrlArgs, StorageDeleteArgs,
                  StorageStoreArgs, StorageGetArgs)
}
"""The arguments model of each operation."""

BUFFERABLE = frozenset({SyscallOp.INSERT, SyscallOp.REPLACE, SyscallOp.DELETE})
"""The operations a worker may buffer (see :data:`BufferedWrite`)."""


def parse_args(op: str, args: object) -> SyscallArgs:
    """The arguments of syscall ``op`` as its model.

    Raises:
        ValidationError: ``op`` is no syscall (``"unknown syscall 'xyz'"``), or ``args``
            do not match its model (``"malformed 'get' syscall: id: ..."``, every bad field
            in ``issues``).
    """
    try:
        key = SyscallOp(op)
    except ValueError:
        raise ValidationError(f"unknown syscall {str(op)[:64]!r}") from None
    return cast(SyscallArgs, validate(ARGS_MODEL[key], args, f"malformed {key.value!r} syscall"))


def parse_buffered(op: str, args: object) -> BufferedWrite:
    """One buffered write of ``Syscall.pre`` or ``Result.writes`` as its model.

    Raises:
        ValidationError: ``op`` may not be buffered, or ``args`` do not match its model.
    """
    if op not in BUFFERABLE:
        raise ValidationError(f"only insert, replace and delete may be buffered, not {str(op)[:64]!r}")
    key = SyscallOp(op)
    return cast(BufferedWrite, validate(ARGS_MODEL[key], args, f"malformed buffered {key.value!r}"))
