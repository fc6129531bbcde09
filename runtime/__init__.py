"""Bulkhead: a sandboxed multi-process component runtime for Python backends.

This package is the authoring surface, what app and component code imports:
definitions (``App``, ``Component``), the types of references and of ``ctx``,
and the errors a function may catch.  It loads no wire protocol, storage or
sockets (``tests/test_exports.py`` checks it in a fresh interpreter).

The other entry points are :mod:`runtime.client` (``Client``, ``AsyncClient``)
and :mod:`runtime.testing` (``start_daemon``).  The internal packages —
``runtime.protocol``, ``runtime.storage``, ``runtime.transactions``,
``runtime.coordinator`` — are the coordinator's; component code cannot import
them.  ``runtime.values`` holds the value helpers (``order_key``...).
"""

from runtime.app import App, Component, EnvVar, FunctionRef, Kind, MountRef
from runtime.ctx import (
    ActionCtx,
    DatabaseReader,
    DatabaseWriter,
    Document,
    Log,
    MutationCtx,
    Page,
    Query,
    QueryCtx,
    RangeBuilder,
    RunActionCtx,
    RunMutationCtx,
    RunQueryCtx,
    Scheduler,
    StorageActionWriter,
    StorageReader,
    StorageWriter,
    SystemReader,
)
from runtime.errors import (
    BulkheadError,
    CallRuleError,
    ComponentError,
    ConflictError,
    DeterminismError,
    IsolationError,
    LimitExceeded,
    NotFoundError,
    UserCodeError,
    ValidationError,
    WorkerCrashed,
)

__all__ = [
    # definitions: the root of a deployment, a reusable component, a mounted child
    "App",
    "Component",
    "MountRef",
    "EnvVar",
    # what the @query / @mutation / @action decorators return and what ctx.run_* take
    "FunctionRef",
    "Kind",
    # the ctx of each kind of function
    "QueryCtx",
    "MutationCtx",
    "ActionCtx",
    # what client wrappers take: any ctx that runs queries / mutations / actions
    "RunQueryCtx",
    "RunMutationCtx",
    "RunActionCtx",
    # ctx.db and its queries
    "DatabaseReader",
    "DatabaseWriter",
    "SystemReader",
    "Query",
    "RangeBuilder",
    "Page",
    "Document",
    # ctx.scheduler, ctx.storage, ctx.log
    "Scheduler",
    "StorageReader",
    "StorageWriter",
    "StorageActionWriter",
    "Log",
    # errors a function raises or catches
    "BulkheadError",
    "ComponentError",
    "ValidationError",
    "NotFoundError",
    "CallRuleError",
    "ConflictError",
    "LimitExceeded",
    "IsolationError",
    "DeterminismError",
    "UserCodeError",
    "WorkerCrashed",
]
