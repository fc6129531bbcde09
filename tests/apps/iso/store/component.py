"""A component with a table named like the app's, and probes of what it may reach."""

from pydantic import BaseModel

from runtime import Component, FunctionRef, MutationCtx, QueryCtx

component = Component("store")
inner = component.use("inner", name="inner", env={"INNER": "1"})


@component.table("notes")
class Note(BaseModel):
    text: str


@component.table("secrets")
class Secret(BaseModel):
    tag: str


@component.mutation
async def put(ctx: MutationCtx, text: str) -> str:
    return await ctx.db.insert("notes", {"text": text})


@component.query
async def texts(ctx: QueryCtx) -> list[str]:
    return sorted(d["text"] for d in await ctx.db.query("notes").collect())


@component.query
async def get_doc(ctx: QueryCtx, id: str) -> dict | None:
    return await ctx.db.get(id)


@component.mutation
async def delete_doc(ctx: MutationCtx, id: str) -> None:
    await ctx.db.delete(id)


@component.mutation
async def call_handle(ctx: MutationCtx, handle: str, tag: str) -> str:
    await ctx.db.insert("notes", {"text": f"before {tag}"})
    return await ctx.run_mutation(handle, tag=tag)


@component.mutation
async def call_ref(ctx: MutationCtx, path: str, name: str, tag: str) -> str:
    """Tries to call a function it was not handed, by a reference it builds itself."""
    return await ctx.run_mutation(FunctionRef(path, name, "mutation"), tag=tag)


@component.mutation
async def mint_handle(ctx: MutationCtx, path: str, name: str) -> str:
    """Tries to mint a handle for a function that is not its own."""
    return await ctx.function_handle(FunctionRef(path, name, "mutation"))


@component.mutation(internal=True)
async def secret(ctx: MutationCtx, tag: str) -> str:
    await ctx.db.insert("secrets", {"tag": tag})
    return f"secret {tag}"


@component.query
async def secret_texts(ctx: QueryCtx) -> list[str]:
    return sorted(d["tag"] for d in await ctx.db.query("secrets").collect())


@component.query
async def env(ctx: QueryCtx) -> dict[str, str]:
    return dict(ctx.env)


@component.query
async def inner_env(ctx: QueryCtx) -> dict[str, str]:
    return await ctx.run_query(inner.env)


# --- module globals and capability tokens --------------------------------------------------------

_COUNTER = [0]
_TOKENS: list[str] = []


@component.mutation
async def bump(ctx: MutationCtx) -> int:
    """A module global of this mount's worker (never shared with another mount)."""
    _COUNTER[0] += 1
    return _COUNTER[0]


@component.query
async def stash_token(ctx: QueryCtx) -> bool:
    """Keeps this invocation's capability token past the end of the invocation."""
    _TOKENS.append(ctx._inv.token)
    return True


@component.query
async def use_stashed_token(ctx: QueryCtx) -> list[dict]:
    """Uses a token of an invocation that has ended: the coordinator must refuse it."""
    res = await ctx._inv.channel.syscall(_TOKENS[-1], "scan", {
        "table": "notes", "index": "by_creation_time", "range": [], "order": "asc", "limit": 0, "after": None})
    return res["docs"]


@component.mutation
async def spin(ctx: MutationCtx) -> None:
    """Hangs its worker: the coordinator kills it at the deadline and restarts it."""
    while True:
        pass


# --- restricted imports inside function bodies --------------------------------------------------


@component.query
async def import_os(ctx: QueryCtx) -> str:
    import os

    return os.getcwd()


@component.query
async def import_subprocess(ctx: QueryCtx) -> str:
    import subprocess

    return subprocess.check_output(["id"]).decode()


@component.query
async def import_storage(ctx: QueryCtx) -> str:
    from runtime.storage import Storage

    return repr(Storage)


@component.query
async def import_storage_from_runtime(ctx: QueryCtx) -> str:
    from runtime import storage

    return repr(storage)


@component.query
async def import_dunder(ctx: QueryCtx) -> str:
    return repr(__import__("socket"))
