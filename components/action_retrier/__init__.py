"""Action retrier: run an action with retries, exponential backoff and jitter, durably, with ``on_complete``.

The app imports the client wrapper only::

    from components.action_retrier import ActionRetrier
    retrier = ActionRetrier(app.use("action_retrier", name="retrier"), max_failures=4)

Times are seconds.  The implementation (``component.py``) runs only in the mount's own workers.
"""

from components.action_retrier.client import ActionRetrier
from components.action_retrier.shared import NonRetryableError, RetryOptions, is_non_retryable

__all__ = ["ActionRetrier", "NonRetryableError", "RetryOptions", "is_non_retryable"]
