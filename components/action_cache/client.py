"""``ActionCache``: the client wrapper an app imports.  It never imports the implementation.

``fetch`` runs in an action (it may run the cached action); ``remove`` / ``remove_all_for_name`` /
``remove_all`` in any ctx that runs mutations; ``count`` in any ctx.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from components.action_cache import shared
from runtime import ActionCtx, FunctionRef, LimitExceeded, MountRef, RunMutationCtx, RunQueryCtx, ValidationError

EventHook = Callable[[ActionCtx, dict[str, Any]], Awaitable[None]]
"""``on_event(ctx, event)``: awaited for each ``fetch`` outcome (the dict ``log=True`` prints)."""

R = TypeVar("R")
"""What the cached action returns (``Any`` for a handle)."""

POLL_FIRST_S = 0.005
"""A single-flight waiter's first pause between looks at the key; it doubles up to :data:`POLL_MAX_S`."""
POLL_MAX_S = 0.2


def _opt(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except ValueError as exc:
        raise ValidationError(f"ActionCache: {exc}") from None


class ActionCache(Generic[R]):
    """Memoize one action by its exact arguments, in one mounted ``action_cache``.

    Typed by what the action returns: ``ActionCache(mount, embed)`` of an ``embed`` returning
    ``list[float]`` is an ``ActionCache[list[float]]`` whose ``fetch`` returns ``list[float]``.

    Args:
        mount: what ``app.use("action_cache", name=...)`` returned.  Several caches may share a
            mount: their ``name`` keeps them apart.
        action: the action whose results are cached (a decorated action of the app, a child's
            action, or a function handle string).
        name: the cache's name; defaults to the action's name.  Change it to drop every old entry
            at once (a new version of the action).
        ttl: seconds an entry is fresh; None keeps it until removed (or evicted).
        single_flight: concurrent misses of one key run the action once; the others wait for its
            result (a claim lasts ``fill_timeout`` seconds, so a crashed caller does not wedge the key).
        stale_while_revalidate: seconds after expiry during which ``fetch`` still returns the old value
            at once and starts one background refresh (needs a ``ttl``, and an action of the calling
            mount itself or a handle, which the refresh job calls).
        max_entries: at most this many entries (1-1000) of this name; the least recently used go first.
        fill_timeout: seconds a claim (a fill or a refresh) holds a key.
        touch_after: a hit records its use only if the last record is older than this (so hits on a hot
            key rarely write); the LRU order is exact to this many seconds.  Only with ``max_entries``.
        log: print one JSON line per fetch: ``{"type": "action-cache-stats", "name", "get", "put"}``.
        on_event: awaited with the same dict (metrics; ``"get": "wait"`` when a caller starts waiting).

    Raises:
        ValidationError: an option is out of range (the message names it).

    Examples:
        >>> cache = ActionCache(app.use("action_cache"), action=embed, ttl=24 * 3600, max_entries=500)
        >>> vector = await cache.fetch(ctx, {"text": "hello"})          # in an action
    """

    def __init__(self, mount: MountRef, action: FunctionRef[..., R] | str, *, name: str | None = None,
                 ttl: float | None = None, single_flight: bool = True, stale_while_revalidate: float = 0.0,
                 max_entries: int | None = None, fill_timeout: float = shared.DEFAULT_FILL_TIMEOUT_S,
                 touch_after: float = shared.DEFAULT_TOUCH_AFTER_S, log: bool = False,
                 on_event: EventHook | None = None) -> None:
        if not isinstance(mount, MountRef):
            raise ValidationError(f"ActionCache: mount must be what app.use('action_cache') returned, not {mount!r}")
        if isinstance(action, FunctionRef):
            if action.kind not in (None, "action"):
                raise ValidationError(f"ActionCache: action must be an action, not the {action.kind} {action.name!r}")
            default = f"{action.path}:{action.name}" if action.path else action.name
        elif isinstance(action, str) and action:
            default = None
        else:
            raise ValidationError(f"ActionCache: action must be an action reference or a function handle, "
                                  f"not {action!r}")
        if name is None and default is None:
            raise ValidationError("ActionCache: name= is required when action is a function handle")
        self.mount = mount
        self.action = action
        self.name: str = _opt(shared.check_name, name if name is not None else default)
        self.ttl: float | None = _opt(shared.check_ttl, ttl)
        self.single_flight = bool(single_flight)
        self.stale_while_revalidate: float = _opt(shared.check_seconds, stale_while_revalidate,
                                                  "stale_while_revalidate")
        if self.stale_while_revalidate and self.ttl is None:
            raise ValidationError("ActionCache: stale_while_revalidate needs a ttl (without one nothing goes stale)")
        if self.stale_while_revalidate and isinstance(action, FunctionRef) and action.path:
            raise ValidationError(f"ActionCache: stale_while_revalidate refreshes in a background job, which needs a "
                                  f"handle: pass an action of this mount or a function handle, not "
                                  f"{action.path}:{action.name}")
        self.max_entries: int | None = _opt(shared.check_max_entries, max_entries)
        self.fill_timeout: float = _opt(shared.check_seconds, fill_timeout, "fill_timeout", positive=True)
        self.touch_after: float = _opt(shared.check_seconds, touch_after, "touch_after")
        self.log = bool(log)
        if on_event is not None and not callable(on_event):
            raise ValidationError(f"ActionCache: on_event must be an async function (ctx, event), not {on_event!r}")
        self.on_event = on_event

    def __repr__(self) -> str:
        return f"<ActionCache {self.name!r} of {self.mount!r}>"

    # --- fetch ---------------------------------------------------------------------------------------------------

    async def fetch(self, ctx: ActionCtx, args: dict[str, Any] | None = None, *, ttl: float | None = None,
                    force: bool = False) -> R:
        """The action's result for ``args``: from the cache when fresh, else by running the action.

        Args:
            ctx: an action's ctx.
            args: the action's keyword arguments; the key is these exact values (``1`` and ``1.0``
                differ, dict order does not).
            ttl: this call's ttl instead of the cache's: an entry older than it misses (and a value
                stored by this call expires after it).
            force: run the action and store its result even if a fresh entry exists (readers keep
                getting the old value until the new one is stored): keep a cache warm from a cron.
        """
        call = dict(args or {}) if isinstance(args, dict) or args is None else None
        if call is None:
            raise ValidationError(f"ActionCache.fetch: args must be a dict of the action's keyword arguments, "
                                  f"not {type(args).__name__}")
        value: R = await self._fetch(ctx, call, self.ttl if ttl is None else _opt(shared.check_ttl, ttl), force)
        return value

    async def _fetch(self, ctx: ActionCtx, call: dict[str, Any], ttl: float | None, force: bool) -> Any:
        if force:
            return await self._store(ctx, call, await self._run(ctx, call), ttl, None, "force", force=True)
        delay, waiting = POLL_FIRST_S, False
        while True:
            got = await ctx.run_query(self.mount.get, name=self.name, args=call, ttl=ttl,
                                      stale_while_revalidate=self.stale_while_revalidate,
                                      touch_after=self.touch_after if self.max_entries is not None else None)
            if got["kind"] == "hit":
                return await self._hit(ctx, call, got, ttl, waiting)
            if not self.single_flight:
                return await self._store(ctx, call, await self._run(ctx, call), ttl, None, "miss")
            if not got["filling"]:
                claim = await ctx.run_mutation(self.mount.claim, name=self.name, args=call, ttl=ttl,
                                               fill_timeout=self.fill_timeout)
                if claim["claimed"]:
                    return await self._fill(ctx, call, ttl, claim["fill_id"])
                if claim["hit"]:
                    await self._event(ctx, get="hit" if not waiting else "waited")
                    return claim["value"]
            if not waiting:
                waiting = True
                await self._event(ctx, get="wait")
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX_S)

    async def _hit(self, ctx: ActionCtx, call: dict[str, Any], got: dict[str, Any], ttl: float | None,
                   waited: bool) -> Any:
        if not got["stale"]:
            if got.get("touch"):
                await ctx.run_mutation(self.mount.touch, name=self.name, args=call, touch_after=self.touch_after)
            await self._event(ctx, get="waited" if waited else "hit")
            return got["value"]
        started = False
        if not got["refreshing"]:
            handle = self.action if isinstance(self.action, str) else await ctx.function_handle(self.action)
            started = await ctx.run_mutation(self.mount.start_refresh, name=self.name, args=call, handle=handle,
                                             ttl=ttl, stale_while_revalidate=self.stale_while_revalidate,
                                             fill_timeout=self.fill_timeout, max_entries=self.max_entries)
        await self._event(ctx, get="stale", refresh=bool(started))
        return got["value"]

    async def _fill(self, ctx: ActionCtx, call: dict[str, Any], ttl: float | None, fill_id: str) -> Any:
        try:
            value = await self._run(ctx, call)
        except BaseException:
            await ctx.run_mutation(self.mount.release, fill_id=fill_id)
            raise
        return await self._store(ctx, call, value, ttl, fill_id, "miss")

    async def _run(self, ctx: ActionCtx, call: dict[str, Any]) -> Any:
        return await ctx.run_action(self.action, **call)

    async def _store(self, ctx: ActionCtx, call: dict[str, Any], value: Any, ttl: float | None, fill_id: str | None,
                     get: str, force: bool = False) -> Any:
        """Put ``value`` and return what the cache holds for the key now.

        A value the cache cannot hold (over the 1 MiB document limit, say) is returned uncached, with a
        warning: the caller still gets its result, and the claim is released so a waiter goes on.
        """
        try:
            stored: dict[str, Any] = await ctx.run_mutation(
                self.mount.put, name=self.name, args=call, value=value, ttl=ttl, fill_id=fill_id, force=force,
                stale_while_revalidate=self.stale_while_revalidate, max_entries=self.max_entries)
        except (LimitExceeded, ValidationError) as exc:
            if fill_id is not None:
                await ctx.run_mutation(self.mount.release, fill_id=fill_id)
            ctx.log.warning("action_cache %s: the result was not cached (%s: %s)", self.name, type(exc).__name__,
                            exc)
            await self._event(ctx, get=get, put="failed")
            return value
        await self._event(ctx, get=get, put=stored["put"])
        return stored["value"]

    async def _event(self, ctx: ActionCtx, **fields: Any) -> None:
        if not self.log and self.on_event is None:
            return
        event = {"type": "action-cache-stats", "name": self.name, **fields}
        if self.log:
            print(json.dumps(event, sort_keys=True))
        if self.on_event is not None:
            await self.on_event(ctx, event)

    # --- direct reads and writes -------------------------------------------------------------------------------

    async def get(self, ctx: RunQueryCtx, args: dict[str, Any] | None = None, *, ttl: float | None = None
                  ) -> dict[str, Any]:
        """What the cache holds for ``args``, without running anything (works in queries, so subscribable).

        ``{"hit": True, "value", "stale"}`` (``stale``: expired, within ``stale_while_revalidate``) or
        ``{"hit": False}``.  Records no use for the LRU order.
        """
        got: dict[str, Any] = await ctx.run_query(
            self.mount.get, name=self.name, args=dict(args or {}),
            ttl=self.ttl if ttl is None else _opt(shared.check_ttl, ttl),
            stale_while_revalidate=self.stale_while_revalidate)
        if got["kind"] != "hit":
            return {"hit": False}
        return {"hit": True, "value": got["value"], "stale": got["stale"]}

    async def set(self, ctx: RunMutationCtx, args: dict[str, Any] | None, value: R, *, ttl: float | None = None
                  ) -> str:
        """Store ``value`` for ``args`` as if the action had returned it (warm a cache from elsewhere).

        Replaces a fresh entry too; ``"created"`` or ``"replaced"``.
        """
        res: dict[str, Any] = await ctx.run_mutation(
            self.mount.put, name=self.name, args=dict(args or {}), value=value,
            ttl=self.ttl if ttl is None else _opt(shared.check_ttl, ttl), force=True,
            stale_while_revalidate=self.stale_while_revalidate, max_entries=self.max_entries)
        return str(res["put"])

    # --- invalidation and inspection ----------------------------------------------------------------------------

    async def remove(self, ctx: RunMutationCtx, args: dict[str, Any] | None = None) -> bool:
        """Delete the entry of ``args``; whether there was one."""
        return bool(await ctx.run_mutation(self.mount.remove, name=self.name, args=dict(args or {})))

    async def remove_all_for_name(self, ctx: RunMutationCtx, *, batch_size: int = shared.DEFAULT_BATCH
                                  ) -> dict[str, Any]:
        """Delete every entry of this cache's name (``batch_size`` per transaction; the rest in jobs).

        Returns the first batch's ``{"deleted", "more"}``.
        """
        res: dict[str, Any] = await ctx.run_mutation(self.mount.remove_all, name=self.name,
                                                     batch_size=_opt(shared.check_batch, batch_size))
        return res

    async def remove_all(self, ctx: RunMutationCtx, *, before: float | None = None,
                         batch_size: int = shared.DEFAULT_BATCH) -> dict[str, Any]:
        """Delete the entries of *every* name in the mount (written before ``before`` only, if given)."""
        res: dict[str, Any] = await ctx.run_mutation(self.mount.remove_all, before=before,
                                                     batch_size=_opt(shared.check_batch, batch_size))
        return res

    async def count(self, ctx: RunQueryCtx) -> int:
        """How many entries this cache's name holds (expired ones not yet purged included)."""
        return int(await ctx.run_query(self.mount.count, name=self.name))
