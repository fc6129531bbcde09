"""What workers printed or logged, tagged with mount, function and request; kept in memory."""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Any


class LogStore:
    """A bounded, sequenced log: ``since(seq)`` pages through it without missing or repeating an entry."""

    def __init__(self, keep: int) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=keep)
        self._seq = itertools.count(1)

    def add(self, mount: str, function: str | None, line: str, request: str | None = None) -> None:
        self.entries.append({"seq": next(self._seq), "ts": time.time(), "mount": mount, "function": function,
                             "request": request, "line": line})

    def since(self, after: int, limit: int = 1000) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["seq"] > after][:limit]
