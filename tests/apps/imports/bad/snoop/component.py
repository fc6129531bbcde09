"""Imports the sharded counter's functions directly instead of mounting it and using its wrapper."""

from components.sharded_counter.component import add  # refused: another component's implementation
from runtime import Component, QueryCtx

component = Component("snoop")


@component.query
async def name_of_add(ctx: QueryCtx) -> str:
    return add.name
