"""The tour app: a local component mounted twice, and a component that mounts another.

    likes, views   two instances of ./counter (independent tables)
    bank           ./ledger, which mounts its own counter at bank/transfers
"""

from counter import Counter
from pydantic import BaseModel

from runtime import App, ComponentError, MutationCtx, QueryCtx

app = App()
likes = Counter(app.use("counter", name="likes"))
views = Counter(app.use("counter", name="views"))
bank = app.use("ledger", name="bank")


@app.table("failures", indexes={"by_reason": ["reason"]})
class Failure(BaseModel):
    reason: str
    detail: dict


@app.mutation
async def like(ctx: MutationCtx, post: str) -> int:
    print(f"like {post}")
    return await likes.add(ctx, post)


@app.mutation
async def view(ctx: MutationCtx, post: str) -> int:
    return await views.add(ctx, post)


@app.query
async def stats(ctx: QueryCtx, post: str) -> dict[str, int]:
    return {"likes": await likes.get(ctx, post), "views": await views.get(ctx, post)}


@app.mutation
async def open_account(ctx: MutationCtx, owner: str, balance: int = 0) -> str:
    return await ctx.run_mutation(bank.open, owner=owner, balance=balance)


@app.mutation
async def pay(ctx: MutationCtx, src: str, dst: str, amount: int) -> bool:
    """Try a transfer; a refused one is recorded here while the ledger's writes roll back."""
    try:
        await ctx.run_mutation(bank.transfer, src=src, dst=dst, amount=amount)
        return True
    except ComponentError as err:
        await ctx.db.insert("failures", {"reason": err.data["code"], "detail": err.data})
        return False


@app.query
async def balances(ctx: QueryCtx, owners: list[str]) -> dict[str, int]:
    return {o: await ctx.run_query(bank.balance, owner=o) for o in owners}


@app.query
async def failures(ctx: QueryCtx) -> list[str]:
    return [f["reason"] for f in await ctx.db.query("failures").collect()]
