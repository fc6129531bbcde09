"""The app `bulkhead bench --only peers` drives: two-row transfers, the workload of `peer.sqlite_transfer_8`."""

from pydantic import BaseModel

from runtime import App

app = App()


@app.table("accounts", indexes={"by_name": ["name"]})
class Account(BaseModel):
    name: str
    balance: int


@app.mutation
async def open_accounts(ctx, names: list[str], balance: int) -> None:
    for name in names:
        await ctx.db.insert("accounts", {"name": name, "balance": balance})


async def _account(ctx, name: str) -> dict:
    return await ctx.db.query("accounts").with_index("by_name", lambda q: q.eq("name", name)).unique()


@app.mutation
async def transfer(ctx, src: str, dst: str, amount: int) -> int:
    """Move ``amount`` from ``src`` to ``dst`` (read both rows, write both); return the new source balance."""
    a = await _account(ctx, src)
    b = await _account(ctx, dst)
    await ctx.db.patch(a["_id"], {"balance": a["balance"] - amount})
    await ctx.db.patch(b["_id"], {"balance": b["balance"] + amount})
    return a["balance"] - amount


@app.query
async def total(ctx) -> int:
    return sum(row["balance"] for row in await ctx.db.query("accounts").collect())
