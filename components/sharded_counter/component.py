"""The sharded counter's implementation: runs only in its own workers.

One table, ``counters {name, value, shard}``, indexed by ``(name, shard)``.
A key's value is the sum of its shard documents; an ``add`` touches one shard,
so concurrent adds to one key conflict only when they pick the same shard.
"""


from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from components.sharded_counter import shards as alg
from runtime import Component, MutationCtx, QueryCtx, ValidationError

component = Component("sharded_counter")

_T = TypeVar("_T")

INDEX = "by_name_shard"


@component.table("counters", indexes={INDEX: ["name", "shard"]})
class CounterShard(BaseModel):
    """One shard of one key."""

    name: str
    value: int | float
    shard: int


def _checked(fn: Callable[..., _T], *args: Any) -> _T:
    try:
        return fn(*args)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


async def _shard_doc(ctx: QueryCtx, name: str, shard: int) -> dict[str, Any] | None:
    return await ctx.db.query("counters").with_index(INDEX, lambda q: q.eq("name", name).eq("shard", shard)).unique()


async def _all_docs(ctx: QueryCtx, name: str) -> list[dict[str, Any]]:
    return await ctx.db.query("counters").with_index(INDEX, lambda q: q.eq("name", name)).collect()


@component.mutation
async def add(ctx: MutationCtx, name: str, count: int | float = 1, shard: int | None = None,
              shards: int = alg.DEFAULT_SHARDS, integer: bool = False) -> int:
    """Add ``count`` (negative subtracts) to one shard of ``name``; return the shard used.

    ``shard`` picks the shard explicitly (any index >= 0); otherwise one of
    ``0..shards-1`` is chosen at random.
    """
    _checked(alg.check_count, count, integer)
    _checked(alg.check_shards, shards)
    if shard is None:
        shard = alg.pick_shard(ctx.random, shards)
    elif shard < 0:
        raise ValidationError(f"shard must be >= 0, not {shard}")
    doc = await _shard_doc(ctx, name, shard)
    if doc is None:
        await ctx.db.insert("counters", {"name": name, "value": count, "shard": shard})
    else:
        await ctx.db.replace(doc["_id"], {"name": name, "value": doc["value"] + count, "shard": shard})
    return shard


@component.query
async def count(ctx: QueryCtx, name: str) -> int | float:
    """The exact value: the sum of every shard of ``name`` (also shards beyond the current shard count)."""
    return alg.exact_sum(d["value"] for d in await _all_docs(ctx, name))


@component.query
async def estimate_count(ctx: QueryCtx, name: str, read_from_shards: int = 1, shards: int = alg.DEFAULT_SHARDS,
                         integer: bool = False) -> int | float:
    """Read ``read_from_shards`` random shards and scale their sum up to ``shards``."""
    _checked(alg.check_shards, shards)
    picked = alg.sample_shards(ctx.random, shards, read_from_shards)
    values = []
    for s in picked:
        doc = await _shard_doc(ctx, name, s)
        values.append(doc["value"] if doc else 0)
    return _checked(alg.estimate, values, shards, integer)


@component.mutation
async def rebalance(ctx: MutationCtx, name: str, shards: int = alg.DEFAULT_SHARDS, integer: bool = False) -> None:
    """Spread the value of ``name`` evenly over shards ``0..shards-1``; delete every shard >= ``shards``."""
    _checked(alg.check_shards, shards)
    docs = await _all_docs(ctx, name)
    targets = _checked(alg.rebalanced, alg.exact_sum(d["value"] for d in docs), shards, integer)
    by_shard = {d["shard"]: d for d in docs}
    for i, value in enumerate(targets):
        doc = by_shard.pop(i, None)
        if doc is None:
            await ctx.db.insert("counters", {"name": name, "value": value, "shard": i})
        elif doc["value"] != value or type(doc["value"]) is not type(value):
            await ctx.db.replace(doc["_id"], {"name": name, "value": value, "shard": i})
    for doc in by_shard.values():
        await ctx.db.delete(doc["_id"])


@component.mutation
async def reset(ctx: MutationCtx, name: str) -> None:
    """Delete every shard of ``name`` (its value becomes 0)."""
    for doc in await _all_docs(ctx, name):
        await ctx.db.delete(doc["_id"])


@component.query
async def shard_values(ctx: QueryCtx, name: str) -> dict[str, int | float]:
    """Each shard's value by shard index (as strings): for inspection and tests."""
    return {str(d["shard"]): d["value"] for d in await _all_docs(ctx, name)}
