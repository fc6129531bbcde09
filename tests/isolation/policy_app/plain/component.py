"""Honest mistakes the language layer must name: the network, files, threads, processes in queries and
mutations; the network in actions of a component that did not declare it."""

import socket
import threading
import urllib.request

from runtime import Component

component = Component("plain")


@component.query
async def uses_socket(ctx) -> str:
    socket.create_connection(("127.0.0.1", 9))
    return "connected"


@component.query
async def uses_urllib(ctx) -> str:
    return urllib.request.urlopen("http://127.0.0.1:9/").read().decode()


@component.mutation
async def uses_open(ctx) -> str:
    return open("/etc/hostname").read()


@component.mutation
async def uses_thread(ctx) -> str:
    threading.Thread(target=print).start()
    return "started"


@component.action
async def action_network_undeclared(ctx) -> str:
    socket.getaddrinfo("localhost", 80)
    return "resolved"


@component.action
async def refused_submodule(ctx) -> str:
    from logging import handlers  # noqa: F401

    return "imported"


@component.action
async def import_socket_in_an_action(ctx) -> str:
    import socket  # noqa: F401

    return "imported"
