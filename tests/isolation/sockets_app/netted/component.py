"""A component that declared network: its actions still reach TCP (in the net namespace it has), but no
Unix socket of the host, pathname or abstract, and no socketpair."""

import socket

from netted import escape
from runtime import Component

component = Component("netted", network=True)


@component.action
async def tcp_connect(ctx, arg: int) -> str:
    """Declared network, no escape needed: a real TCP connection to the port, one byte back."""
    with socket.create_connection(("127.0.0.1", arg), timeout=30) as s:
        return s.recv(1).decode()


@component.action
async def inet_sockets(ctx) -> list[str]:
    out = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(family, kind)
            out.append(f"{s.family.name}/{s.type.name}")
            s.close()
    return out


@component.action
async def unix(ctx, arg: str, how: str) -> dict:
    return escape.unix(arg, how)


@component.action
async def unix_dgram(ctx, arg: str, how: str) -> dict:
    return escape.unix_dgram(arg, how)


@component.action
async def socketpair(ctx, how: str) -> dict:
    return escape.socketpair(how)


@component.action
async def netlink(ctx, how: str) -> dict:
    """AF_NETLINK: a family other than AF_INET/AF_INET6, refused with network too."""
    return escape.netlink(how)


@component.action
async def resolve(ctx, host: str) -> list[str]:
    """Name resolution still works with network (glibc's nscd and netlink probes are refused, it falls back)."""
    return sorted({a[4][0] for a in socket.getaddrinfo(host, 80, proto=socket.IPPROTO_TCP)})
