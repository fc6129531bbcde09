"""The rate limiter's implementation: runs only in its own workers.

Tables:

* ``rate_limits {name, key, shard, value, ts}``: two numbers per (name, key, shard),
  indexed by ``(name, key, shard)`` (``key`` None is the limit's singleton);
* ``pending {name, key, count, ts}``: consumption queued by *lazy* limits, indexed by
  ``(name, key, ts)``, folded into ``rate_limits`` by one writer at a time.

The arithmetic is :mod:`components.rate_limiter.algorithm`; this module reads
documents, calls it and writes what it decided.
"""


from typing import Any

from pydantic import BaseModel

from components.rate_limiter import algorithm as alg
from components.rate_limiter.shared import LimitConfig
from runtime import Component, MutationCtx, QueryCtx, ValidationError

component = Component("rate_limiter")

BY_SHARD = "by_name_key_shard"
BY_TS = "by_name_key_ts"
CLEAR_PAGE = 100
FOLD_BATCH = 64
"""Queued entries one fold takes (oldest first): keeps a fold short, and a fold that stops before the end
of the queue has not read the range that new entries are appended to, so it does not conflict with them."""


@component.table("rate_limits", indexes={BY_SHARD: ["name", "key", "shard"]})
class Bucket(BaseModel):
    """One shard of one limit for one key."""

    name: str
    key: str | None = None
    shard: int
    value: float
    ts: float


@component.table("pending", indexes={BY_TS: ["name", "key", "ts"]})
class Pending(BaseModel):
    """Consumption granted by a lazy limit and not yet folded into its bucket."""

    name: str
    key: str | None = None
    count: float
    ts: float


def _validate(name: str, config: alg.Config, count: float, reserve: bool) -> None:
    try:
        alg.validate_request(name, config, count, reserve)
    except alg.RateLimitRequestError as exc:
        raise ValidationError(str(exc)) from None


async def _bucket(ctx: QueryCtx, name: str, key: str | None, shard: int) -> dict[str, Any] | None:
    return await ctx.db.query("rate_limits").with_index(
        BY_SHARD, lambda q: q.eq("name", name).eq("key", key).eq("shard", shard)).unique()


def _state(doc: dict[str, Any] | None) -> alg.State | None:
    return alg.State(doc["value"], doc["ts"]) if doc is not None else None


async def _write(ctx: MutationCtx, doc: dict[str, Any] | None, name: str, key: str | None, shard: int,
                 state: alg.State) -> None:
    body = {"name": name, "key": key, "shard": shard, "value": float(state.value), "ts": float(state.ts)}
    if doc is None:
        await ctx.db.insert("rate_limits", body)
    else:
        await ctx.db.replace(doc["_id"], body)


async def _pending(ctx: QueryCtx, name: str, key: str | None, limit: int | None = None) -> list[dict[str, Any]]:
    q = ctx.db.query("pending").with_index(BY_TS, lambda q: q.eq("name", name).eq("key", key))
    return await (q.take(limit) if limit is not None else q.collect())


async def _read_shards(ctx: QueryCtx, config: alg.Config, name: str, key: str | None
                       ) -> tuple[list[tuple[int, alg.State | None]], dict[int, dict[str, Any] | None]]:
    """Read one random shard, and a second one when it exists and there are 3 or more shards."""
    first, second = alg.pick_shards(ctx.random, config.shard_count)
    docs = {first: await _bucket(ctx, name, key, first)}
    if second is not None and docs[first] is not None:
        docs[second] = await _bucket(ctx, name, key, second)
    return [(s, _state(d)) for s, d in docs.items()], docs


def _result(decision: alg.Decision) -> dict[str, Any]:
    return {"ok": decision.ok, "retry_after": decision.retry_after, "remaining": decision.remaining}


async def _decide(ctx: QueryCtx, name: str, config: alg.Config, key: str | None, count: float, reserve: bool
                  ) -> tuple[alg.Decision, dict[int, dict[str, Any] | None]]:
    reads, docs = await _read_shards(ctx, config, name, key)
    phases = [ctx.random.random() for _ in reads]
    return alg.evaluate(config, reads, ctx.now(), count, reserve, phases), docs


async def _lazy_view(ctx: QueryCtx, name: str, config: alg.Config, key: str | None, limit: int | None = None
                     ) -> tuple[dict[str, Any] | None, alg.State | None, list[dict[str, Any]], float]:
    """A lazy limit's bucket document, its state with the (oldest ``limit``) queued entries folded in,
    those entries, and the phase used."""
    doc = await _bucket(ctx, name, key, 0)
    queued = await _pending(ctx, name, key, limit)
    phase = ctx.random.random()
    state = alg.fold(_state(doc), config, [(p["ts"], p["count"]) for p in queued], phase)
    return doc, state, queued, phase


async def _limit_lazy(ctx: MutationCtx, name: str, config: alg.Config, key: str | None, count: float,
                      reserve: bool) -> dict[str, Any]:
    """Lazy limit: most calls only read the bucket and append to the queue (no write-write hot spot)."""
    folding = ctx.random.random() * config.fold_every < 1.0
    phase = ctx.random.random()
    if folding:
        doc, state, queued, phase = await _lazy_view(ctx, name, config, key, FOLD_BATCH)
        for p in queued:
            await ctx.db.delete(p["_id"])
    else:
        doc = await _bucket(ctx, name, key, 0)
        state = _state(doc)
    decision = alg.evaluate(config, [(0, state)], ctx.now(), count, reserve, [phase])
    if folding:
        new = decision.writes.get(0, state)
        if new is not None:
            await _write(ctx, doc, name, key, 0, new)
    elif decision.ok:
        await ctx.db.insert("pending", {"name": name, "key": key, "count": float(count), "ts": ctx.now()})
    return _result(decision)


@component.mutation
async def limit(ctx: MutationCtx, name: str, config: LimitConfig, key: str | None = None, count: float = 1.0,
                reserve: bool = False) -> dict[str, Any]:
    """Consume ``count`` from limit ``name`` for ``key``: ``{ok, retry_after, remaining}``.

    A refusal writes nothing.  ``reserve=True`` lets the value go below 0 (up
    to ``max_reserved``): the call succeeds and ``retry_after`` says when the
    reserved capacity is really there.
    """
    _validate(name, config, count, reserve)
    if config.lazy:
        return await _limit_lazy(ctx, name, config, key, count, reserve)
    decision, docs = await _decide(ctx, name, config, key, count, reserve)
    for shard, state in decision.writes.items():
        await _write(ctx, docs.get(shard), name, key, shard, state)
    return _result(decision)


@component.query
async def check(ctx: QueryCtx, name: str, config: LimitConfig, key: str | None = None, count: float = 1.0,
                reserve: bool = False) -> dict[str, Any]:
    """What ``limit`` would answer now, consuming nothing."""
    _validate(name, config, count, reserve)
    if config.lazy:
        _doc, state, _queued, phase = await _lazy_view(ctx, name, config, key)
        return _result(alg.evaluate(config, [(0, state)], ctx.now(), count, reserve, [phase]))
    decision, _docs = await _decide(ctx, name, config, key, count, reserve)
    return _result(decision)


@component.query
async def get_value(ctx: QueryCtx, name: str, config: LimitConfig, key: str | None = None,
                    sample_shards: int = 1) -> dict[str, Any]:
    """``{value, ts, shard, config}`` of the fullest of ``sample_shards`` random shards.

    For a fixed window without ``start``, ``config["start"]`` is the inferred window start.
    """
    if config.lazy:
        _doc, state, _queued, _phase = await _lazy_view(ctx, name, config, key)
        reads: list[tuple[int, alg.State | None]] = [(0, state)]
    else:
        n = config.shard_count
        picked = ctx.random.sample(range(n), min(max(1, sample_shards), n))
        reads = [(s, _state(await _bucket(ctx, name, key, s))) for s in picked]
    shard, calc = alg.sample_value(config, reads)
    out = config.model_dump()
    if calc.window_start is not None and out.get("start") is None:
        out["start"] = calc.window_start
    return {"value": calc.value, "ts": calc.ts, "shard": shard, "config": out}


@component.mutation
async def fold_pending(ctx: MutationCtx, name: str, config: LimitConfig, key: str | None = None) -> int:
    """Fold up to FOLD_BATCH (64) of a lazy limit's queued entries into its bucket; return how many.

    Call again while it returns FOLD_BATCH.
    """
    doc, state, queued, _phase = await _lazy_view(ctx, name, config, key, FOLD_BATCH)
    for p in queued:
        await ctx.db.delete(p["_id"])
    if queued and state is not None:
        await _write(ctx, doc, name, key, 0, state)
    return len(queued)


@component.mutation
async def reset(ctx: MutationCtx, name: str, key: str | None = None) -> int:
    """Delete every shard (and queued entry) of ``name`` for ``key``; return how many documents went."""
    docs = await ctx.db.query("rate_limits").with_index(BY_SHARD, lambda q: q.eq("name", name).eq("key", key)).collect()
    docs += await _pending(ctx, name, key)
    for d in docs:
        await ctx.db.delete(d["_id"])
    return len(docs)


@component.mutation
async def clear_all(ctx: MutationCtx, before: float | None = None, page_size: int = CLEAR_PAGE,
                    reschedule: bool = False) -> dict[str, Any]:
    """Delete up to ``page_size`` buckets with ``ts < before`` (all when None); ``{deleted, more}``.

    With ``reschedule=True`` it schedules itself for the next page while more
    remain (as the reference does); otherwise call again while ``more``.
    """
    if page_size < 1:
        raise ValidationError(f"page_size must be >= 1, not {page_size}")
    page = await ctx.db.query("rate_limits").filter(lambda d: before is None or d["ts"] < before).take(page_size + 1)
    for d in page[:page_size]:
        await ctx.db.delete(d["_id"])
    more = len(page) > page_size
    if more and reschedule:
        await ctx.scheduler.run_after(0, clear_all, before=before, page_size=page_size, reschedule=True)
    return {"deleted": min(len(page), page_size), "more": more}


@component.mutation
async def get_server_time(ctx: MutationCtx) -> float:
    """The server's clock (a mutation, so it is never served from a cache)."""
    return ctx.now()
