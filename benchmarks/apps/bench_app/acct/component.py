"""Accounts: one document per owner, patched by deposits and transfers.

No ComponentError paths: every call writes, so each figure times a commit.
"""

from pydantic import BaseModel

from runtime import Component, MutationCtx, QueryCtx

component = Component("acct")


@component.table("accounts", indexes={"by_owner": ["owner"]})
class Account(BaseModel):
    owner: str
    balance: int


async def _account(ctx: QueryCtx, owner: str) -> dict | None:
    return await ctx.db.query("accounts").with_index("by_owner", lambda q: q.eq("owner", owner)).unique()


@component.mutation
async def open(ctx: MutationCtx, owner: str, balance: int = 0) -> str:
    row = await _account(ctx, owner)
    if row is not None:
        return row["_id"]
    return await ctx.db.insert("accounts", {"owner": owner, "balance": balance})


@component.mutation
async def deposit(ctx: MutationCtx, owner: str, amount: int) -> int:
    """Add ``amount`` to ``owner`` (opening the account on first use); the new balance."""
    row = await _account(ctx, owner)
    if row is None:
        await ctx.db.insert("accounts", {"owner": owner, "balance": amount})
        return amount
    await ctx.db.patch(row["_id"], {"balance": row["balance"] + amount})
    return row["balance"] + amount


@component.mutation
async def transfer(ctx: MutationCtx, src: str, dst: str, amount: int) -> int:
    """Move ``amount`` from ``src`` to ``dst`` (balances may go negative); the new ``src`` balance."""
    a, b = await _account(ctx, src), await _account(ctx, dst)
    await ctx.db.patch(a["_id"], {"balance": a["balance"] - amount})
    await ctx.db.patch(b["_id"], {"balance": b["balance"] + amount})
    return a["balance"] - amount


@component.query
async def total(ctx: QueryCtx) -> int:
    return sum(a["balance"] for a in await ctx.db.query("accounts").collect())
