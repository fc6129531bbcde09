"""Workpool: a queue of actions, mutations and queries run with bounded parallelism, retries and callbacks.

The app imports the client wrapper only::

    from components.workpool import Workpool
    emails = Workpool(app.use("workpool", name="emails"), max_parallelism=5)

    await emails.enqueue_action(ctx, send_email, {"to": "ann"}, retry=True, on_complete=sent)

The implementation (``component.py``) runs only in the mount's own workers; the
sandbox refuses it to any other code.
"""

from components.workpool.client import Retry, Workpool
from components.workpool.shared import DEFAULT_RETRY, MAX_PARALLELISM, NonRetryableError, RetryBehavior

__all__ = [
    # the client wrapper
    "Workpool",
    # retries
    "Retry",
    "RetryBehavior",
    "DEFAULT_RETRY",
    "NonRetryableError",
    # limits
    "MAX_PARALLELISM",
]
