"""A component that only reports the length of the token its parent passed (never the token)."""

from runtime import Component

component = Component("vault")
print("vault: loaded")  # outside any call: it reaches the daemon's log through the worker's stdout


@component.query
async def token_length(ctx) -> int:
    return len(ctx.env.get("VAULT_TOKEN", ""))
