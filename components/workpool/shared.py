"""What the workpool's client wrapper and its implementation share: retry behaviour, limits, the error type.

Nothing here touches a database: the client (in the caller's worker) and the
component (in the pool's own workers) both import it.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runtime import ComponentError

MAX_PARALLELISM = 200
"""The largest ``max_parallelism`` a pool accepts (as the reference); 0 pauses the pool."""
DEFAULT_PARALLELISM = 10
"""A pool's ``max_parallelism`` until something sets it."""
NON_RETRYABLE = "NonRetryable"
"""The ``kind`` in the ``data`` of a :class:`NonRetryableError`."""
LOG_LEVELS = ("DEBUG", "INFO", "REPORT", "WARNING", "ERROR")
"""What a pool may log, least severe first; ``REPORT`` is the once-a-minute report."""
DEFAULT_LOG_LEVEL = "REPORT"
DEFAULT_STATUS_TTL_S = 24 * 3600.0
"""How long a finished job's status (and result) is kept before ``status`` answers a bare ``finished``."""


class RetryBehavior(BaseModel):
    """How an action is retried: attempt ``n`` (1-based) that fails waits
    ``initial_backoff_ms * base ** (n - 1)`` ms, times a jitter drawn from [0.5, 1.5), before the next.

    ``max_attempts`` counts every run, the first included (1: never retried).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(default=5, ge=1, le=1000)
    initial_backoff_ms: float = Field(default=250.0, ge=0, le=24 * 3600 * 1000)
    base: float = Field(default=2.0, ge=1, le=100)


DEFAULT_RETRY = RetryBehavior()
"""``{max_attempts: 5, initial_backoff_ms: 250, base: 2}``, the reference's default."""


class NonRetryableError(ComponentError):
    """Raise it from an action run by a pool to fail at once, with no further attempts.

    It is a :class:`~runtime.ComponentError` whose ``data`` is ``{"kind": "NonRetryable", "message": ...}``
    (the data crosses every process boundary; the class name does not).
    """

    def __init__(self, message: str = "non-retryable failure", data: Any = None) -> None:
        super().__init__({"kind": NON_RETRYABLE, "message": message, "data": data}, message)


def check_parallelism(value: object, what: str = "max_parallelism") -> int:
    """``value`` if it is an int in 0..MAX_PARALLELISM, else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PARALLELISM:
        raise ValueError(f"{what} must be an int from 0 (paused) to {MAX_PARALLELISM}, not {value!r}")
    return value
