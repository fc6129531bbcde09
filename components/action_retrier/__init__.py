"""Action retrier: run an action with retries, exponential backoff and jitter, durably, with ``on_complete``.

The app imports the client wrapper only::

    from components.action_retrier import ActionRetrier
    retrier = ActionRetrier(app.use("action_retrier", name="retrier"), max_failures=4)

Times are seconds.  The implementation (``component.py``) runs only in the mount's own workers.
"""

from components.action_retrier.client import ActionRetrier
from components.action_retrier.shared import (
    Canceled,
    Failed,
    NonRetryableError,
    RetryOptions,
    RunResult,
    Success,
    is_non_retryable,
)

__all__ = [
    # the client wrapper and its options
    "ActionRetrier",
    "RetryOptions",
    # what on_complete gets: the type of its result and each case
    "RunResult",
    "Success",
    "Failed",
    "Canceled",
    # the error that stops retries, and how to recognise it
    "NonRetryableError",
    "is_non_retryable",
]
