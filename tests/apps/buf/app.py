"""Test app for writes a worker buffers: read-your-writes, late errors, many writes, sub-transactions."""

from pydantic import BaseModel

from runtime import App, ComponentError, MutationCtx, QueryCtx

app = App()


@app.table("items", indexes={"by_name": ["name"]})
class Item(BaseModel):
    name: str
    n: int
    blob: str = ""


@app.mutation
async def seed(ctx: MutationCtx, count: int) -> list[str]:
    return [await ctx.db.insert("items", {"name": f"i{i}", "n": 0}) for i in range(count)]


@app.mutation
async def bump_and_read(ctx: MutationCtx, name: str) -> dict:
    row = await ctx.db.query("items").with_index("by_name", lambda q: q.eq("name", name)).unique()
    await ctx.db.patch(row["_id"], {"n": row["n"] + 1})  # buffered: the read below must see it
    again = await ctx.db.query("items").with_index("by_name", lambda q: q.eq("name", name)).unique()
    fetched = await ctx.db.get(row["_id"])
    await ctx.db.delete(row["_id"])
    gone = await ctx.db.get(row["_id"])
    await ctx.db.insert("items", {"name": name, "n": again["n"]})
    return {"again": again["n"], "fetched": fetched["n"], "gone": gone}


@app.mutation
async def bump_all(ctx: MutationCtx) -> int:
    rows = await ctx.db.query("items").collect()
    for r in rows:  # more writes than one frame buffers: flushed along the way
        await ctx.db.patch(r["_id"], {"n": r["n"] + 1})
    return len(rows)


@app.mutation
async def oversize(ctx: MutationCtx, name: str) -> None:
    row = await ctx.db.query("items").with_index("by_name", lambda q: q.eq("name", name)).unique()
    await ctx.db.patch(row["_id"], {"n": -1})
    await ctx.db.patch(row["_id"], {"blob": "x" * (2 * 1024 * 1024)})  # past document_size_bytes, found at the end


@app.mutation
async def patch_then_fail(ctx: MutationCtx, name: str) -> None:
    row = await ctx.db.query("items").with_index("by_name", lambda q: q.eq("name", name)).unique()
    await ctx.db.patch(row["_id"], {"n": 1000})
    raise ComponentError({"failed": True})


@app.mutation
async def caller_catches(ctx: MutationCtx, name: str) -> str:
    try:
        await ctx.run_mutation(patch_then_fail, name=name)
    except ComponentError:
        pass
    row = await ctx.db.query("items").with_index("by_name", lambda q: q.eq("name", name)).unique()
    return f"n={row['n']}"


@app.query
async def total(ctx: QueryCtx) -> int:
    return sum(r["n"] for r in await ctx.db.query("items").collect())


@app.query
async def n_of(ctx: QueryCtx, name: str) -> int:
    row = await ctx.db.query("items").with_index("by_name", lambda q: q.eq("name", name)).unique()
    return row["n"] if row else -1


@app.mutation
async def oversize_caught(ctx: MutationCtx, name: str) -> str:
    """The buffered write fails when the next read carries it; the code catches that, yet the call must fail."""
    row = await ctx.db.query("items").with_index("by_name", lambda q: q.eq("name", name)).unique()
    await ctx.db.patch(row["_id"], {"n": -5})
    await ctx.db.patch(row["_id"], {"blob": "x" * (2 * 1024 * 1024)})
    try:
        await ctx.db.query("items").take(1)
    except Exception:  # noqa: BLE001 - the point: swallowing it must not commit half the writes
        pass
    await ctx.db.insert("items", {"name": "after", "n": 1})
    return "swallowed"
