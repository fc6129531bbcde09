"""Validation test app: typed functions, a table with a schema, a typed child component."""

from pydantic import BaseModel

from runtime import App, MutationCtx, QueryCtx

app = App()
child = app.use("typed", name="child")


@app.table("people", indexes={"by_name": ["name"]})
class Person(BaseModel):
    name: str
    age: int
    tags: list[str] = []


@app.mutation
async def register(ctx: MutationCtx, name: str, age: int, tags: list[str]) -> str:
    return await ctx.db.insert("people", {"name": name, "age": age, "tags": tags})


@app.query
async def greet(ctx: QueryCtx, name: str, times: int = 1) -> str:
    return " ".join([f"hi {name}"] * times)


@app.query
async def bad_return(ctx: QueryCtx, what: str) -> int:
    return {"str": "nope", "none": None, "float": 1.5, "list": [1], "bool": True}[what]


@app.query
async def bad_nested_return(ctx: QueryCtx) -> dict[str, int]:
    return {"a": 1, "b": "two"}


@app.query
async def people(ctx: QueryCtx) -> list[dict]:
    return await ctx.db.query("people").collect()


@app.mutation
async def insert_raw(ctx: MutationCtx, doc: dict) -> str:
    return await ctx.db.insert("people", doc)


@app.mutation
async def insert_unchecked(ctx: MutationCtx, doc: dict) -> str:
    """Sends the insert syscall straight, past ctx.db's worker-side validation (as a compromised worker could)."""
    return await ctx.db._call("insert", {"table": "people", "doc": doc})


@app.mutation
async def insert_good_then_bad(ctx: MutationCtx, name: str) -> None:
    await ctx.db.insert("people", {"name": name, "age": 1})
    await ctx.db.insert("people", {"name": name, "age": "one"})


@app.mutation
async def patch_raw(ctx: MutationCtx, id: str, fields: dict) -> None:
    await ctx.db.patch(id, fields)


@app.mutation
async def replace_raw(ctx: MutationCtx, id: str, doc: dict) -> None:
    await ctx.db.replace(id, doc)


@app.query
async def size(ctx: QueryCtx, blob: str) -> int:
    return len(blob)


@app.query
async def echo(ctx: QueryCtx, blob: str) -> str:
    return blob


@app.query
async def repeat(ctx: QueryCtx, blob: str, times: int) -> str:
    return blob * times


@app.mutation
async def child_double(ctx: MutationCtx, n: int) -> int:
    return await ctx.run_mutation(child.double, n=n)


@app.mutation
async def child_bad_arg(ctx: MutationCtx) -> int:
    return await ctx.run_mutation(child.double, n="x", m=2)


@app.query
async def child_bad_return(ctx: QueryCtx) -> int:
    return await ctx.run_query(child.liar)


@app.mutation
async def child_big_arg(ctx: MutationCtx, n: int) -> int:
    return await ctx.run_mutation(child.measure, blob="x" * n)
