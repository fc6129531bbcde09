"""Rate limiter: token-bucket and fixed-window limits inside transactions, sharded or lazy.

The app imports the client wrapper only::

    from components.rate_limiter import MINUTE, RateLimiter, token_bucket
    limits = RateLimiter(app.use("rate_limiter", name="limits"),
                         {"send": token_bucket(rate=10, period=MINUTE, capacity=3)})

Periods are seconds.  The implementation (``component.py``) runs only in the
mount's own workers; ``algorithm.py`` is the pure arithmetic both can use.
"""

from components.rate_limiter.algorithm import State, calculate_rate_limit
from components.rate_limiter.client import RateLimiter, is_rate_limit_error
from components.rate_limiter.shared import (
    DAY, HOUR, MINUTE, SECOND, WEEK, FixedWindow, TokenBucket, fixed_window, token_bucket,
)

__all__ = [
    "DAY", "HOUR", "MINUTE", "SECOND", "WEEK", "FixedWindow", "RateLimiter", "State", "TokenBucket",
    "calculate_rate_limit", "fixed_window", "is_rate_limit_error", "token_bucket",
]
