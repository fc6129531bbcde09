"""The query cache: a client query answered again without a worker while nothing it read changed.

The query cache keeps a client query's value with its read set: a later
identical call is answered from it when no commit since touched the read set
(the same check), without a round trip to any worker.  Identical queries in
flight share one execution.  Entries expire after ``query_cache_ttl_s`` (their
frozen ``now`` gets old) and the cache holds at most ``query_cache_entries``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from runtime import values
from runtime.coordinator.host import Host
from runtime.transactions.readset import ReadSet


class QueryCache:
    """Client query results keyed by (deploy epoch, mount, function, arguments), validated by read set."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.limits = host.limits
        self._entries: OrderedDict[bytes, tuple[Any, int, ReadSet, float]] = OrderedDict()
        self._inflight: dict[bytes, tuple[asyncio.Future[tuple[Any, int | None]], int]] = {}
        self.stats = {"hits": 0, "misses": 0, "shared": 0}

    def _key(self, mount: str, name: str, args: dict[str, Any]) -> bytes:
        return hashlib.blake2b(values.pack([self.host.epoch, mount, name, args]), digest_size=20).digest()

    async def query(self, mount: str, name: str, args: dict[str, Any],
                    run: Callable[[], Awaitable[tuple[Any, int | None, ReadSet]]]) -> tuple[Any, int | None]:
        """The query's value and timestamp: from the cache when still valid, else from ``run()``."""
        if self.limits.query_cache_entries <= 0:
            value, ts, _reads = await run()
            return value, ts
        key = self._key(mount, name, args)
        log = self.host.write_log
        now_ts = log.last_ts  # read before the check: the entry is valid at least through it
        entry = self._entries.get(key)
        if entry is not None:
            value, ts, reads, made = entry
            if time.monotonic() - made <= self.limits.query_cache_ttl_s and log.still_valid(ts, reads):
                self._entries[key] = (value, max(ts, now_ts), reads, made)
                self._entries.move_to_end(key)
                self.stats["hits"] += 1
                return value, max(ts, now_ts)
            del self._entries[key]
        running = self._inflight.get(key)
        if running is not None and running[1] == now_ts:  # no commit since it started: its snapshot will do
            self.stats["shared"] += 1
            return await asyncio.shield(running[0])
        self.stats["misses"] += 1
        fut: asyncio.Future[tuple[Any, int | None]] = asyncio.get_running_loop().create_future()
        self._inflight[key] = (fut, now_ts)
        try:
            value, ts, reads = await run()
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        finally:
            if self._inflight.get(key, (None,))[0] is fut:
                del self._inflight[key]
        fut.set_result((value, ts))
        self._entries[key] = (value, int(ts or 0), reads, time.monotonic())
        while len(self._entries) > self.limits.query_cache_entries:
            self._entries.popitem(last=False)
        return value, ts

    def clear(self) -> None:
        self._entries.clear()

    def install(self) -> None:
        """Answer clients' queries through the cache; forget everything at each deploy."""
        self.host.serve_client_queries(self.query)
        self.host.after_deploy(lambda dep: self.clear())
        self.host.after_restart(lambda mount: self.clear())  # new env values: an answer may differ
        self.host.register_status("query_cache", lambda: dict(self.stats))
