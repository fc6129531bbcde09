from runtime import Component, EnvVar

component = Component("mailer", env={
    "API_KEY": EnvVar("the mail provider's key", required=True),
    "SENDER": EnvVar("the From address", default="noreply@example.com"),
    "LEVEL": "info",
})


@component.query
async def settings(ctx) -> dict[str, str]:
    return dict(ctx.env)
