"""Imports of another component: its client wrapper works, its implementation is refused by name."""

from components.sharded_counter import ShardedCounter
from components.sharded_counter.client import CounterKey
from runtime import Component, MutationCtx, QueryCtx

component = Component("peek")
counter = ShardedCounter(component.use("sharded_counter", name="counter"))
total: CounterKey = counter.for_key("total")


@component.mutation
async def bump(ctx: MutationCtx, *, name: str) -> list[int | float]:
    """Count ``name`` and the total through the wrapper; return both counts."""
    await counter.inc(ctx, name)
    await total.inc(ctx)
    return [await counter.count(ctx, name), await total.count(ctx)]


@component.query
async def import_component_module(ctx: QueryCtx) -> str:
    """``import components.X.component``: the implementation itself."""
    import components.sharded_counter.component  # noqa: F401

    return "imported"


@component.query
async def import_pure_module_from(ctx: QueryCtx) -> str:
    """``from components.X import <module>``: a pure module of the implementation, named in a fromlist."""
    from components.sharded_counter import shards  # noqa: F401

    return "imported"


@component.query
async def import_name_from_implementation(ctx: QueryCtx) -> str:
    """``from components.X.component import name``."""
    from components.aggregate.btree import BTree  # noqa: F401

    return "imported"


@component.query
async def import_wrapper_lazily(ctx: QueryCtx) -> str:
    """Another component's client wrapper, imported inside a function: allowed."""
    from components.aggregate import Aggregate
    from components.rate_limiter.client import RateLimiter

    return f"{Aggregate.__name__} {RateLimiter.__name__}"
