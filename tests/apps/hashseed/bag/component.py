from runtime import Component

component = Component("bag")


@component.query
async def order(ctx, words: list[str]) -> list[str]:
    """The iteration order of a set of strings built in this worker: it depends on the string-hash seed."""
    return list(set(words))
