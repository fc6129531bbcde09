"""Isolation test app.

    store           ./store with env {"K": "v"}; mounts ./inner as store/inner
    other           ./store again (independent tables) with its own env; mounts other/inner
The app and both stores each have a table named ``notes``: three different tables.
"""

from pydantic import BaseModel

from runtime import App, FunctionRef, MutationCtx, QueryCtx

app = App()
store = app.use("store", name="store", env={"K": "v"})
other = app.use("store", name="other", env={"K": "w", "ONLY_OTHER": "1"})


@app.table("notes", indexes={"by_text": ["text"]})
class Note(BaseModel):
    text: str


# --- same table name, different tables ----------------------------------------------------


@app.mutation
async def add_note(ctx: MutationCtx, text: str) -> str:
    return await ctx.db.insert("notes", {"text": text})


@app.query
async def notes(ctx: QueryCtx) -> list[str]:
    return sorted(d["text"] for d in await ctx.db.query("notes").collect())


@app.mutation
async def store_put(ctx: MutationCtx, text: str, where: str = "store") -> str:
    """Insert into a store's notes (through its public mutation); returns the store's Id."""
    return await ctx.run_mutation(store.put if where == "store" else other.put, text=text)


@app.query
async def store_texts(ctx: QueryCtx, where: str = "store") -> list[str]:
    return await ctx.run_query(store.texts if where == "store" else other.texts)


# --- foreign Ids ------------------------------------------------------------------------------------


@app.query
async def app_get(ctx: QueryCtx, id: str) -> dict | None:
    return await ctx.db.get(id)


@app.mutation
async def app_patch(ctx: MutationCtx, id: str, text: str) -> None:
    await ctx.db.patch(id, {"text": text})


@app.mutation
async def app_delete(ctx: MutationCtx, id: str) -> None:
    await ctx.db.delete(id)


@app.query
async def store_get(ctx: QueryCtx, id: str, where: str = "store") -> dict | None:
    """Hands ``id`` to a store, which calls ctx.db.get(id) on it."""
    return await ctx.run_query(store.get_doc if where == "store" else other.get_doc, id=id)


@app.query
async def raw_scan(ctx: QueryCtx, table: str) -> list[dict]:
    """Names a table straight in a scan syscall, past the worker-side check of ctx.db.query."""
    res = await ctx.db._call("scan", {"table": table, "index": "by_creation_time", "range": [], "order": "asc",
                                      "limit": 0, "after": None})
    return res["docs"]


@app.mutation
async def store_delete(ctx: MutationCtx, id: str) -> None:
    await ctx.run_mutation(store.delete_doc, id=id)


# --- handles ------------------------------------------------------------------------------------------


@app.mutation
async def record(ctx: MutationCtx, tag: str) -> str:
    """What a component may call back, only through a handle."""
    await ctx.db.insert("notes", {"text": tag})
    return f"app recorded {tag}"


@app.mutation(internal=True)
async def record_internal(ctx: MutationCtx, tag: str) -> str:
    await ctx.db.insert("notes", {"text": tag})
    return f"app recorded internally {tag}"


@app.mutation
async def make_handle(ctx: MutationCtx, internal: bool = False) -> str:
    return await ctx.function_handle(record_internal if internal else record)


@app.mutation
async def give_handle(ctx: MutationCtx, tag: str, internal: bool = False) -> str:
    """Makes a handle and passes it to the store, which calls back into the app with it."""
    h = await ctx.function_handle(record_internal if internal else record)
    return await ctx.run_mutation(store.call_handle, handle=h, tag=tag)


@app.mutation
async def pass_handle(ctx: MutationCtx, handle: str, tag: str) -> str:
    """Passes a handle string the caller supplied (genuine or forged) to the store."""
    return await ctx.run_mutation(store.call_handle, handle=handle, tag=tag)


@app.mutation
async def store_call_ref(ctx: MutationCtx, path: str, name: str, tag: str) -> str:
    """Asks the store to call a plain reference (path, name) it was not handed."""
    return await ctx.run_mutation(store.call_ref, path=path, name=name, tag=tag)


@app.mutation
async def store_mint_handle(ctx: MutationCtx, path: str, name: str) -> str:
    return await ctx.run_mutation(store.mint_handle, path=path, name=name)


# --- visibility --------------------------------------------------------------------------------------


@app.mutation(internal=True)
async def app_internal(ctx: MutationCtx, tag: str) -> str:
    await ctx.db.insert("notes", {"text": tag})
    return f"internal {tag}"


@app.mutation
async def call_child_internal(ctx: MutationCtx, tag: str) -> str:
    return await ctx.run_mutation(store.secret, tag=tag)


@app.mutation
async def call_grandchild(ctx: MutationCtx, tag: str) -> str:
    return await ctx.run_mutation(FunctionRef("store/inner", "put", "mutation"), text=tag)


@app.query
async def secret_texts(ctx: QueryCtx) -> list[str]:
    return await ctx.run_query(store.secret_texts)


# --- call rules -----------------------------------------------------------------------------------------


@app.query
async def query_runs_mutation(ctx: QueryCtx, tag: str) -> str:
    return await ctx.run_mutation(record, tag=tag)  # type: ignore[attr-defined]


@app.query
async def query_sends_mutation_call(ctx: QueryCtx, tag: str) -> str:
    """Reaches past the ctx API: the coordinator must still refuse a mutation from a query."""
    return await ctx._run("mutation", record, {"tag": tag})


@app.query
async def query_calls_mutation_handle(ctx: QueryCtx, handle: str, tag: str) -> str:
    return await ctx.run_query(handle, tag=tag)


@app.mutation
async def run_query_on_mutation(ctx: MutationCtx, tag: str) -> str:
    return await ctx.run_query(record, tag=tag)


@app.mutation
async def run_mutation_on_query(ctx: MutationCtx) -> list[str]:
    return await ctx.run_mutation(notes)


@app.mutation
async def recurse(ctx: MutationCtx, n: int, tag: str = "") -> int:
    """Calls itself n times (depth n + 1); writes one note per level when ``tag`` is set."""
    if tag:
        await ctx.db.insert("notes", {"text": f"{tag}:{n}"})
    if n == 0:
        return 0
    return 1 + await ctx.run_mutation(recurse, n=n - 1, tag=tag)


@app.query
async def recurse_query(ctx: QueryCtx, n: int) -> int:
    if n == 0:
        return 0
    return 1 + await ctx.run_query(recurse_query, n=n - 1)


# --- env -------------------------------------------------------------------------------------------------


@app.query
async def envs(ctx: QueryCtx) -> dict[str, dict[str, str]]:
    return {
        "app": dict(ctx.env),
        "store": await ctx.run_query(store.env),
        "store/inner": await ctx.run_query(store.inner_env),
        "other": await ctx.run_query(other.env),
        "other/inner": await ctx.run_query(other.inner_env),
    }
