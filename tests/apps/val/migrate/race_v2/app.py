"""Deploy racing writes, version 2: ``v`` must be an int (incompatible with any stored str).

Its validator is slow the first time it runs (the deploy's check of the stored
documents), which holds the check open long enough for a write of version 1
to land while it runs.
"""

import time

from pydantic import BaseModel, field_validator

from runtime import App, MutationCtx, QueryCtx

app = App()
_SLOW = [True]


@app.table("items")
class Item(BaseModel):
    v: int

    @field_validator("v", mode="before")
    @classmethod
    def _slow_once(cls, value: object) -> object:
        if _SLOW[0]:
            _SLOW[0] = False
            time.sleep(2.5)
        return value


@app.mutation
async def put_str(ctx: MutationCtx, s: str) -> int:
    return 2  # version 2 writes nothing: a str no longer fits


@app.query
async def str_values(ctx: QueryCtx) -> list[str]:
    return [d["v"] for d in await ctx.db.query("items").collect() if isinstance(d["v"], str)]
