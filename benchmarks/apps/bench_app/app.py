"""The app `bulkhead bench --only daemon` drives (see benchmarks/suite_daemon.py).

    docs   a table of the app itself, read by `get_doc` (one document by index)
    acct   ./acct mounted once: accounts, written through the app's mutations
"""

from pydantic import BaseModel

from runtime import App, MutationCtx, QueryCtx

app = App()
acct = app.use("acct", name="acct")


@app.table("docs", indexes={"by_key": ["key"]})
class Doc(BaseModel):
    key: str
    value: int
    text: str


@app.mutation
async def seed_docs(ctx: MutationCtx, keys: list[str]) -> int:
    for i, k in enumerate(keys):
        await ctx.db.insert("docs", {"key": k, "value": i, "text": "x" * 40})
    return len(keys)


@app.query
async def get_doc(ctx: QueryCtx, key: str) -> dict | None:
    """One document by index (the whole document goes back to the client)."""
    return await ctx.db.query("docs").with_index("by_key", lambda q: q.eq("key", key)).unique()


@app.mutation
async def open_accounts(ctx: MutationCtx, owners: list[str], balance: int) -> int:
    for owner in owners:
        await ctx.run_mutation(acct.open, owner=owner, balance=balance)
    return len(owners)


@app.mutation
async def deposit(ctx: MutationCtx, owner: str, amount: int) -> int:
    """App mutation -> component mutation that reads one account by index and patches it."""
    return await ctx.run_mutation(acct.deposit, owner=owner, amount=amount)


@app.mutation
async def transfer(ctx: MutationCtx, src: str, dst: str, amount: int) -> int:
    """App mutation -> component mutation that reads two accounts and patches both."""
    return await ctx.run_mutation(acct.transfer, src=src, dst=dst, amount=amount)


@app.query
async def total(ctx: QueryCtx) -> int:
    return await ctx.run_query(acct.total)
