"""A child with typed functions: its own validators run on every call into it."""

from runtime import Component, MutationCtx, QueryCtx

component = Component("typed")


@component.mutation
async def double(ctx: MutationCtx, n: int) -> int:
    return 2 * n


@component.query
async def liar(ctx: QueryCtx) -> int:
    return "not an int"  # type: ignore[return-value]


@component.mutation
async def measure(ctx: MutationCtx, blob: str) -> int:
    return len(blob)
