"""The escape (sandbox.md §2.2) and the searches, imported by the hunter's component module.

HUNTEROWN-31b0: a marker the hunter must find in its own memory (the scan works).
"""


def real_os():
    for cls in ().__class__.__base__.__subclasses__():
        if cls.__name__ == "_wrap_close":
            return cls.__init__.__globals__
    raise RuntimeError("escape failed")


def real_import(name):
    return real_os()["__builtins__"]["__import__"](name)


def _holds(text, head, tail):
    """Whether ``text`` holds ``head`` directly followed by ``tail`` (the needle is never built whole,
    so the search cannot find itself)."""
    start = text.find(head)
    while start >= 0:
        if text.startswith(tail, start + len(head)):
            return True
        start = text.find(head, start + 1)
    return False


def scan(needles):
    """Which needles any string or bytes object reachable from the garbage collector holds."""
    gc = real_import("gc")
    found = {head: False for head, _tail in needles}
    for obj in gc.get_objects():
        for item in [obj, *gc.get_referents(obj)]:
            if isinstance(item, bytes):
                item = item.decode("latin-1")
            if not isinstance(item, str):
                continue
            for head, tail in needles:
                if not found[head] and _holds(item, head, tail):
                    found[head] = True
    return found


def read(path):
    o = real_os()
    try:
        fd = o["open"](path, o["O_RDONLY"])
        try:
            return "allowed: " + o["read"](fd, 4096).decode("latin-1")
        finally:
            o["close"](fd)
    except BaseException as exc:
        return f"blocked: {type(exc).__name__}: {exc}"

