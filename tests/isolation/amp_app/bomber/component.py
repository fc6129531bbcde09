"""Escapes the language layer (the real os, sys, msgpack and zmq) and sends what an honest worker never would."""

from runtime import Component

component = Component("bomber")


def _real_os():
    for cls in ().__class__.__base__.__subclasses__():
        if cls.__name__ == "_wrap_close":
            return cls.__init__.__globals__
    raise RuntimeError("escape failed")


def _import(name):
    return _real_os()["__builtins__"]["__import__"](name, fromlist=["_"])


def _skip_own_checks():
    """Make this worker's own check of return values a no-op (it is the worker's, so escaped code owns it)."""
    _import("sys").modules["runtime.values"].check_value = lambda value, limits=None, path="": value


@component.query
async def long_result(ctx, n: int) -> list:
    _skip_own_checks()
    return list(range(n))


@component.query
async def deep_result(ctx, depth: int) -> list:
    _skip_own_checks()
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@component.query
async def pid(ctx) -> int:
    return _real_os()["getpid"]()


@component.action
async def container_bombs(ctx, frames: int, containers: int) -> dict:
    """Syscall frames whose args hold ``containers`` empty lists each (one byte apiece on the wire)."""
    msgpack, zmq = _import("msgpack"), _import("zmq")
    s = zmq.Socket.shadow(ctx._inv.channel.sock.underlying)
    bomb = msgpack.packb({"version": 1, "type": "syscall", "request_id": 777_000, "token": ctx._inv.token,
                          "op": "get", "args": {"id": [[]] * containers}})
    for _ in range(frames):
        s.send(bomb)
    _import("time").sleep(5)
    return {"pid": _real_os()["getpid"](), "sent": len(bomb)}


@component.query
async def count(ctx, items: list) -> int:
    return len(items)


@component.query
async def nested_raw(ctx, n: int) -> int:
    """A nested call sent past this worker's own check of its arguments."""
    return await ctx._inv.syscall("run", {"ref": count.to_wire(), "kind": "query", "args": {"items": list(range(n))}})
