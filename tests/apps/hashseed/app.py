"""The app of tests/test_hashseed.py: one component mounted twice, so three workers run the same set code."""

from runtime import App

app = App()
left = app.use("bag", name="left")
right = app.use("bag", name="right")


@app.query
async def orders(ctx, words: list[str]) -> dict[str, list[str]]:
    """The iteration order of ``set(words)`` in the app's worker and in each mount's worker."""
    return {
        "app": list(set(words)),
        "left": await ctx.run_query(left.order, words=words),
        "right": await ctx.run_query(right.order, words=words),
    }
