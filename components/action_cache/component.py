"""The action cache's implementation: runs only in its own workers.

Tables:

* ``entries {key, name, value_id, written_at, expires_at, keep_until, last_used}``: one per cached
  (name, exact arguments), indexed by ``key`` (the hash of :mod:`components.action_cache.keys`), by
  ``(name, last_used)`` (eviction, ``remove_all_for_name``), by ``keep_until`` (the purge) and by
  ``written_at`` (``remove_all(before=)``);
* ``values {value}``: the cached result, apart from its entry, so that eviction and the purge scan small
  documents and stay inside the read budget however big the values are;
* ``fills {key, name, kind, started_at, expires_at}``: an in-flight claim on a key (single flight, or a
  stale-while-revalidate refresh), indexed by ``key`` and ``expires_at``.

Conflicts: every function that writes reads only the documents of its own key (the ``key`` range of
``entries`` and ``fills``), so fills, touches and removals of different keys never conflict.  Hits are
served by the query :func:`get`.  Only the background jobs (``evict``, ``purge``, ``remove_all``) scan
ranges; they retry when a fill lands in them, and nobody waits for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from components.action_cache import keys, shared
from runtime import ActionCtx, Component, MutationCtx, QueryCtx, ValidationError

component = Component("action_cache")

_T = TypeVar("_T")

BY_KEY = "by_key"
BY_NAME_USED = "by_name_last_used"
BY_KEEP = "by_keep_until"
BY_WRITTEN = "by_written_at"
BY_EXPIRES = "by_expires_at"
EVICT_BATCH = 100
"""Entries past the cap one eviction deletes; it schedules itself again while there are more."""


@component.table("entries", indexes={BY_KEY: ["key"], BY_NAME_USED: ["name", "last_used"], BY_KEEP: ["keep_until"],
                                     BY_WRITTEN: ["written_at"]})
class Entry(BaseModel):
    """One cached result's metadata (the value is in ``values``)."""

    key: str
    name: str
    value_id: str
    written_at: float
    expires_at: float | None = None
    """``written_at + ttl``; None: no expiry."""
    keep_until: float | None = None
    """When the purge may delete it: ``expires_at`` plus the stale-while-revalidate window; None: never."""
    last_used: float


@component.table("values")
class Value(BaseModel):
    """A cached result."""

    value: Any = None


@component.table("fills", indexes={BY_KEY: ["key"], BY_EXPIRES: ["expires_at"]})
class Fill(BaseModel):
    """A claim on a key while its action runs: others wait for it instead of running the action too."""

    key: str
    name: str
    kind: str
    """``"fill"`` (a miss being filled) or ``"refresh"`` (a stale entry being revalidated)."""
    started_at: float
    expires_at: float


def _checked(fn: Callable[..., _T], *args: Any, **kw: Any) -> _T:
    try:
        return fn(*args, **kw)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def _key(name: str, args: dict[str, Any]) -> str:
    _checked(shared.check_name, name)
    return _checked(keys.cache_key, name, args)


def expiry(entry: dict[str, Any], ttl: float | None) -> float | None:
    """When ``entry`` stops being fresh for a reader asking for ``ttl``: the earlier of its own expiry and
    ``written_at + ttl`` (so a shorter ttl applies to entries written with a longer one); None: never."""
    ends = [t for t in (entry.get("expires_at"), None if ttl is None else entry["written_at"] + ttl) if t is not None]
    return min(ends) if ends else None


async def _entry(ctx: QueryCtx, key: str) -> dict[str, Any] | None:
    return await ctx.db.query("entries").with_index(BY_KEY, lambda q: q.eq("key", key)).unique()


async def _fill(ctx: QueryCtx, key: str) -> dict[str, Any] | None:
    return await ctx.db.query("fills").with_index(BY_KEY, lambda q: q.eq("key", key)).unique()


async def _value(ctx: QueryCtx, entry: dict[str, Any]) -> Any:
    doc = await ctx.db.get(entry["value_id"])
    return doc["value"] if doc is not None else None


async def _delete_entry(ctx: MutationCtx, entry: dict[str, Any]) -> None:
    if await ctx.db.get(entry["value_id"]) is not None:
        await ctx.db.delete(entry["value_id"])
    await ctx.db.delete(entry["_id"])


async def _claim(ctx: MutationCtx, key: str, name: str, kind: str, fill_timeout: float,
                 fill: dict[str, Any] | None) -> str | None:
    """Claim ``key`` unless a live claim holds it; the new claim's Id, or None."""
    now = ctx.now()
    if fill is not None and fill["expires_at"] > now:
        return None
    body = {"key": key, "name": name, "kind": kind, "started_at": now, "expires_at": now + fill_timeout}
    if fill is not None:  # an expired claim (its filler crashed or is too slow): a new Id, so the old
        await ctx.db.delete(fill["_id"])  # filler's late put or release cannot end the new claim
    return await ctx.db.insert("fills", body)


@component.query
async def get(ctx: QueryCtx, name: str, args: dict[str, Any], ttl: float | None = None,
              stale_while_revalidate: float = 0.0, touch_after: float | None = None) -> dict[str, Any]:
    """Look ``args`` up under ``name`` (a query, so a hit is a read served from the worker's cache).

    Returns ``{"kind": "hit", "value", "stale": False, "touch"}`` for a fresh entry (``touch``: its
    ``last_used`` is older than ``touch_after``), ``{"kind": "hit", "value", "stale": True, "refreshing"}``
    within ``stale_while_revalidate`` seconds after it expired, else ``{"kind": "miss", "filling"}``
    (``filling``: a live claim holds the key).
    """
    key = _key(name, args)
    _checked(shared.check_ttl, ttl)
    swr = _checked(shared.check_seconds, stale_while_revalidate, "stale_while_revalidate")
    now = ctx.now()
    entry = await _entry(ctx, key)
    if entry is not None:
        ends = expiry(entry, ttl)
        if ends is None or now < ends:
            touch = touch_after is not None and now - entry["last_used"] >= touch_after
            return {"kind": "hit", "value": await _value(ctx, entry), "stale": False, "touch": touch}
        if now < ends + swr:
            fill = await _fill(ctx, key)
            refreshing = fill is not None and fill["expires_at"] > now
            return {"kind": "hit", "value": await _value(ctx, entry), "stale": True, "refreshing": refreshing}
    fill = await _fill(ctx, key)
    return {"kind": "miss", "filling": fill is not None and fill["expires_at"] > now}


@component.mutation
async def claim(ctx: MutationCtx, name: str, args: dict[str, Any], ttl: float | None = None,
                fill_timeout: float = shared.DEFAULT_FILL_TIMEOUT_S) -> dict[str, Any]:
    """Single flight: claim the fill of a missing key.

    ``{"claimed": True, "fill_id"}``: run the action, then :func:`put` with ``fill_id`` (or
    :func:`release` it).  ``{"claimed": False, "hit": True, "value"}``: it was filled meanwhile.
    ``{"claimed": False, "hit": False}``: another caller's live claim holds it; wait for its entry.
    Reads only this key's entry and claim, so claims of different keys never conflict.
    """
    key = _key(name, args)
    ttl = _checked(shared.check_ttl, ttl)
    timeout = _checked(shared.check_seconds, fill_timeout, "fill_timeout", positive=True)
    entry = await _entry(ctx, key)
    if entry is not None:
        ends = expiry(entry, ttl)
        if ends is None or ctx.now() < ends:
            return {"claimed": False, "hit": True, "value": await _value(ctx, entry)}
    fill_id = await _claim(ctx, key, name, "fill", timeout, await _fill(ctx, key))
    return {"claimed": True, "fill_id": fill_id} if fill_id is not None else {"claimed": False, "hit": False}


async def _release(ctx: MutationCtx, fill_id: str | None) -> bool:
    if fill_id is None:
        return False
    table = await ctx.db.table_of(fill_id)
    if table is None:  # gone: it expired and was taken over, or purged
        return False
    if table != "fills":
        raise ValidationError(f"fill_id {fill_id!r} is not the Id of a claim (it names a document of {table!r})")
    await ctx.db.delete(fill_id)
    return True


@component.mutation
async def release(ctx: MutationCtx, fill_id: str) -> bool:
    """Give a claim up without a value (the action failed); whether it was still there."""
    return await _release(ctx, fill_id)


@component.mutation
async def put(ctx: MutationCtx, name: str, args: dict[str, Any], value: Any, ttl: float | None = None,
              stale_while_revalidate: float = 0.0, fill_id: str | None = None, force: bool = False,
              max_entries: int | None = None) -> dict[str, Any]:
    """Store ``value`` for ``args`` under ``name``; ``{"value", "put": "created" | "replaced" | "kept" | "dropped"}``.

    Unless ``force``, an entry still fresh for ``ttl`` is *kept* (another caller filled it after our
    miss) and its value returned, so every concurrent caller ends with the same value and the fill
    writes nothing.  ``fill_id``'s claim is released.  With ``max_entries``, a new entry schedules an
    eviction of the least recently used entries of ``name`` beyond the cap (in a job of its own: a fill
    never reads other keys).  A ``fill_id`` whose claim is gone (cancelled by a removal, or taken over
    after it expired) stores nothing: ``"dropped"``.
    """
    key = _key(name, args)
    ttl = _checked(shared.check_ttl, ttl)
    swr = _checked(shared.check_seconds, stale_while_revalidate, "stale_while_revalidate")
    cap = _checked(shared.check_max_entries, max_entries)
    if fill_id is not None and not await _release(ctx, fill_id):
        # the claim was cancelled (remove / remove_all) or taken over after it expired: this value is
        # older than what the cache should now hold, or another filler is storing a newer one
        return {"value": value, "put": "dropped"}
    now = ctx.now()
    entry = await _entry(ctx, key)
    if entry is not None and not force:
        ends = expiry(entry, ttl)
        if ends is None or now < ends:
            return {"value": await _value(ctx, entry), "put": "kept"}
    expires = None if ttl is None else now + ttl
    body = {"key": key, "name": name, "written_at": now, "expires_at": expires,
            "keep_until": None if expires is None else expires + swr, "last_used": now}
    if entry is not None:
        if await ctx.db.get(entry["value_id"]) is not None:
            await ctx.db.replace(entry["value_id"], {"value": value})
            await ctx.db.replace(entry["_id"], {**body, "value_id": entry["value_id"]})
        else:
            await ctx.db.replace(entry["_id"], {**body, "value_id": await ctx.db.insert("values", {"value": value})})
        return {"value": value, "put": "replaced"}
    await ctx.db.insert("entries", {**body, "value_id": await ctx.db.insert("values", {"value": value})})
    if cap is not None:
        await ctx.scheduler.run_after(0, evict, name=name, max_entries=cap)
    return {"value": value, "put": "created"}


@component.mutation
async def touch(ctx: MutationCtx, name: str, args: dict[str, Any],
                touch_after: float = shared.DEFAULT_TOUCH_AFTER_S) -> bool:
    """Mark a hit for the LRU order: set ``last_used`` to now if it is older than ``touch_after``."""
    key = _key(name, args)
    after = _checked(shared.check_seconds, touch_after, "touch_after")
    entry = await _entry(ctx, key)
    if entry is None or ctx.now() - entry["last_used"] < after:
        return False
    await ctx.db.patch(entry["_id"], {"last_used": ctx.now()})
    return True


@component.mutation
async def start_refresh(ctx: MutationCtx, name: str, args: dict[str, Any], handle: str, ttl: float | None = None,
                        stale_while_revalidate: float = 0.0, fill_timeout: float = shared.DEFAULT_FILL_TIMEOUT_S,
                        max_entries: int | None = None) -> bool:
    """Stale-while-revalidate: schedule one background :func:`refresh` of a stale key.

    ``handle`` is a function handle of the action to run.  False when a live claim already holds the
    key (a refresh or a fill is running): at most one refresh per key at a time.
    """
    key = _key(name, args)
    _checked(shared.check_ttl, ttl)
    timeout = _checked(shared.check_seconds, fill_timeout, "fill_timeout", positive=True)
    fill_id = await _claim(ctx, key, name, "refresh", timeout, await _fill(ctx, key))
    if fill_id is None:
        return False
    await ctx.scheduler.run_after(0, refresh, name=name, args=args, handle=handle, fill_id=fill_id, ttl=ttl,
                                  stale_while_revalidate=stale_while_revalidate, max_entries=max_entries)
    return True


@component.action(internal=True)
async def refresh(ctx: ActionCtx, name: str, args: dict[str, Any], handle: str, fill_id: str,
                  ttl: float | None = None, stale_while_revalidate: float = 0.0,
                  max_entries: int | None = None) -> str:
    """Run the action behind ``handle`` and store its result (a job :func:`start_refresh` scheduled)."""
    try:
        value = await ctx.run_action(handle, **args)
        res = await ctx.run_mutation(put, name=name, args=args, value=value, ttl=ttl, fill_id=fill_id, force=True,
                                     stale_while_revalidate=stale_while_revalidate, max_entries=max_entries)
    except Exception as exc:  # the action failed, or its result cannot be stored
        await ctx.run_mutation(release, fill_id=fill_id)
        ctx.log.warning("action_cache: the refresh of %s failed (%s: %s); the stale value stays", name,
                        type(exc).__name__, exc)
        return "failed"
    return str(res["put"])


@component.mutation(internal=True)
async def evict(ctx: MutationCtx, name: str, max_entries: int) -> int:
    """Delete the least recently used entries of ``name`` beyond ``max_entries``; return how many."""
    cap = _checked(shared.check_max_entries, max_entries)
    assert cap is not None
    page = await ctx.db.query("entries").with_index(BY_NAME_USED, lambda q: q.eq("name", name)).order(
        "desc").take(cap + EVICT_BATCH)
    for entry in page[cap:]:
        await _delete_entry(ctx, entry)
    if len(page) == cap + EVICT_BATCH:
        await ctx.scheduler.run_after(0, evict, name=name, max_entries=cap)
    return max(0, len(page) - cap)


@component.mutation
async def remove(ctx: MutationCtx, name: str, args: dict[str, Any]) -> bool:
    """Delete the entry of ``args`` under ``name``; whether there was one.

    A fill of that key in flight is cancelled too (its claim deleted): its result, computed from what
    was true before the removal, is returned to its caller but not stored (``put: dropped``).
    """
    key = _key(name, args)
    fill = await _fill(ctx, key)
    if fill is not None:
        await ctx.db.delete(fill["_id"])
    entry = await _entry(ctx, key)
    if entry is None:
        return False
    await _delete_entry(ctx, entry)
    return True


@component.mutation
async def remove_all(ctx: MutationCtx, name: str | None = None, before: float | None = None,
                     batch_size: int = shared.DEFAULT_BATCH, cancel_fills: bool = True) -> dict[str, Any]:
    """Delete entries (of ``name`` only, if given; written before ``before`` only, if given).

    Deletes ``batch_size`` per transaction and schedules the next batch itself while it deleted a full
    one; ``{"deleted": <this batch>, "more": <a next batch was scheduled>}``.  The first batch also
    cancels the fills in flight that match (of ``name``; started before ``before``), as :func:`remove`
    does; the later batches leave alone the fills that started after it.
    """
    size = _checked(shared.check_batch, batch_size)
    if cancel_fills:
        for fill in await ctx.db.query("fills").filter(
                lambda d: (name is None or d["name"] == name) and (before is None or d["started_at"] < before)
        ).collect():
            await ctx.db.delete(fill["_id"])
    if name is not None:
        _checked(shared.check_name, name)
        q = ctx.db.query("entries").with_index(BY_NAME_USED, lambda r: r.eq("name", name))
        if before is not None:
            q = q.filter(lambda d: d["written_at"] < before)
    elif before is not None:
        q = ctx.db.query("entries").with_index(BY_WRITTEN, lambda r: r.lt("written_at", before))
    else:
        q = ctx.db.query("entries")
    page = await q.take(size)
    for entry in page:
        await _delete_entry(ctx, entry)
    more = len(page) == size
    if more:
        await ctx.scheduler.run_after(0, remove_all, name=name, before=before, batch_size=size, cancel_fills=False)
    return {"deleted": len(page), "more": more}


@component.mutation
async def purge(ctx: MutationCtx, batch_size: int = shared.DEFAULT_BATCH) -> dict[str, Any]:
    """Delete entries past their ``keep_until`` and claims past their ``expires_at`` (the daily cron).

    ``{"entries", "fills", "more"}``: a full batch schedules the next one.
    """
    size = _checked(shared.check_batch, batch_size)
    now = ctx.now()
    expired = await ctx.db.query("entries").with_index(
        BY_KEEP, lambda r: r.gte("keep_until", 0.0).lte("keep_until", now)).take(size)
    for entry in expired:
        await _delete_entry(ctx, entry)
    dead = await ctx.db.query("fills").with_index(BY_EXPIRES, lambda r: r.lt("expires_at", now)).take(size)
    for fill in dead:
        await ctx.db.delete(fill["_id"])
    more = len(expired) == size or len(dead) == size
    if more:
        await ctx.scheduler.run_after(0, purge, batch_size=size)
    return {"entries": len(expired), "fills": len(dead), "more": more}


component.crons.daily("purge", purge, hour_utc=3, minute_utc=0)


@component.query
async def count(ctx: QueryCtx, name: str | None = None) -> int:
    """How many entries there are (of ``name``, if given), expired ones not yet purged included."""
    if name is None:
        return len(await ctx.db.query("entries").collect())
    return len(await ctx.db.query("entries").with_index(BY_NAME_USED, lambda r: r.eq("name", name)).collect())
