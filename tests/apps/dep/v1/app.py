import asyncio

from runtime import App

app = App()
box = app.use("box", name="box")


@app.mutation
async def put(ctx, name: str) -> str:
    return await ctx.run_mutation(box.put, name=name)


@app.query
async def names(ctx) -> list[str]:
    return await ctx.run_query(box.names)


@app.query
async def version(ctx) -> int:
    return 1


@app.action
async def put_many(ctx, names: list[str]) -> list[str]:
    """An action: each run_mutation is its own transaction; it may sleep."""
    out = []
    for n in names:
        out.append(await ctx.run_mutation(put, name=n))
        await asyncio.sleep(0.01)
    return out + [str(len(await ctx.run_query(names_ref)))]


names_ref = names
