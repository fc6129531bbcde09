"""The whole exception tree of Bulkhead.

::

    BulkheadError                      code            raised when
    ├── ComponentError(data)           component_error user code raised it on purpose; ``data`` crosses every boundary
    ├── ValidationError(issues)        invalid_value   an argument, return value or document is not valid
    ├── LimitExceeded(limit, ...)      limit_exceeded  a limit of ``runtime.limits`` was hit
    ├── ConflictError(table)           occ_conflict    a mutation conflicted on every retry
    ├── SnapshotTooOld                 snapshot_too_old a transaction outlived the in-memory write log
    ├── IsolationError                 isolation       an Id, cursor or storage id of another mount, or a call rule
    ├── NotFoundError                  not_found       an unknown function, table, index or mount
    ├── CallRuleError                  call_rule       a query called a mutation, depth > 8, concurrent nested calls
    ├── UserCodeError                  user_error      user code raised something other than a BulkheadError
    ├── WorkerCrashed                  worker_crashed  the worker running the call died or was killed (hang, deadline)
    ├── DeployError                    deploy_refused  a deploy was refused; nothing was changed
    ├── DeterminismError               determinism     a query or mutation slept, or used a clock/entropy source
    │                                                  that cannot be frozen
    ├── ProtocolError                  protocol        a malformed or oversized frame
    └── StorageError                   storage         the data directory cannot be used

Every error has a stable short ``code`` (tests and metrics assert on it, never on
the message) and a JSON-able :meth:`to_wire` form; :func:`from_wire` rebuilds
the right class on the other side of a socket.
"""

from __future__ import annotations

from typing import Any, ClassVar


class BulkheadError(Exception):
    """Root of every error Bulkhead raises on purpose."""

    code: ClassVar[str] = "internal"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields
        for key, value in fields.items():
            setattr(self, key, value)

    def to_wire(self) -> dict[str, Any]:
        """Return the JSON-able form sent across process boundaries."""
        return {"code": self.code, "type": type(self).__name__, "message": self.message, "fields": self.fields}


class ComponentError(BulkheadError):
    """The deliberate, catchable error of user code; ``data`` is JSON-able and kept intact."""

    code = "component_error"

    def __init__(self, data: Any = None, message: str | None = None) -> None:
        super().__init__(message if message is not None else f"ComponentError: {data!r}", data=data)
        self.data = data


class ValidationError(BulkheadError):
    """A value does not match what was declared; ``issues`` lists each problem by path."""

    code = "invalid_value"


class LimitExceeded(BulkheadError):
    """A limit of :mod:`runtime.limits` was hit; ``limit`` is its field name there."""

    code = "limit_exceeded"

    def __init__(self, limit: str, value: Any, maximum: Any, what: str = "") -> None:
        detail = f" ({what})" if what else ""
        super().__init__(
            f"limit {limit} exceeded{detail}: {value} > {maximum}", limit=limit, value=value, maximum=maximum
        )


class ConflictError(BulkheadError):
    """A transaction's reads were overwritten by a concurrent commit (OCC)."""

    code = "occ_conflict"


class SnapshotTooOld(BulkheadError):
    """A transaction began before the oldest commit kept in the in-memory write log."""

    code = "snapshot_too_old"


class IsolationError(BulkheadError):
    """Something of another mount (Id, cursor, storage id, function) was used."""

    code = "isolation"


class NotFoundError(BulkheadError):
    """An unknown table, index, mount or function was named."""

    code = "not_found"


class CallRuleError(BulkheadError):
    """A call broke a call rule: kind (query -> mutation), depth, or overlap of nested calls."""

    code = "call_rule"


class UserCodeError(BulkheadError):
    """User code raised an exception that is not a BulkheadError; ``exc_type`` names it."""

    code = "user_error"


class WorkerCrashed(BulkheadError):
    """The worker process running the call died (or was killed at its deadline)."""

    code = "worker_crashed"


class DeployError(BulkheadError):
    """A deploy was refused (code failed to load, schema mismatch...); nothing changed."""

    code = "deploy_refused"


class DeterminismError(BulkheadError):
    """A query or mutation did something non-deterministic; ``used`` names it."""

    code = "determinism"


class ProtocolError(BulkheadError):
    """A frame on the wire is malformed, oversized or of an unknown type."""

    code = "protocol"


class StorageError(BulkheadError):
    """The data directory is unusable (permissions, corruption, closed environment)."""

    code = "storage"


_BY_NAME: dict[str, type[BulkheadError]] = {
    cls.__name__: cls
    for cls in (
        BulkheadError,
        ComponentError,
        ValidationError,
        LimitExceeded,
        ConflictError,
        SnapshotTooOld,
        IsolationError,
        NotFoundError,
        CallRuleError,
        UserCodeError,
        WorkerCrashed,
        DeployError,
        DeterminismError,
        ProtocolError,
        StorageError,
    )
}


def register_error(cls: type[BulkheadError]) -> type[BulkheadError]:
    """Register an error subclass under its class name so :func:`from_wire` can rebuild it."""
    _BY_NAME[cls.__name__] = cls
    return cls


def from_wire(payload: dict[str, Any]) -> BulkheadError:
    """Rebuild an error from :meth:`BulkheadError.to_wire` output (unknown types become the root)."""
    cls = _BY_NAME.get(str(payload.get("type")), BulkheadError)
    fields = dict(payload.get("fields") or {})
    message = str(payload.get("message", ""))
    err = BulkheadError.__new__(cls)
    BulkheadError.__init__(err, message, **fields)
    return err


def error_of(exc: BaseException) -> BulkheadError:
    """Any exception as a BulkheadError (unexpected ones become the root class, message kept)."""
    if isinstance(exc, BulkheadError):
        return exc
    return BulkheadError(f"internal error: {type(exc).__name__}: {exc}")
