"""Rate-limit configurations and time constants, used by both the client wrapper and the component.

Periods are in **seconds** (floats), because ``ctx.now()`` is float seconds.
"""


from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SECOND = 1.0
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY


class _Limit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float = Field(gt=0, description="tokens added per period")
    period: float = Field(gt=0, description="seconds")
    capacity: float | None = Field(default=None, gt=0, description="bucket size (default: rate)")
    max_reserved: float | None = Field(default=None, ge=0, description="how far a reservation may go below 0")
    shards: int | None = Field(default=None, ge=1, description="split the limit over this many documents")
    lazy: bool = Field(default=False, description="queued consumption, folded by a single writer")
    fold_every: int = Field(default=8, ge=1, description="lazy: about one call in this many folds the queue")

    @property
    def max(self) -> float:
        """The bucket's upper bound: ``capacity``, else ``rate``."""
        return self.capacity if self.capacity is not None else self.rate

    @property
    def shard_count(self) -> int:
        """``shards``, or 1."""
        return self.shards or 1

    @model_validator(mode="after")
    def _lazy_unsharded(self) -> "_Limit":
        if self.lazy and self.shard_count > 1:
            raise ValueError("a lazy limit is folded by a single writer and cannot also be sharded (drop shards=)")
        return self


class TokenBucket(_Limit):
    """Tokens refill continuously at ``rate / period`` up to ``capacity``."""

    kind: Literal["token bucket"] = "token bucket"


class FixedWindow(_Limit):
    """``rate`` tokens are added at the start of each window of ``period`` seconds, up to ``capacity``.

    ``start`` (seconds since the epoch) aligns the windows; ``None`` gives each
    key (and shard) a random phase so that not every client resets at once.
    """

    kind: Literal["fixed window"] = "fixed window"
    start: float | None = None


LimitConfig = Annotated[TokenBucket | FixedWindow, Field(discriminator="kind")]


def token_bucket(rate: float, period: float, **options: object) -> TokenBucket:
    """A token-bucket limit: ``token_bucket(10, MINUTE, capacity=3)``."""
    return TokenBucket(rate=rate, period=period, **options)  # type: ignore[arg-type]


def fixed_window(rate: float, period: float, **options: object) -> FixedWindow:
    """A fixed-window limit: ``fixed_window(100, HOUR, start=0)``."""
    return FixedWindow(rate=rate, period=period, **options)  # type: ignore[arg-type]
