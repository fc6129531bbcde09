import threading

from pydantic import BaseModel

from runtime import Component

component = Component("pool")

_parked = threading.Event()
"""Never set: a thread started by ``spawn`` waits on it for the life of the worker."""


@component.table("hits")
class Hit(BaseModel):
    n: int


@component.action
async def spawn(ctx) -> str:
    """Leave a thread running after the call (allowed in an action; the worker is recycled before its next call)."""
    threading.Thread(target=_parked.wait, daemon=True).start()
    return "spawned"


@component.action
async def spawn_and_join(ctx) -> str:
    """A thread that is gone before the call returns: the worker keeps serving."""
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()
    return "joined"


@component.mutation
async def hit(ctx, n: int) -> int:
    await ctx.db.insert("hits", {"n": n})
    return len(await ctx.db.query("hits").collect())


def _real_os():
    """The real ``os`` module's globals, past the language layer (as tests/isolation/app/evil does)."""
    for cls in ().__class__.__base__.__subclasses__():
        if cls.__name__ == "_wrap_close":
            return cls.__init__.__globals__
    raise RuntimeError("escape failed")


@component.action
async def fork_child(ctx) -> int:
    """Leave a child process behind (only possible with the OS layers off: seccomp refuses fork); its pid."""
    os = _real_os()
    pid = os["fork"]()
    if pid == 0:  # the child waits for a signal: the worker's death (its process group) ends it
        try:
            while True:
                os["pause"]()
        finally:
            os["_exit"](0)
    return pid
