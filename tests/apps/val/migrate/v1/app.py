"""Schema migration, version 1."""

from pydantic import BaseModel

from runtime import App, MutationCtx, QueryCtx

app = App()


@app.table("people", indexes={"by_name": ["name"]})
class Person(BaseModel):
    name: str
    age: int


@app.mutation
async def add(ctx: MutationCtx, name: str, age: int) -> str:
    return await ctx.db.insert("people", {"name": name, "age": age})


@app.query
async def version(ctx: QueryCtx) -> int:
    return 1


@app.query
async def people(ctx: QueryCtx) -> list[dict]:
    return await ctx.db.query("people").collect()
