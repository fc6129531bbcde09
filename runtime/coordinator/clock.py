"""The coordinator's clock: wall time, or wall time plus an offset tests can move.

Every time the coordinator hands out (a transaction's frozen ``now``, the
scheduler's idea of "due", cron boundaries) comes from one :class:`Clock`.
With ``controllable_clock=1`` the admin op ``clock`` may move it forward, so
tests of scheduled jobs and crons need no long sleeps; otherwise it refuses.
"""

from __future__ import annotations

import asyncio
import time

from runtime.errors import IsolationError, ValidationError


class Clock:
    """Seconds since the epoch, with an offset that only a controllable clock may change."""

    def __init__(self, controllable: bool = False, offset_s: float = 0.0) -> None:
        self.controllable = controllable
        self.offset = float(offset_s) if controllable else 0.0
        self.changed = asyncio.Event()
        """Set whenever the offset moves (the scheduler waits on it beside its timer)."""

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds``; return the new now."""
        if not self.controllable:
            raise IsolationError("this daemon's clock is not controllable "
                                 "(start it with BULKHEAD_CONTROLLABLE_CLOCK=1)")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds <= 10 * 365 * 86400:
            raise ValidationError(f"clock: advance takes seconds between 0 and ten years, not {seconds!r}")
        self.offset += float(seconds)
        self.changed.set()
        return self.now()
