"""Bulkhead: a sandboxed multi-process component runtime for Python backends.

The public authoring surface lives here (App, Component, the ctx types,
errors).  Internal packages — ``runtime.storage``, ``runtime.transactions``,
``runtime.coordinator`` — are the coordinator's and are never importable by
component code.
"""

from runtime.app import App, Component, FunctionRef, MountRef
from runtime.ctx import ActionCtx, MutationCtx, QueryCtx
from runtime.errors import BulkheadError, ComponentError

__all__ = [
    "ActionCtx", "App", "BulkheadError", "Component", "ComponentError", "FunctionRef", "MountRef", "MutationCtx",
    "QueryCtx",
]
