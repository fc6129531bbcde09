"""Test app for file storage: upload URLs, store/get from actions, URLs, deletion, a child with its own files."""

from runtime import App, MutationCtx, QueryCtx

app = App()
box = app.use("box", name="box")


@app.mutation
async def upload_url(ctx: MutationCtx) -> str:
    return await ctx.storage.generate_upload_url()


@app.query
async def url(ctx: QueryCtx, storage_id: str) -> str | None:
    return await ctx.storage.get_url(storage_id)


@app.query
async def meta(ctx: QueryCtx, storage_id: str) -> dict | None:
    return await ctx.db.system.get(storage_id)


@app.query
async def count(ctx: QueryCtx) -> int:
    return len(await ctx.db.system.query("_storage").collect())


@app.mutation
async def delete(ctx: MutationCtx, storage_id: str) -> None:
    await ctx.storage.delete(storage_id)


@app.action
async def store(ctx, text: str, content_type: str | None = None) -> str:
    return await ctx.storage.store(text.encode(), content_type)


@app.action
async def read(ctx, storage_id: str) -> bytes | None:
    return await ctx.storage.get(storage_id)


@app.action
async def child_file(ctx) -> str:
    return await ctx.run_action(box.store, text="the child's")


@app.mutation
async def store_in_mutation(ctx: MutationCtx) -> str:
    return await ctx.storage.store(b"x")  # refused: actions only
