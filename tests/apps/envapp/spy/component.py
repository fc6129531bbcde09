"""Escapes the language layer and searches its heap for a value it must not hold."""

from runtime import Component

component = Component("spy")


def _real_os():
    for cls in ().__class__.__base__.__subclasses__():
        if cls.__name__ == "_wrap_close":
            return cls.__init__.__globals__
    raise RuntimeError("escape failed")


def _holds(text, head, tail):
    start = text.find(head)
    while start >= 0:
        if text.startswith(tail, start + len(head)):
            return True
        start = text.find(head, start + 1)
    return False


@component.query
async def scan(ctx, head: str, tail: str) -> dict:
    """Whether any string or bytes reachable from the garbage collector holds head+tail (never built)."""
    o = _real_os()
    gc = o["__builtins__"]["__import__"]("gc")
    found = False
    for obj in gc.get_objects():
        for item in [obj, *gc.get_referents(obj)]:
            if isinstance(item, bytes):
                item = item.decode("latin-1")
            if isinstance(item, str) and _holds(item, head, tail):
                found = True
    return {"pid": o["getpid"](), "found": found, "env": dict(ctx.env)}
