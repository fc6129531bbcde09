import subprocess  # refused

from runtime import Component

component = Component("evil_subprocess")


@component.query
async def whoami(ctx) -> str:
    return subprocess.check_output(["id"]).decode()
