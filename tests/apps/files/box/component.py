"""A child with files of its own."""

from runtime import Component

component = Component("box")


@component.action
async def store(ctx, text: str) -> str:
    return await ctx.storage.store(text.encode(), "text/plain")
