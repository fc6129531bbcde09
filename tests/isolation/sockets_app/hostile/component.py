"""A hostile component without network: past the language layer it tries every host socket it is told of.

Each action takes the target (a path, ``@name`` for an abstract socket, or a port) and ``how`` (see
:mod:`hostile.escape`); every one must come back ``blocked:``.
"""

from hostile import escape
from runtime import Component

component = Component("hostile")


@component.action
async def unix(ctx, arg: str, how: str) -> dict:
    return escape.unix(arg, how)


@component.action
async def unix_dgram(ctx, arg: str, how: str) -> dict:
    return escape.unix_dgram(arg, how)


@component.action
async def tcp(ctx, arg: int, how: str) -> dict:
    return escape.tcp(arg, how)


@component.action
async def udp(ctx, arg: int, how: str) -> dict:
    return escape.udp(arg, how)


@component.action
async def socketpair(ctx, how: str) -> dict:
    return escape.socketpair(how)


@component.action
async def reuse_descriptors(ctx, arg: str) -> dict:
    return escape.reuse_descriptors(arg)


@component.action
async def own_endpoint(ctx, how: str) -> dict:
    return escape.own_endpoint(ctx._inv.channel.config["endpoint"], how)


@component.mutation
async def tcp_in_a_mutation(ctx, arg: int, how: str) -> dict:
    """The same from a mutation (the language layer refuses the network there; the escape gets past it)."""
    return escape.tcp(arg, how)


@component.action
async def stat_paths(ctx, paths: list[str]) -> dict:
    return escape.stat_paths(paths)


@component.action
async def machine_code_getpid(ctx) -> dict:
    return escape.machine_code_getpid()


@component.action
async def i386_socket(ctx, arg: str) -> dict:
    return escape.i386_socket(arg)
