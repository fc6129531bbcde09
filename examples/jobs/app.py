"""Process an upload with a workpool: a mutation enqueues one action job per line, ``on_complete`` stores results.

    jobs   components.workpool   at most 2 lines processed at once; an empty line fails its job (not retried)

``upload`` records the upload and enqueues its jobs in one transaction (if it fails, nothing is queued).
Each job's ``on_complete`` inserts one ``results`` document, and nothing else: completions of one upload
never write the same document, so they never conflict.  ``progress`` counts them, so a subscription to it
moves from ``pending`` to ``finished`` as the jobs finish.
"""

from typing import Any

from pydantic import BaseModel

from components.workpool import NonRetryableError, Workpool
from runtime import ActionCtx, App, MutationCtx, QueryCtx, ValidationError

app = App()
pool = Workpool(app.use("workpool", name="jobs"), max_parallelism=2)


@app.table("uploads", indexes={"by_name": ["name"]})
class Upload(BaseModel):
    name: str
    total: int
    work_ids: list[str]


@app.table("results", indexes={"by_upload": ["upload", "line"]})
class Result(BaseModel):
    upload: str
    line: int
    outcome: str
    words: int | None = None
    error: str | None = None


@app.action(internal=True)
async def count_words(ctx: ActionCtx, text: str) -> int:
    """The job: the number of words of one line (a real one would call an API; it could then retry)."""
    if not text.strip():
        raise NonRetryableError("empty line")
    return len(text.split())


@app.mutation(internal=True)
async def line_done(ctx: MutationCtx, work_id: str, context: Any, result: dict[str, Any]) -> None:
    """``on_complete`` of every job: called once, with the ``context`` given at enqueue."""
    doc: dict[str, Any] = {"upload": context["upload"], "line": context["line"], "outcome": result["kind"]}
    if result["kind"] == "success":
        doc["words"] = result["return_value"]
    elif result["kind"] == "failed":
        doc["error"] = result["error"]
    await ctx.db.insert("results", doc)


@app.mutation
async def upload(ctx: MutationCtx, name: str, lines: list[str]) -> str:
    """Record upload ``name`` and queue one job per line; its id."""
    if not lines:
        raise ValidationError("lines: an upload needs at least one line")
    if await ctx.db.query("uploads").with_index("by_name", lambda q: q.eq("name", name)).first() is not None:
        raise ValidationError(f"name: an upload called {name!r} exists already")
    upload_id = await ctx.db.insert("uploads", {"name": name, "total": len(lines), "work_ids": []})
    work_ids = []
    for i, text in enumerate(lines):  # enqueue_action_batch would share one context; each job gets its line's
        work_ids.append(await pool.enqueue_action(ctx, count_words, {"text": text}, on_complete=line_done,
                                                  context={"upload": upload_id, "line": i}))
    await ctx.db.patch(upload_id, {"work_ids": work_ids})
    return upload_id


@app.query
async def progress(ctx: QueryCtx, name: str) -> dict[str, Any] | None:
    """``{state: "pending" | "finished", total, done, failed, words}`` of upload ``name``; None before it."""
    up = await ctx.db.query("uploads").with_index("by_name", lambda q: q.eq("name", name)).first()
    if up is None:
        return None
    done = await ctx.db.query("results").with_index("by_upload", lambda q: q.eq("upload", up["_id"])).collect()
    failed = [r["line"] for r in done if r["outcome"] != "success"]
    return {"state": "finished" if len(done) == up["total"] else "pending", "total": up["total"],
            "done": len(done), "failed": failed, "words": sum(r["words"] or 0 for r in done)}


@app.query
async def job_states(ctx: QueryCtx, name: str) -> list[str]:
    """The pool's state of each of upload ``name``'s jobs, in line order (``pending``, ``running``, ``finished``)."""
    up = await ctx.db.query("uploads").with_index("by_name", lambda q: q.eq("name", name)).first()
    if up is None:
        return []
    return [s["state"] for s in await pool.status_batch(ctx, up["work_ids"])]
