"""Reactive subscriptions (guarantee 9): a service of the coordinator.

A subscription is a query plus the read set and snapshot timestamp of its
last run.  After commits, each client's subscriptions are checked against the
write log with the OCC overlap rule (:meth:`WriteLog.conflict`): only those a
commit wrote into are re-run.  A client's subscriptions then all move to one
timestamp ``T`` — every result is known valid at ``T`` (no commit after its
own snapshot touched its read set) — and one ``transition`` frame carries the
values that changed.  A mutation of a subscribing client is answered only
once that client's subscriptions reflect its commit (read your writes).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from runtime import values
from runtime.coordinator.host import Execution, Host, Prepared
from runtime.errors import BulkheadError, CallRuleError, LimitExceeded
from runtime.limits import SUBSCRIPTION_PUSH_RETRY_S, SUBSCRIPTION_ROUNDS_MAX
from runtime.protocol.messages import Transition, Update
from runtime.transactions.readset import ReadSet

Sender = Callable[[bytes, Transition], Awaitable[str]]
"""Sends a transition; says ``"ok"``, ``"full"`` (retry later) or ``"gone"`` (forget the client)."""



@dataclass
class Sub:
    """One subscribed query of one client."""

    id: int
    function: str
    admin: bool
    args: dict[str, Any]
    ts: int = -1
    """Snapshot ts the current result is known valid at (-1: never run)."""
    reads: ReadSet = field(default_factory=ReadSet)
    result: tuple[bool, Any] = (False, None)
    digest: bytes = b""
    sent: bytes | None = None
    """Digest of the last value pushed to the client (None: nothing pushed yet)."""


@dataclass
class ClientState:
    ident: bytes
    subs: dict[int, Sub] = field(default_factory=dict)
    ts: int = 0
    """Every subscription reflects all commits up to here."""
    last_seen: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    advanced: asyncio.Event = field(default_factory=asyncio.Event)


def _digest(ok: bool, value: Any) -> bytes:
    return hashlib.blake2b(values.pack([ok, value]), digest_size=16).digest()


class Subscriptions:
    """Every client's subscriptions; one background task re-runs what commits invalidated."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.limits = host.limits
        self.send: Sender = _no_sender
        """Pushes transitions to clients: set by the wiring to the client door's push."""
        self.clients: dict[bytes, ClientState] = {}
        self._poke = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None
        self.stats = {"reruns": 0, "transitions": 0, "expired_clients": 0, "unchanged_reruns": 0, "push_retries": 0}

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def status(self) -> dict[str, Any]:
        return {**self.stats, "clients": len(self.clients),
                "subscriptions": sum(len(c.subs) for c in self.clients.values())}

    def poke(self) -> None:
        """Something committed (or changed): check the subscriptions."""
        self._poke.set()

    def invalidate_all(self) -> None:
        """New code was deployed: every subscription re-runs."""
        for client in self.clients.values():
            for sub in client.subs.values():
                sub.ts = -1
        self.poke()

    # --- the client side ---------------------------------------------------------------------------

    def touch(self, ident: bytes) -> None:
        client = self.clients.get(ident)
        if client is not None:
            client.last_seen = time.monotonic()

    def subscribe(self, ident: bytes, sub_id: int, function: str, args: dict[str, Any], admin: bool) -> None:
        """Add a query to a client's set; its first value comes in the next transition."""
        mount, name, fman = self.host.resolve_client(function, admin)
        if fman["kind"] != "query":
            raise CallRuleError(f"{function!r} is a {fman['kind']}: only queries can be subscribed to")
        self.host.check_args_size(function, args)
        client = self.clients.setdefault(ident, ClientState(ident))
        client.last_seen = time.monotonic()
        if sub_id not in client.subs and len(client.subs) >= self.limits.subscriptions_per_client:
            raise LimitExceeded("subscriptions_per_client", len(client.subs) + 1, self.limits.subscriptions_per_client)
        client.subs[sub_id] = Sub(sub_id, function, admin, dict(args))
        self.poke()

    def unsubscribe(self, ident: bytes, sub_id: int) -> None:
        client = self.clients.get(ident)
        if client is not None:
            client.subs.pop(sub_id, None)
            if not client.subs:
                del self.clients[ident]
                client.advanced.set()

    def has_subscriptions(self, ident: bytes) -> bool:
        client = self.clients.get(ident)
        return client is not None and bool(client.subs)

    async def reflect(self, ident: bytes, ts: int, timeout: float = 10.0) -> None:
        """Wait until ``ident``'s subscriptions reflect commit ``ts`` (read your writes); give up after ``timeout``."""
        deadline = time.monotonic() + timeout
        self.poke()
        while True:
            client = self.clients.get(ident)
            if client is None or not client.subs or client.ts >= ts:
                return
            client.advanced.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(client.advanced.wait(), remaining)
            except TimeoutError:
                return

    # --- the loop ------------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            await self._poke.wait()
            self._poke.clear()
            self._expire()
            clients = list(self.clients.values())
            await asyncio.gather(*(self._round(c) for c in clients), return_exceptions=True)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.limits.subscription_idle_s
        for ident in [i for i, c in self.clients.items() if c.last_seen < cutoff]:
            self.clients.pop(ident).advanced.set()
            self.stats["expired_clients"] += 1

    def _stale(self, sub: Sub) -> bool:
        return sub.ts < 0 or not self.host.write_log.still_valid(sub.ts, sub.reads)

    async def _round(self, client: ClientState) -> None:
        try:
            await self._round_locked(client)
        except Exception as exc:
            self.host.logs.add("", None, f"subscriptions: a round failed: {type(exc).__name__}: {exc}")
            self.poke()
        finally:
            client.advanced.set()

    async def _round_locked(self, client: ClientState) -> None:
        async with client.lock:
            for _ in range(SUBSCRIPTION_ROUNDS_MAX):
                subs = list(client.subs.values())
                if not subs:
                    return
                stale = [s for s in subs if self._stale(s)]
                if not stale:
                    break
                await asyncio.gather(*(self._run(s) for s in stale))
            else:
                self.poke()  # writes kept racing the re-runs: try again after the next commit
                return
            # Every result is valid from its own snapshot up to the newest commit checked: move all to one ts.
            ts = max([self.host.write_log.last_ts, *(s.ts for s in subs)])
            updates, changed = [], []
            for s in subs:
                s.ts = ts
                if s.digest != s.sent:
                    ok, value = s.result
                    updates.append(Update(sub=s.id, ok=ok, value=value if ok else None, error=None if ok else value))
                    changed.append((s, s.digest))
            if updates:
                outcome = await self.send(client.ident, Transition(request_id=0, ts=ts, updates=updates))
                if outcome == "ok":
                    self.stats["transitions"] += 1
                    for s, digest in changed:
                        s.sent = digest
                elif outcome == "full":  # the client is not reading: the values stay unsent, try again soon
                    self.stats["push_retries"] += 1
                    asyncio.get_running_loop().call_later(SUBSCRIPTION_PUSH_RETRY_S, self.poke)
                    return
                else:
                    self.clients.pop(client.ident, None)
                    return
            client.ts = max(client.ts, ts)
            client.advanced.set()

    async def _run(self, sub: Sub) -> None:
        self.stats["reruns"] += 1
        before = sub.digest
        epoch = self.host.epoch
        try:
            # resolved again each run: a redeploy may have removed the query or made it internal
            mount, name, fman = self.host.resolve_client(sub.function, sub.admin)
            if fman["kind"] != "query":
                raise CallRuleError(f"{sub.function!r} is a {fman['kind']} now: only queries can be subscribed to")
            value, ts, reads = await self.host.run_query(mount, name, sub.args)
            sub.result, sub.ts, sub.reads = (True, value), int(ts or 0), reads
        except BulkheadError as exc:
            # What a failed run read is not known here: any later commit re-runs it.
            sub.result, sub.ts, sub.reads = (False, exc.to_wire()), self.host.write_log.last_ts, _EVERYTHING
        if self.host.epoch != epoch:
            sub.ts = -1  # new code was deployed while it ran: run it again on the new code
        sub.digest = _digest(*sub.result)
        if sub.digest == before:
            self.stats["unchanged_reruns"] += 1

    # --- wiring -------------------------------------------------------------------------------------

    def install(self) -> None:
        """Re-check subscriptions after each commit that wrote, re-run all after a deploy."""
        self.host.on_commit(self._committed)
        self.host.after_deploy(lambda dep: self.invalidate_all())
        self.host.after_restart(lambda mount: self.invalidate_all())
        self.host.on_shutdown(self.stop)
        self.host.register_status("subscriptions", self.status)

    def _committed(self, _ex: Execution, prepared: Prepared) -> None:
        if not prepared.is_read_only:
            self.poke()


class _AllReads(ReadSet):
    """The read set of a query that failed: any commit may change its outcome."""

    def first_overlap(self, writes: dict[int, list[bytes]]) -> tuple[int, bytes] | None:
        for ix, keys in writes.items():
            if keys:
                return ix, keys[0]
        return None


_EVERYTHING = _AllReads()


async def _no_sender(ident: bytes, frame: Transition) -> str:
    return "gone"
