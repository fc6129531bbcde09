"""Test app for subscriptions and the query cache: two accounts and an unrelated table."""

from pydantic import BaseModel

from runtime import App, ComponentError, MutationCtx, QueryCtx

app = App()


@app.table("accounts", indexes={"by_name": ["name"]})
class Account(BaseModel):
    name: str
    balance: int


@app.table("notes")
class Note(BaseModel):
    text: str


async def _account(ctx, name: str) -> dict | None:
    return await ctx.db.query("accounts").with_index("by_name", lambda q: q.eq("name", name)).unique()


@app.mutation
async def open_account(ctx: MutationCtx, name: str, balance: int) -> None:
    await ctx.db.insert("accounts", {"name": name, "balance": balance})


@app.mutation
async def transfer(ctx: MutationCtx, src: str, dst: str, amount: int) -> None:
    a, b = await _account(ctx, src), await _account(ctx, dst)
    await ctx.db.patch(a["_id"], {"balance": a["balance"] - amount})
    await ctx.db.patch(b["_id"], {"balance": b["balance"] + amount})


@app.mutation
async def set_balance(ctx: MutationCtx, name: str, balance: int) -> None:
    a = await _account(ctx, name)
    await ctx.db.patch(a["_id"], {"balance": balance})


@app.mutation
async def note(ctx: MutationCtx, text: str) -> None:
    await ctx.db.insert("notes", {"text": text})


@app.query
async def balance(ctx: QueryCtx, name: str) -> int:
    a = await _account(ctx, name)
    if a is None:
        raise ComponentError({"missing": name})
    print(f"balance {name} ran")
    return a["balance"]


@app.query
async def notes(ctx: QueryCtx) -> int:
    return len(await ctx.db.query("notes").collect())


@app.mutation
async def add_to_query(ctx: MutationCtx) -> None:
    await ctx.run_query(balance, name="x")


@app.query(internal=True)
async def secret(ctx: QueryCtx) -> int:
    return 7
