"""Accounts and transfers.  It mounts a counter of its own to count transfers."""

from counter import Counter
from pydantic import BaseModel

from runtime import Component, ComponentError, MutationCtx, QueryCtx

component = Component("ledger")
transfers = Counter(component.use("counter", name="transfers"))


@component.table("accounts", indexes={"by_owner": ["owner"]})
class Account(BaseModel):
    owner: str
    balance: int


async def _account(ctx: QueryCtx, owner: str) -> dict:
    row = await ctx.db.query("accounts").with_index("by_owner", lambda q: q.eq("owner", owner)).unique()
    if row is None:
        raise ComponentError({"code": "no_account", "owner": owner})
    return row


@component.mutation
async def open(ctx: MutationCtx, owner: str, balance: int = 0) -> str:
    existing = await ctx.db.query("accounts").with_index("by_owner", lambda q: q.eq("owner", owner)).unique()
    if existing is not None:
        return existing["_id"]
    return await ctx.db.insert("accounts", {"owner": owner, "balance": balance})


@component.mutation
async def transfer(ctx: MutationCtx, src: str, dst: str, amount: int) -> int:
    """Move ``amount``; raises ComponentError (and writes nothing) if ``src`` cannot pay."""
    a, b = await _account(ctx, src), await _account(ctx, dst)
    await ctx.db.patch(a["_id"], {"balance": a["balance"] - amount})
    await ctx.db.patch(b["_id"], {"balance": b["balance"] + amount})
    if a["balance"] < amount:  # checked after writing on purpose: the rollback undoes the writes
        raise ComponentError({"code": "insufficient_funds", "owner": src, "balance": a["balance"], "amount": amount})
    ctx.log(f"moved {amount} from {src} to {dst}")
    return await transfers.add(ctx, "all")


@component.query
async def balance(ctx: QueryCtx, owner: str) -> int:
    return (await _account(ctx, owner))["balance"]


@component.query
async def total(ctx: QueryCtx) -> int:
    return sum(a["balance"] for a in await ctx.db.query("accounts").collect())


@component.query
async def transfer_count(ctx: QueryCtx) -> int:
    return await transfers.get(ctx, "all")
