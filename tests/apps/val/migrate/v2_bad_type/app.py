"""Schema migration, an incompatible version 2: ``age`` changed from int to str (and a new index)."""

from pydantic import BaseModel

from runtime import App, MutationCtx, QueryCtx

app = App()


@app.table("people", indexes={"by_name": ["name"], "by_age": ["age"]})
class Person(BaseModel):
    name: str
    age: str


@app.mutation
async def add(ctx: MutationCtx, name: str, age: str) -> str:
    return await ctx.db.insert("people", {"name": name, "age": age})


@app.query
async def version(ctx: QueryCtx) -> int:
    return 2


@app.query
async def people(ctx: QueryCtx) -> list[dict]:
    return await ctx.db.query("people").collect()
