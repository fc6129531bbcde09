"""Retry options, the backoff arithmetic and the non-retryable error: used by the client wrapper and the component.

Times are **seconds** (floats), like ``ctx.now()``.

The first delay, documented once: attempt 1 runs at the run's start time; after
the k-th failure (k = 1, 2, ...) the next attempt waits
``initial_backoff * base ** (k - 1)`` seconds, times a jitter factor drawn
uniformly from [0.5, 1.5) unless ``jitter=False``.  So ``initial_backoff`` *is*
the delay before the first retry (the reference's code waits
``initial_backoff * base`` there, although its README says otherwise).
"""


import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runtime import ComponentError

DEFAULT_INITIAL_BACKOFF = 0.25
DEFAULT_BASE = 2.0
DEFAULT_MAX_FAILURES = 4
MAX_FAILURES_CAP = 1000
"""More retries than this is a mistake (or a loop that should be a cron)."""
MAX_DELAY_S = 365 * 24 * 3600.0
"""No single backoff waits longer than a year (``base ** k`` grows fast)."""
HEARTBEAT_S = 10.0
"""How often (jittered) an unfinished run checks the scheduler job of its current attempt."""
RETENTION_S = 7 * 24 * 3600.0
"""Completed runs older than this are deleted by the daily clean-up (``ACTION_RETRIER_RETENTION_S`` overrides)."""
NON_RETRYABLE = "NonRetryable"
LogLevel = Literal["DEBUG", "INFO", "WARN", "ERROR"]
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARN", "ERROR")


class RetryOptions(BaseModel):
    """How one run retries.  Out-of-range values are refused naming the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_backoff: float = Field(default=DEFAULT_INITIAL_BACKOFF, ge=0, le=MAX_DELAY_S,
                                   description="seconds before the first retry (before jitter)")
    base: float = Field(default=DEFAULT_BASE, ge=1, le=1000, description="each retry waits base times longer")
    max_failures: int = Field(default=DEFAULT_MAX_FAILURES, ge=0, le=MAX_FAILURES_CAP,
                              description="failures that are retried: at most max_failures + 1 attempts")
    jitter: bool = Field(default=True, description="multiply each delay by U[0.5, 1.5)")
    log_level: LogLevel | None = Field(default=None, description="None: ACTION_RETRIER_LOG_LEVEL, else WARN")

    @property
    def max_attempts(self) -> int:
        return self.max_failures + 1


def make_options(initial_backoff: float | None = None, base: float | None = None, max_failures: int | None = None,
                 max_attempts: int | None = None, jitter: bool | None = None, log_level: str | None = None,
                 defaults: RetryOptions | None = None) -> RetryOptions:
    """``defaults`` with the given fields replaced; ``max_attempts`` is ``max_failures + 1`` (give one of them)."""
    if max_attempts is not None:
        if max_failures is not None:
            raise ValueError("give max_failures or max_attempts, not both (max_attempts = max_failures + 1)")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, not {max_attempts!r}")
        max_failures = max_attempts - 1
    given: dict[str, Any] = {k: v for k, v in {"initial_backoff": initial_backoff, "base": base,
                                               "max_failures": max_failures, "jitter": jitter,
                                               "log_level": log_level}.items() if v is not None}
    for k in ("initial_backoff", "base"):  # pydantic's lax mode would take "1" for a float
        v = given.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError(f"{k} must be a number, not {v!r}")
    base_fields = defaults.model_dump() if defaults is not None else {}
    return RetryOptions.model_validate({**base_fields, **given})


def nominal_delay(options: RetryOptions, failures: int) -> float:
    """The delay before jitter after the ``failures``-th failure (1 = the first).

    ``initial_backoff * base ** (failures - 1)``, at most ``MAX_DELAY_S``.
    """
    if failures < 1:
        raise ValueError(f"failures counts from 1, not {failures}")
    try:
        delay = options.initial_backoff * options.base ** (failures - 1)
    except OverflowError:
        return MAX_DELAY_S
    return min(delay, MAX_DELAY_S) if math.isfinite(delay) else MAX_DELAY_S


def delay(options: RetryOptions, failures: int, u: float) -> float:
    """The delay after the ``failures``-th failure with jitter draw ``u`` in [0, 1): nominal times ``0.5 + u``."""
    nominal = nominal_delay(options, failures)
    return nominal * (0.5 + u) if options.jitter else nominal


class Success(BaseModel):
    """A run's result when an attempt returned ``value``."""

    type: Literal["success"]
    value: Any = None
    attempts: int


class Failed(BaseModel):
    """A run's result when its last attempt failed (``retryable`` False: non-retryable, or no more retries...)."""

    type: Literal["failed"]
    error: str
    data: Any = None
    retryable: bool
    attempts: int


class Canceled(BaseModel):
    """A run's result after ``cancel``."""

    type: Literal["canceled"]
    attempts: int


RunResult = Annotated[Success | Failed | Canceled, Field(discriminator="type")]
"""The ``result`` an ``on_complete`` gets (and ``status`` shows), as a type: annotate the callback's
``result: RunResult`` to get it validated into one of the three models (``dict[str, Any]`` works too)."""


class NonRetryableError(ComponentError):
    """Raise it from the retried action to fail the run at once, without further attempts.

    It crosses the process boundary as a ``ComponentError`` whose ``data`` is
    ``{"kind": "NonRetryable", "message": ..., "data": ...}``; the retrier
    recognises it by that (:func:`is_non_retryable`) and keeps ``data`` in the
    run's result.
    """

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__({"kind": NON_RETRYABLE, "message": message, "data": data}, message)

    def to_wire(self) -> dict[str, Any]:
        """On the wire it is a plain ``ComponentError`` (the other side knows no subclasses); ``data`` says which."""
        return {**super().to_wire(), "type": "ComponentError"}


def is_non_retryable(err: BaseException) -> bool:
    """Whether ``err`` is (or came over the wire from) a :class:`NonRetryableError`."""
    data = getattr(err, "data", None) if isinstance(err, ComponentError) else None
    return isinstance(data, dict) and data.get("kind") == NON_RETRYABLE
