"""Amplifying values: a mount that sends container bombs and over-long values, beside a steady neighbour."""

from runtime import App

app = App()
bomber = app.use("bomber", name="bomber")
steady = app.use("steady", name="steady")


@app.query
async def relay(ctx, n: int) -> int:
    """A nested call whose arguments hold a list of ``n`` elements (checked in this worker, then by the coordinator)."""
    return await ctx.run_query(steady.count, items=list(range(n)))


@app.query
async def relay_deep(ctx, depth: int) -> int:
    value: list = []
    for _ in range(depth):
        value = [value]
    return await ctx.run_query(steady.count, items=value)
