"""Deployment environment: a component that requires a variable, mounted twice, beside a spy."""

from runtime import App

app = App()
mailer = app.use("mailer", name="mailer")
backup = app.use("mailer", name="backup", env={"SENDER": "backup@example.com"})
spy = app.use("spy", name="spy")


@app.query
async def env(ctx) -> dict[str, str]:
    return dict(ctx.env)
