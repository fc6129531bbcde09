"""Bulkhead: a sandboxed multi-process component runtime for Python backends.

The public authoring surface lives here (App, Component, decorators, errors).
Internal packages — ``runtime.storage``, ``runtime.transactions`` — are the
coordinator's and are never imported by component code.
"""

from runtime.errors import BulkheadError, ComponentError

__all__ = ["BulkheadError", "ComponentError"]
