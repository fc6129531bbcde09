"""Option checks shared by the client wrapper and the implementation (pure; raise ``ValueError``).

Every check names the option and the value it refused, so a wrong ``ActionCache(...)`` fails at import
time of the app, and a wrong direct call of the component fails before it touches a document.
"""

from __future__ import annotations

import math
from typing import Any

MAX_ENTRIES_LIMIT = 1000
"""The largest ``max_entries``: eviction reads that many entry documents (small ones, without values) in
one transaction, which keeps it far inside the per-transaction read budget."""
DEFAULT_FILL_TIMEOUT_S = 60.0
"""How long a single-flight claim holds a key: after that a waiter claims it again (a crashed filler)."""
DEFAULT_TOUCH_AFTER_S = 60.0
"""A hit refreshes ``last_used`` only when it is older than this, so hits on a hot key rarely write."""
DEFAULT_BATCH = 100
"""Documents one ``remove_all`` / ``purge`` transaction deletes before it schedules the next batch."""


def _number(option: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{option} must be a number of seconds, not {value!r}")
    return float(value)


def check_ttl(value: Any, option: str = "ttl") -> float | None:
    """``None`` (kept until removed) or seconds > 0."""
    if value is None:
        return None
    seconds = _number(option, value)
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"{option} must be > 0 seconds (or None: no expiry), not {value!r}")
    return seconds


def check_seconds(value: Any, option: str, *, positive: bool = False) -> float:
    """Finite seconds, >= 0 (> 0 with ``positive``)."""
    seconds = _number(option, value)
    if math.isinf(seconds) or seconds < 0 or (positive and seconds == 0):
        raise ValueError(f"{option} must be {'> 0' if positive else '>= 0'} seconds, not {value!r}")
    return seconds


def check_max_entries(value: Any) -> int | None:
    """``None`` (no cap) or an int from 1 to :data:`MAX_ENTRIES_LIMIT`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ENTRIES_LIMIT:
        raise ValueError(f"max_entries must be an int from 1 to {MAX_ENTRIES_LIMIT} (or None: no cap), "
                         f"not {value!r}")
    return value


def check_batch(value: Any, option: str = "batch_size") -> int:
    """An int from 1 to 1000."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise ValueError(f"{option} must be an int from 1 to 1000, not {value!r}")
    return value


def check_name(value: Any) -> str:
    """A non-empty string of at most 256 characters."""
    if not isinstance(value, str) or not value or len(value) > 256:
        raise ValueError(f"name must be a non-empty string of at most 256 characters, not {value!r}")
    return value
