"""The app of tests/test_recycle.py: a mount whose action leaves a thread behind, and a neighbour of the same code."""

from runtime import App

app = App()
spawner = app.use("pool", name="spawner")
neighbour = app.use("pool", name="neighbour")


@app.action
async def spawn(ctx) -> str:
    return await ctx.run_action(spawner.spawn)


@app.action
async def spawn_and_join(ctx) -> str:
    return await ctx.run_action(spawner.spawn_and_join)


@app.mutation
async def hit(ctx, mount: str, n: int) -> int:
    return await ctx.run_mutation(spawner.hit if mount == "spawner" else neighbour.hit, n=n)


@app.action
async def fork_child(ctx) -> int:
    return await ctx.run_action(spawner.fork_child)
