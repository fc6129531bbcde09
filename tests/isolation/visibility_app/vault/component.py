"""The neighbour: its source and its env values must stay out of every other mount's reach.

VAULTSOURCE-5b8e: a marker only this file holds.
"""

from runtime import Component

component = Component("vault", env={"VAULT_KEY": "VAULTKEY-d7c2"})


@component.query
async def secrets(ctx) -> dict[str, str]:
    return {name: ctx.env[name] for name in sorted(ctx.env)}
