from runtime import App

app = App()
hostile = app.use("hostile", name="hostile")
netted = app.use("netted", name="netted")
good = app.use("good", name="good")


@app.mutation
async def remember(ctx, text: str) -> str:
    return await ctx.run_mutation(good.put, text=text)


@app.query
async def facts(ctx) -> list[str]:
    return await ctx.run_query(good.all)
