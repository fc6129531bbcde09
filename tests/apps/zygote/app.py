"""The app of tests/test_zygote.py: one component mounted twice, one mount handed a secret by use()."""

from runtime import App

app = App()
vault = app.use("vault", name="vault", env={"VAULT_TOKEN": "zyg0te-mount-secret-8c1e4b"})
spare = app.use("vault", name="spare")


@app.query
async def token_length(ctx) -> int:
    return await ctx.run_query(vault.token_length)


@app.query
async def spare_token_length(ctx) -> int:
    return await ctx.run_query(spare.token_length)
