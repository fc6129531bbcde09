"""Semantics test app: app -> mid -> leaf (three levels), a bank, and misbehaving functions."""

from pydantic import BaseModel

from runtime import App, ComponentError

app = App()
mid = app.use("mid", name="mid")
bank = app.use("bank", name="bank")
leaf = app.use("leaf", name="leaf")


@app.table("items", indexes={"by_tag": ["tag"]})
class Item(BaseModel):
    tag: str


@app.mutation
async def chain(ctx, tag: str, fail_leaf: bool = False, catch_leaf: bool = False, fail_mid: bool = False,
                catch_mid: bool = False) -> str:
    await ctx.db.insert("items", {"tag": tag})
    try:
        await ctx.run_mutation(mid.put, tag=tag, fail_leaf=fail_leaf, catch_leaf=catch_leaf, fail_self=fail_mid)
    except ComponentError as err:
        if not catch_mid:
            raise
        await ctx.db.insert("items", {"tag": f"caught:{err.data['where']}"})
        return "caught"
    return "ok"


@app.query
async def all_tags(ctx) -> dict[str, list[str]]:
    return {
        "app": sorted(d["tag"] for d in await ctx.db.query("items").collect()),
        "mid": await ctx.run_query(mid.tags),
        "leaf": await ctx.run_query(mid.leaf_tags),
    }


@app.mutation
async def add(ctx, tag: str) -> str:
    print(f"adding {tag}")
    return await ctx.db.insert("items", {"tag": tag})


@app.query
async def count(ctx) -> int:
    return len(await ctx.db.query("items").collect())


@app.query
async def has(ctx, tag: str) -> bool:
    return await ctx.db.query("items").with_index("by_tag", lambda q: q.eq("tag", tag)).first() is not None


@app.mutation
async def write_then_sleep(ctx, tag: str, seconds: float) -> None:
    await ctx.db.insert("items", {"tag": tag})
    for _ in range(int(seconds * 20_000_000)):  # busy: the deadline or a kill ends it (sleeping is refused)
        pass


@app.mutation
async def spin(ctx) -> None:
    while True:
        pass


@app.mutation
async def reentrant(ctx, tag: str) -> str:
    handle = await ctx.function_handle(add)
    return await ctx.run_mutation(leaf.call_back, handle=handle, tag=tag)


@app.mutation
async def seed(ctx, names: list[str], balance: int) -> None:
    await ctx.run_mutation(bank.seed, names=names, balance=balance)


@app.mutation
async def transfer(ctx, src: str, dst: str, amount: int) -> None:
    await ctx.run_mutation(bank.transfer, src=src, dst=dst, amount=amount)


@app.query
async def bank_summary(ctx) -> dict[str, int]:
    return await ctx.run_query(bank.summary)


@app.query
async def own_leaf_tags(ctx) -> list[str]:
    return await ctx.run_query(leaf.tags)


@app.query
async def page(ctx, cursor: str | None = None) -> dict:
    return dict(await ctx.db.query("items").paginate(cursor=cursor, num_items=2))


@app.query
async def leaf_page(ctx, cursor: str | None = None) -> dict:
    return await ctx.run_query(leaf.page, cursor=cursor)
