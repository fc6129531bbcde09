"""The middle link: calls its own child, which reads one document."""

from runtime import Component

component = Component("hop2")
child = component.use("hop3", name="child")


@component.mutation
async def seed(ctx, key: str) -> None:
    await ctx.run_mutation(child.seed, key=key)


@component.query
async def read(ctx, key: str) -> int:
    return await ctx.run_query(child.read, key=key)
