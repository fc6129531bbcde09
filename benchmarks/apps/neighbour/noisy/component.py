"""The noisy mount: a query that burns CPU for as long as it is told, and a cheap query to flood with."""

from pydantic import BaseModel

from runtime import Component

component = Component("noisy")


@component.table("junk", indexes={"by_n": ["n"]})
class Junk(BaseModel):
    n: int


@component.query
async def spin(ctx, loops: int, salt: int) -> int:
    """A pure-Python CPU loop of ``loops`` iterations (the bench calibrates it to sit near the 1 s limit).

    ``salt`` makes every call distinct so the query cache never answers it.
    """
    acc = 0
    for i in range(loops):
        acc = (acc * 31 + i) & 0xFFFF
    return acc + salt


@component.query
async def busy(ctx, salt: int) -> int:
    """One index read; ``salt`` makes every call distinct so the query cache never answers it."""
    rows = await ctx.db.query("junk").with_index("by_n", lambda q: q.eq("n", salt % 7)).take(1)
    return len(rows) + salt
