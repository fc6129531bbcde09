"""Test app for the aggregate component: mounted twice, fed directly and through table triggers.

    scores   registered name "aggregate"; mirrors table ``players`` (key [game, score], sum score)
    times    import path components.aggregate; fed directly (lap times per namespace)
"""

from typing import Any

from pydantic import BaseModel

from components.aggregate import Aggregate, TableAggregate, Triggers
from runtime import ActionCtx, App, ComponentError, MutationCtx, QueryCtx

app = App()
scores_mount = app.use("aggregate", name="scores")
times_mount = app.use("components.aggregate", name="times")

by_game = TableAggregate(scores_mount, sort_key=lambda d: [d["game"], d["score"]], sum_value=lambda d: d["score"])
times = Aggregate(times_mount)
direct_scores = Aggregate(scores_mount)  # the same mount seen directly (namespace None)
AGGS = {"times": times, "scores": direct_scores, "by_game": by_game}

triggers = Triggers()
triggers.register("players", by_game)


@app.table("players", indexes={"by_name": ["name"]})
class Player(BaseModel):
    name: str
    game: str
    score: int


# --- generic access to every wrapper method, so tests drive the client API from the app mount ------------------

READS = {"count", "sum", "count_batch", "sum_batch", "at", "at_batch", "index_of", "min", "max", "random",
         "paginate", "paginate_namespaces", "validate", "settings"}
WRITES = {"insert", "delete", "replace", "insert_if_does_not_exist", "delete_if_exists", "replace_or_insert",
          "write_batch", "insert_many", "init", "clear", "clear_all", "collect_garbage", "make_root_lazy"}


@app.query
async def read(ctx: QueryCtx, agg: str, method: str, args: dict[str, Any]) -> Any:
    if method not in READS:
        raise ComponentError({"code": "not_a_read", "method": method})
    return await getattr(AGGS[agg], method)(ctx, **args)


@app.mutation
async def write(ctx: MutationCtx, agg: str, method: str, args: dict[str, Any]) -> Any:
    if method not in WRITES:
        raise ComponentError({"code": "not_a_write", "method": method})
    if method == "insert_many":
        args = {**args, "items": [tuple(i) for i in args["items"]]}
    return await getattr(AGGS[agg], method)(ctx, **args)


@app.query
async def iterate(ctx: QueryCtx, agg: str, bounds: dict[str, Any] | None = None, order: str = "asc",
                  page_size: int = 3, namespace: Any = None) -> list[Any]:
    return [[it["key"], it["id"]] async for it in AGGS[agg].iter(ctx, bounds, order, page_size, namespace)]  # type: ignore[arg-type]


@app.query
async def namespaces(ctx: QueryCtx, agg: str) -> list[Any]:
    return [ns async for ns in AGGS[agg].iter_namespaces(ctx, page_size=2)]


@app.action
async def from_action(ctx: ActionCtx, namespace: Any) -> dict[str, Any]:
    """Writes and reads from an action: each call is its own transaction."""
    await times.insert(ctx, 1, "act", 5, namespace=namespace)
    await times.insert_if_does_not_exist(ctx, 2, "act", 6, namespace=namespace)
    return {"count": await times.count(ctx, namespace=namespace), "sum": await times.sum(ctx, namespace=namespace),
            "keys": [it["key"] async for it in times.iter(ctx, page_size=1, namespace=namespace)]}


# --- semantics ---------------------------------------------------------------------------------------------------

@app.mutation
async def insert_then_fail(ctx: MutationCtx, key: int, id: str) -> None:
    """The aggregate write rolls back with the caller's failure."""
    await times.insert(ctx, key, id)
    raise ComponentError({"code": "caller_failed"})


@app.mutation
async def insert_catching_duplicate(ctx: MutationCtx, key: int, id: str) -> str:
    """A refused sub-call is caught; the caller's own earlier writes stay."""
    await times.insert(ctx, key, id + "-first")
    try:
        await times.write_batch(ctx, [{"op": "insert", "key": key + 1000, "id": id}, {"op": "insert", "key": key, "id": id + "-first"}])
    except ComponentError as err:
        return str(err.data["code"])
    return "no error"


# --- the table-backed variant ------------------------------------------------------------------------------------

@app.mutation
async def add_player(ctx: MutationCtx, name: str, game: str, score: int) -> str:
    return await triggers.db(ctx).insert("players", {"name": name, "game": game, "score": score})


@app.mutation
async def set_score(ctx: MutationCtx, name: str, score: int) -> None:
    row = await ctx.db.query("players").with_index("by_name", lambda q: q.eq("name", name)).unique()
    assert row is not None
    await triggers.db(ctx).patch(row["_id"], {"score": score})


@app.mutation
async def move_player(ctx: MutationCtx, name: str, game: str) -> None:
    row = await ctx.db.query("players").with_index("by_name", lambda q: q.eq("name", name)).unique()
    assert row is not None
    await triggers.db(ctx).replace(row["_id"], {"name": name, "game": game, "score": row["score"]})


@app.mutation
async def remove_player(ctx: MutationCtx, name: str) -> None:
    row = await ctx.db.query("players").with_index("by_name", lambda q: q.eq("name", name)).unique()
    assert row is not None
    await triggers.db(ctx).delete(row["_id"])


@app.mutation
async def add_player_by_hook(ctx: MutationCtx, name: str, game: str, score: int) -> str:
    """Explicit hooks instead of the trigger writer."""
    pid = await ctx.db.insert("players", {"name": name, "game": game, "score": score})
    await by_game.on_insert(ctx, await ctx.db.get(pid))
    return pid


@app.mutation
async def backfill(ctx: MutationCtx) -> list[bool]:
    return await by_game.insert_docs(ctx, await ctx.db.query("players").collect(), idempotent=True)


@app.query
async def rank_of(ctx: QueryCtx, name: str) -> dict[str, Any]:
    """A leaderboard rank within the player's game (0 = best) and the game's stats."""
    row = await ctx.db.query("players").with_index("by_name", lambda q: q.eq("name", name)).unique()
    assert row is not None
    game = {"prefix": [row["game"]]}
    return {
        "rank": await by_game.index_of_doc(ctx, row, bounds=game, order="desc"),
        "players": await by_game.count(ctx, bounds=game),
        "total": await by_game.sum(ctx, bounds=game),
        "best": await by_game.max(ctx, bounds=game),
    }


@app.query
async def mirrored(ctx: QueryCtx) -> dict[str, Any]:
    """The table and its mirror, side by side."""
    rows = await ctx.db.query("players").collect()
    items = [it async for it in by_game.iter(ctx, page_size=4)]
    return {"table": sorted([[r["game"], r["score"]], r["_id"]] for r in rows),
            "aggregate": [[it["key"], it["id"]] for it in items]}
