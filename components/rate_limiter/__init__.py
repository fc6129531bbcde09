"""Rate limiter: token-bucket and fixed-window limits inside transactions, sharded or lazy.

The app imports the client wrapper only::

    from components.rate_limiter import MINUTE, RateLimiter, token_bucket
    limits = RateLimiter(app.use("rate_limiter", name="limits"),
                         {"send": token_bucket(rate=10, period=MINUTE, capacity=3)})

Periods are seconds.  The implementation (``component.py``, with the pure
arithmetic of ``algorithm.py``) runs only in the mount's own workers; the
sandbox refuses it to any other code.
"""

from components.rate_limiter.client import RateLimiter, is_rate_limit_error
from components.rate_limiter.shared import (
    DAY,
    HOUR,
    MINUTE,
    SECOND,
    WEEK,
    FixedWindow,
    TokenBucket,
    fixed_window,
    token_bucket,
)

__all__ = [
    # the client wrapper and how to recognise its error
    "RateLimiter",
    "is_rate_limit_error",
    # limit configurations
    "TokenBucket",
    "FixedWindow",
    "token_bucket",
    "fixed_window",
    # periods, in seconds
    "SECOND",
    "MINUTE",
    "HOUR",
    "DAY",
    "WEEK",
]
