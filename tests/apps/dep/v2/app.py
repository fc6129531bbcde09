from runtime import App

app = App()


@app.query
async def version(ctx) -> int:
    return 2
