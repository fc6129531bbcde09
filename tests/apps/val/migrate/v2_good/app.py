"""Schema migration, a compatible version 2: a new optional field with a default, and a new index."""

from pydantic import BaseModel

from runtime import App, MutationCtx, QueryCtx

app = App()


@app.table("people", indexes={"by_name": ["name"], "by_age": ["age"]})
class Person(BaseModel):
    name: str
    age: int
    email: str | None = None


@app.mutation
async def add(ctx: MutationCtx, name: str, age: int, email: str | None = None) -> str:
    return await ctx.db.insert("people", {"name": name, "age": age, "email": email})


@app.query
async def version(ctx: QueryCtx) -> int:
    return 2


@app.query
async def people(ctx: QueryCtx) -> list[dict]:
    return await ctx.db.query("people").collect()


@app.query
async def names_by_age(ctx: QueryCtx, min_age: int) -> list[str]:
    rows = await ctx.db.query("people").with_index("by_age", lambda q: q.gte("age", min_age)).collect()
    return [r["name"] for r in rows]
