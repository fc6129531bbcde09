"""A component that declares the network: its actions may open sockets, its queries still may not."""

import socket

from runtime import Component

component = Component("netty", network=True)


@component.action
async def open_socket(ctx) -> str:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.close()
    return "opened"


@component.query
async def query_socket(ctx) -> str:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    return "opened"
