"""Test app for the worker's read cache: reads by Id, writes by Id and by index, nested calls."""

from pydantic import BaseModel

from runtime import App, MutationCtx, QueryCtx

app = App()


@app.table("docs", indexes={"by_name": ["name"]})
class Doc(BaseModel):
    name: str
    n: int


@app.mutation
async def make(ctx: MutationCtx, name: str, n: int = 0) -> str:
    return await ctx.db.insert("docs", {"name": name, "n": n})


@app.query
async def get(ctx: QueryCtx, id: str, nonce: int = 0) -> dict | None:
    """``nonce`` only makes the call differ, so the coordinator's query cache does not answer it."""
    return await ctx.db.get(id)


@app.query
async def n_twice(ctx: QueryCtx, id: str, nonce: int = 0) -> list[int]:
    doc = await ctx.db.get(id)
    again = await ctx.db.get(id)
    assert doc is not None and again is not None
    doc["n"] = -1000  # changing what a read returned changes nothing stored or cached
    return [doc["n"], again["n"]]


@app.mutation
async def bump(ctx: MutationCtx, id: str) -> int:
    doc = await ctx.db.get(id)
    assert doc is not None
    await ctx.db.patch(id, {"n": doc["n"] + 1})
    return doc["n"] + 1


@app.mutation
async def move(ctx: MutationCtx, src: str, dst: str, amount: int) -> None:
    a, b = await ctx.db.get(src), await ctx.db.get(dst)
    assert a is not None and b is not None
    await ctx.db.patch(src, {"n": a["n"] - amount})
    await ctx.db.patch(dst, {"n": b["n"] + amount})


@app.mutation
async def set_by_name(ctx: MutationCtx, name: str, n: int, filler: int = 0) -> None:
    """Write through an index (no read by Id); ``filler`` more inserts in the same commit."""
    doc = await ctx.db.query("docs").with_index("by_name", lambda q: q.eq("name", name)).unique()
    assert doc is not None
    await ctx.db.patch(doc["_id"], {"n": n})
    for i in range(filler):
        await ctx.db.insert("docs", {"name": f"filler-{i}", "n": i})


@app.mutation
async def write_then_read(ctx: MutationCtx, id: str) -> dict:
    before = await ctx.db.get(id)
    assert before is not None
    await ctx.db.patch(id, {"n": before["n"] + 10})
    after = await ctx.db.get(id)
    await ctx.db.delete(id)
    gone = await ctx.db.get(id)
    return {"before": before["n"], "after": after["n"] if after else None, "gone": gone}


@app.mutation
async def read_in_nested(ctx: MutationCtx, id: str) -> list[int]:
    """Read, then a nested mutation writes the same document, then read again: the write must be seen."""
    first = await ctx.db.get(id)
    assert first is not None
    await ctx.run_mutation(bump, id=id)
    second = await ctx.db.get(id)
    assert second is not None
    return [first["n"], second["n"]]


@app.mutation
async def withdraw(ctx: MutationCtx, take_from: str, other: str, amount: int) -> bool:
    """Take ``amount`` from one of two accounts if together they hold enough (a write-skew trap: the
    other account is only read, so only the read set can order two of these)."""
    a, b = await ctx.db.get(take_from), await ctx.db.get(other)
    assert a is not None and b is not None
    if a["n"] + b["n"] < amount:
        return False
    await ctx.db.patch(take_from, {"n": a["n"] - amount})
    return True


@app.mutation
async def reset(ctx: MutationCtx, ids: list[str], n: int) -> None:
    for i in ids:
        await ctx.db.replace(i, {"name": "acct", "n": n})


@app.query
async def ns_named(ctx: QueryCtx, name: str, nonce: int = 0) -> list[int]:
    rows = await ctx.db.query("docs").with_index("by_name", lambda q: q.eq("name", name)).collect()
    return sorted(r["n"] for r in rows)


@app.mutation
async def make_many(ctx: MutationCtx, prefix: str, count: int) -> list[str]:
    ids = [await ctx.db.insert("docs", {"name": f"{prefix}{i}", "n": i}) for i in range(count)]
    first = await ctx.db.get(ids[0])  # read back before the commit: the buffered inserts went first
    assert first is not None and first["n"] == 0 and first["_id"] == ids[0]
    return ids
