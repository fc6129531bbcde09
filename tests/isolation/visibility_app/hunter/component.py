"""A mount that escapes the language layer and hunts for its neighbours' code and secrets."""

from runtime import Component

from . import hunting

component = Component("hunter")


@component.query
async def scan(ctx, needles: list[list[str]]) -> dict:
    return {"pid": hunting.real_os()["getpid"](), "found": hunting.scan(needles)}


@component.query
async def read(ctx, path: str) -> dict:
    return {"pid": hunting.real_os()["getpid"](), "outcome": hunting.read(path)}


@component.query
async def import_unused(ctx, name: str) -> str:
    """A computed name: not in the static closure."""
    return __import__(f"hunter.{name}").__doc__


@component.query
async def env(ctx) -> dict[str, str]:
    return dict(ctx.env)
