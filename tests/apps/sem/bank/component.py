from pydantic import BaseModel

from runtime import Component, ComponentError

component = Component("bank")


@component.table("accounts", indexes={"by_name": ["name"]})
class Account(BaseModel):
    name: str
    balance: int
    moves: int = 0


@component.mutation
async def seed(ctx, names: list[str], balance: int) -> None:
    for n in names:
        await ctx.db.insert("accounts", {"name": n, "balance": balance, "moves": 0})


async def _get(ctx, name):
    row = await ctx.db.query("accounts").with_index("by_name", lambda q: q.eq("name", name)).unique()
    if row is None:
        raise ComponentError({"missing": name})
    return row


@component.mutation
async def transfer(ctx, src: str, dst: str, amount: int) -> None:
    a = await _get(ctx, src)
    b = await _get(ctx, dst)
    await ctx.db.patch(a["_id"], {"balance": a["balance"] - amount, "moves": a["moves"] + 1})
    await ctx.db.patch(b["_id"], {"balance": b["balance"] + amount, "moves": b["moves"] + 1})


@component.query
async def summary(ctx) -> dict[str, int]:
    rows = await ctx.db.query("accounts").collect()
    return {"total": sum(r["balance"] for r in rows), "moves": sum(r["moves"] for r in rows), "accounts": len(rows)}
