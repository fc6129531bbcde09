import os  # refused: not in the sandbox's allowlist

from runtime import Component

component = Component("evil_os")


@component.query
async def cwd(ctx) -> str:
    return os.getcwd()
