"""An app whose component imports a forbidden module at its top: the deploy must be refused."""

from runtime import App

app = App()
evil = app.use("evil_subprocess", name="evil")


@app.query
async def hello(ctx) -> str:
    return "this app must never serve"
