"""Undeclared document fields: refused by a plain table, kept by one whose model allows them."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runtime import App, MutationCtx, QueryCtx

app = App()


@app.table("strict")
class Strict(BaseModel):
    name: str
    size: int = Field(default=0, alias="sz")


@app.table("loose")
class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str


@app.mutation
async def insert(ctx: MutationCtx, table: str, doc: dict[str, Any]) -> str:
    return await ctx.db.insert(table, doc)


@app.mutation
async def patch(ctx: MutationCtx, id: str, fields: dict[str, Any]) -> None:
    await ctx.db.patch(id, fields)


@app.query
async def docs(ctx: QueryCtx, table: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in d.items() if not k.startswith("_")} for d in await ctx.db.query(table).collect()]
