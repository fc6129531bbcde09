"""An app whose local component ``peek`` uses another component through its client wrapper only.

Its functions try the imports the sandbox refuses (another component's implementation modules) and
the ones it allows (client wrappers), for tests/isolation/test_component_imports.py.
"""

from components.sharded_counter import ShardedCounter
from runtime import App, MutationCtx, QueryCtx

app = App()
peek = app.use("peek", name="peek")
hits = ShardedCounter(app.use("sharded_counter", name="hits"))


@app.mutation
async def hit(ctx: MutationCtx, *, name: str) -> int | float:
    """The app reaches a component through its wrapper."""
    await hits.inc(ctx, name)
    return await hits.count(ctx, name)


@app.query
async def import_rate_limiter_algorithm(ctx: QueryCtx) -> str:
    """The app reaching into a component's pure module: refused too."""
    from components.rate_limiter import algorithm  # noqa: F401

    return "imported"
