"""Schema migration, an incompatible version 2: a new required field without a default."""

from pydantic import BaseModel

from runtime import App, MutationCtx, QueryCtx

app = App()


@app.table("people", indexes={"by_name": ["name"]})
class Person(BaseModel):
    name: str
    age: int
    email: str


@app.query
async def version(ctx: QueryCtx) -> int:
    return 2


@app.mutation
async def add(ctx: MutationCtx, name: str, age: int) -> str:
    return await ctx.db.insert("people", {"name": name, "age": age, "email": "?"})
