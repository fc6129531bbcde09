"""The aggregate component through a real daemon (tests/apps/aggregate).

The app mounts the component twice — ``scores`` by registered name (mirroring
the app's ``players`` table through declared triggers) and ``times`` by import
path (fed directly) — and every call goes app mount → component mount through
the client wrappers.  Tests use their own namespaces so they share one daemon.
"""

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import ComponentError, ConflictError, ValidationError
from runtime.testing import RunningDaemon

APP = Path(__file__).parent / "apps" / "aggregate" / "app.py"


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:
    return module_daemon_for(APP)


@pytest.fixture()
def c(daemon: RunningDaemon):
    with daemon.client() as client:
        yield client


def read(c: Any, method: str, agg: str = "times", **args: Any) -> Any:
    return c.query("read", agg=agg, method=method, args=args)


def write(c: Any, method: str, agg: str = "times", **args: Any) -> Any:
    return c.mutation("write", agg=agg, method=method, args=args)


def nodes_of(daemon: RunningDaemon, mount: str) -> list[dict[str, Any]]:
    with daemon.client(admin=True) as a:
        return a.admin("data", mount=mount, table="nodes", limit=100_000)  # type: ignore[no-any-return]


def test_count_sum_at_index_of_min_max_match_a_sorted_list(c) -> None:
    ns = "reads"
    rng = random.Random(7)
    keys = rng.sample(range(10_000), 400)
    write(c, "init", max_node_size=4, namespace=ns)  # a small node size: a deep tree from few items
    write(c, "insert_many", items=[[k, f"i{k}", k % 13] for k in keys], namespace=ns)
    model = sorted(keys)
    assert read(c, "count", namespace=ns) == 400
    assert read(c, "sum", namespace=ns) == sum(k % 13 for k in keys)
    for off in (0, 1, 199, 399, -1, -400):
        assert read(c, "at", offset=off, namespace=ns) == {"key": model[off], "id": f"i{model[off]}",
                                                           "sum_value": model[off] % 13}
    assert read(c, "at", offset=400, namespace=ns) is None and read(c, "at", offset=-401, namespace=ns) is None
    lo, hi = model[50], model[300]
    bounds = {"lower": {"key": lo, "inclusive": False}, "upper": {"key": hi, "inclusive": True}}
    inside = [k for k in model if lo < k <= hi]
    assert read(c, "count", bounds=bounds, namespace=ns) == len(inside) == 250
    assert read(c, "sum", bounds=bounds, namespace=ns) == sum(k % 13 for k in inside)
    assert read(c, "at", offset=0, bounds=bounds, namespace=ns)["key"] == inside[0]
    assert read(c, "at", offset=-1, bounds=bounds, namespace=ns)["key"] == hi
    assert read(c, "min", bounds=bounds, namespace=ns)["key"] == inside[0]
    assert read(c, "max", namespace=ns)["key"] == model[-1]
    assert read(c, "index_of", key=model[123], namespace=ns) == 123
    assert read(c, "index_of", key=model[123] + 0.5, namespace=ns) == 124  # first index with key >= given
    assert read(c, "index_of", key=model[123], order="desc", namespace=ns) == 400 - 124
    assert read(c, "index_of", key=model[123], id=f"i{model[123]}", order="desc", namespace=ns) == 400 - 124
    assert read(c, "index_of", key=model[123], bounds=bounds, namespace=ns) == 123 - 51
    assert read(c, "count_batch", queries=[{"namespace": ns}, {"namespace": ns, "bounds": bounds},
                                           {"namespace": "nothing-here"}]) == [400, 250, 0]
    assert read(c, "sum_batch", queries=[{"namespace": ns, "bounds": {"eq": model[5]}}]) == [model[5] % 13]
    at = read(c, "at_batch", queries=[{"offset": 0, "namespace": ns}, {"offset": -1, "namespace": ns}])
    assert [it["key"] for it in at] == [model[0], model[-1]]
    report = read(c, "validate", namespace=ns)
    assert report["count"] == 400 and report["depth"] >= 3


def test_random_ops_keep_every_invariant_and_match_the_model(c) -> None:
    ns = "fuzz"
    write(c, "init", max_node_size=6, root_lazy=False, namespace=ns)
    rng = random.Random(11)
    model: dict[tuple[int, str], int] = {}
    for _ in range(12):
        ops = []
        for _ in range(40):
            k, i = rng.randrange(60), rng.choice("abc")
            if (k, i) in model and rng.random() < 0.5:
                ops.append({"op": "delete", "key": k, "id": i})
                del model[(k, i)]
            elif (k, i) in model:
                nk = rng.randrange(60)
                if (nk, i) in model:
                    continue
                ops.append({"op": "replace", "key": k, "id": i, "new_key": nk, "new_sum_value": nk})
                del model[(k, i)]
                model[(nk, i)] = nk
            else:
                ops.append({"op": "insert", "key": k, "id": i, "sum_value": k})
                model[(k, i)] = k
        write(c, "write_batch", operations=ops, namespace=ns)
        report = read(c, "validate", namespace=ns)
        assert (report["count"], report["sum"]) == (len(model), sum(model.values()))
    got = c.query("iterate", agg="times", namespace=ns, page_size=7)
    assert got == [[k, i] for k, i in sorted(model)]


def test_writes_refuse_duplicates_and_missing_keys_and_idempotent_variants_report(c) -> None:
    ns = "writes"
    write(c, "insert", key=5, id="a", sum_value=2, namespace=ns)
    with pytest.raises(ComponentError) as err:
        write(c, "insert", key=5, id="a", namespace=ns)
    assert err.value.data["code"] == "KEY_EXISTS"
    with pytest.raises(ComponentError) as err:
        write(c, "delete", key=6, id="a", namespace=ns)
    assert err.value.data["code"] == "DELETE_MISSING_KEY"
    with pytest.raises(ComponentError) as err:
        write(c, "replace", key=6, id="a", new_key=7, namespace=ns)
    assert err.value.data["code"] == "DELETE_MISSING_KEY"
    assert write(c, "insert_if_does_not_exist", key=5, id="a", namespace=ns) is False
    assert write(c, "insert_if_does_not_exist", key=5, id="b", sum_value=3, namespace=ns) is True
    assert write(c, "delete_if_exists", key=9, id="a", namespace=ns) is False
    write(c, "replace", key=5, id="a", new_key=8, new_sum_value=10, namespace=ns)
    write(c, "replace_or_insert", key=1, id="z", new_key=2, new_sum_value=1, namespace=ns)  # missing: inserts
    items = read(c, "paginate", namespace=ns)["page"]
    assert [(it["key"], it["id"], it["sum_value"]) for it in items] == [(2, "z", 1), (5, "b", 3), (8, "a", 10)]
    write(c, "replace", key=8, id="a", new_key=8, new_sum_value=10, namespace=ns, new_namespace="writes-2")
    assert read(c, "count", namespace=ns) == 2 and read(c, "count", namespace="writes-2") == 1
    assert write(c, "delete_if_exists", key=8, id="a", namespace="writes-2") is True
    assert read(c, "count", namespace="writes-2") == 0


def test_bad_arguments_are_refused_by_name(c) -> None:
    with pytest.raises(ComponentError) as err:
        read(c, "count", bounds={"prefix": [1], "eq": 2})
    assert err.value.data["code"] == "INVALID_BOUNDS"
    with pytest.raises(ComponentError) as err:
        write(c, "init", max_node_size=5, namespace="bad")
    assert err.value.data["code"] == "INVALID_MAX_NODE_SIZE"
    with pytest.raises(ValidationError, match="sum_value"):
        write(c, "insert", key=1, id="x", sum_value="ten", namespace="bad")
    with pytest.raises(ComponentError) as err:
        read(c, "paginate", cursor="not-hex", namespace="bad")
    assert err.value.data["code"] == "INVALID_CURSOR"
    write(c, "init", max_node_size=8, namespace="bad")
    with pytest.raises(ComponentError) as err:
        write(c, "init", max_node_size=4, namespace="bad")
    assert err.value.data["code"] == "TREE_EXISTS"


def test_paginate_both_orders_with_prefix_and_exclusive_bounds_over_tuple_keys(c) -> None:
    ns = "tuples"
    items = [[[g, s], f"{g}{s}", s] for g in ("a", "b", "c") for s in range(10)]
    write(c, "insert_many", items=items, namespace=ns)
    got = c.query("iterate", agg="times", bounds={"prefix": ["b"]}, namespace=ns, page_size=3)
    assert got == [[["b", s], f"b{s}"] for s in range(10)]
    got = c.query("iterate", agg="times", bounds={"prefix": ["b"]}, order="desc", namespace=ns, page_size=4)
    assert got == [[["b", s], f"b{s}"] for s in reversed(range(10))]
    bounds = {"lower": {"key": ["a", 8], "id": "a8", "inclusive": False}, "upper": {"key": ["b", 1], "inclusive": True}}
    assert c.query("iterate", agg="times", bounds=bounds, namespace=ns) == [[["a", 9], "a9"], [["b", 0], "b0"],
                                                                            [["b", 1], "b1"]]
    assert read(c, "count", bounds={"prefix": []}, namespace=ns) == 30
    assert read(c, "sum", bounds={"prefix": ["c"]}, namespace=ns) == 45
    assert read(c, "count", bounds={"eq": ["c", 3]}, namespace=ns) == 1
    page = read(c, "paginate", namespace=ns, page_size=30)
    assert page["is_done"] is True and len(page["page"]) == 30


def test_namespaces_are_separate_trees_and_can_be_listed(c) -> None:
    for n in range(5):
        write(c, "insert_many", items=[[k, f"x{k}", 1] for k in range(n + 1)], namespace=["ns", n])
    assert [read(c, "count", namespace=["ns", n]) for n in range(5)] == [1, 2, 3, 4, 5]
    listed = c.query("namespaces", agg="times")
    assert [ns for ns in listed if isinstance(ns, list) and ns[:1] == ["ns"]] == [["ns", n] for n in range(5)]
    write(c, "clear", namespace=["ns", 2])
    assert [read(c, "count", namespace=["ns", n]) for n in range(5)] == [1, 2, 0, 4, 5]


def test_two_mounts_keep_fully_separate_data(c, daemon: RunningDaemon) -> None:
    ns = "shared-name"
    write(c, "insert_many", agg="times", items=[[k, "t", k] for k in range(20)], namespace=ns)
    write(c, "insert_many", agg="scores", items=[[k, "s", 2 * k] for k in range(5)], namespace=ns)
    assert read(c, "count", agg="times", namespace=ns) == 20
    assert read(c, "count", agg="scores", namespace=ns) == 5
    assert read(c, "sum", agg="scores", namespace=ns) == 20
    times_ids = {n["_id"] for n in nodes_of(daemon, "times")}
    scores_ids = {n["_id"] for n in nodes_of(daemon, "scores")}
    assert times_ids and scores_ids and not times_ids & scores_ids
    write(c, "clear", agg="times", namespace=ns)
    assert read(c, "count", agg="times", namespace=ns) == 0
    assert read(c, "count", agg="scores", namespace=ns) == 5
    assert read(c, "validate", agg="scores", namespace=ns)["count"] == 5


def test_random_returns_a_member_or_none(c) -> None:
    ns = "rand"
    assert read(c, "random", namespace=ns) is None
    write(c, "insert_many", items=[[k, "r", 0] for k in range(50)], namespace=ns)
    seen = set()
    for k in range(15):  # a write between reads: the cached result is stale, each read is a new transaction
        seen.add(read(c, "random", namespace=ns, bounds={"lower": {"key": 40}})["key"])
        write(c, "insert", key=-k - 1, id="r", namespace=ns)
    assert seen <= set(range(40, 50)) and len(seen) > 1


def test_clear_takes_new_settings_and_old_nodes_are_collected(c, daemon: RunningDaemon) -> None:
    ns = "big"
    write(c, "init", max_node_size=4, namespace=ns)
    for start in range(0, 1600, 400):
        write(c, "insert_many", items=[[k, "b", 1] for k in range(start, start + 400)], namespace=ns)
    assert read(c, "validate", namespace=ns)["nodes"] > 256
    res = write(c, "clear", max_node_size=8, root_lazy=False, namespace=ns)
    assert res == {"deleted": 257, "more": True}  # the root and 256 more; the rest later
    assert read(c, "count", namespace=ns) == 0
    with daemon.client() as cc:
        assert cc.query("read", agg="times", method="validate", args={"namespace": ns})["nodes"] == 1
    write(c, "insert_many", items=[[k, "c", 1] for k in range(40)], namespace=ns)
    assert read(c, "validate", namespace=ns)["depth"] == 1  # node size 8: 40 items need two levels
    # the scheduled collect_garbage deletes the rest; wait for it (bounded), then nothing is left over
    deadline = time.monotonic() + 30
    while write(c, "collect_garbage", max_nodes=500)["more"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert write(c, "collect_garbage")["more"] is False
    nodes = nodes_of(daemon, "times")
    live_trees = {n["tree"] for n in nodes if n.get("root_of") is not None}
    assert {n["tree"] for n in nodes} <= live_trees  # no node of a dropped tree is left


def test_caller_failure_rolls_back_and_caught_refusal_keeps_earlier_writes(c) -> None:
    before = read(c, "count")
    with pytest.raises(ComponentError):
        c.mutation("insert_then_fail", key=1, id="rolled-back")
    assert read(c, "count") == before
    assert c.mutation("insert_catching_duplicate", key=3, id="dup") == "KEY_EXISTS"
    # the first insert stayed; the batch (whose first op succeeded before the second failed) left nothing
    assert read(c, "count") == before + 1
    assert read(c, "count", bounds={"eq": 1003}) == 0
    assert read(c, "validate")["count"] == before + 1


def test_table_backed_aggregate_follows_every_write_through_triggers(c) -> None:
    ids = {}
    for name, game, score in [("ann", "chess", 10), ("bob", "chess", 30), ("cy", "go", 5), ("dee", "chess", 20)]:
        ids[name] = c.mutation("add_player", name=name, game=game, score=score)
    assert c.query("rank_of", name="ann") == {
        "rank": 2, "players": 3, "total": 60, "best": {"key": ["chess", 30], "id": ids["bob"], "sum_value": 30}}
    c.mutation("set_score", name="ann", score=40)
    assert c.query("rank_of", name="ann")["rank"] == 0
    c.mutation("move_player", name="ann", game="go")
    assert c.query("rank_of", name="cy") == {
        "rank": 1, "players": 2, "total": 45, "best": {"key": ["go", 40], "id": ids["ann"], "sum_value": 40}}
    c.mutation("remove_player", name="bob")
    ids["eve"] = c.mutation("add_player_by_hook", name="eve", game="chess", score=1)
    m = c.query("mirrored")
    assert m["table"] == m["aggregate"] and len(m["aggregate"]) == 4
    assert c.mutation("backfill") == [False] * 4  # everything is mirrored already
    assert read(c, "validate", agg="by_game")["count"] == 4


def _writers(daemon: RunningDaemon, namespace_of: Any) -> tuple[int, list[BaseException]]:
    landed = [0] * 3
    errors: list[BaseException] = []

    def run(t: int) -> None:
        with daemon.client() as cl:
            for k in range(25):
                try:
                    cl.mutation("write", agg="times", method="insert",
                                args={"key": k, "id": f"w{t}", "namespace": namespace_of(t)})
                    landed[t] += 1
                except BaseException as exc:  # reported to the test
                    errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(landed), errors


def test_concurrent_writers_into_one_tree_lose_nothing(daemon: RunningDaemon) -> None:
    landed, errors = _writers(daemon, lambda t: "concurrent")
    # a small tree is one root leaf: writers conflict on it; a write either lands or fails as a conflict
    assert [e for e in errors if not isinstance(e, ConflictError)] == [] and landed + len(errors) == 75
    with daemon.client() as cl:
        assert cl.query("read", agg="times", method="validate", args={"namespace": "concurrent"})["count"] == landed


def test_writers_into_separate_namespaces_never_conflict(daemon: RunningDaemon) -> None:
    landed, errors = _writers(daemon, lambda t: f"own-{t}")
    assert errors == [] and landed == 75
    with daemon.client() as cl:
        counts = [cl.query("read", agg="times", method="count", args={"namespace": f"own-{t}"}) for t in range(3)]
        assert counts == [25] * 3


def test_calls_from_an_action_each_commit_on_their_own(c) -> None:
    assert c.action("from_action", namespace="act") == {"count": 2, "sum": 11, "keys": [1, 2]}


def test_root_laziness_can_be_switched_and_clear_all_resets_every_namespace(c) -> None:
    ns = "switch"
    write(c, "insert_many", items=[[k, "s", k] for k in range(300)], namespace=ns)
    assert read(c, "settings", namespace=ns) == {"max_node_size": 16, "root_lazy": True}
    write(c, "make_root_lazy", lazy=False, namespace=ns)
    assert read(c, "settings", namespace=ns) == {"max_node_size": 16, "root_lazy": False}
    write(c, "insert", key=1000, id="s", sum_value=1, namespace=ns)
    write(c, "delete", key=0, id="s", namespace=ns)
    assert read(c, "validate", namespace=ns)["count"] == 300  # validate checks the eager root's stored totals
    assert read(c, "sum", namespace=ns) == sum(range(1, 300)) + 1
    write(c, "make_root_lazy", lazy=True, namespace=ns)
    assert read(c, "validate", namespace=ns)["count"] == 300
    write(c, "insert_many", agg="scores", items=[[1, "x"], [2, "x"]], namespace="other")
    write(c, "clear_all", agg="scores", max_node_size=4)
    assert read(c, "count", agg="scores", namespace="other") == 0
    assert read(c, "settings", agg="scores", namespace="other") == {"max_node_size": 4, "root_lazy": True}
    assert read(c, "count", namespace=ns) == 300  # the other mount is untouched


def test_a_subscribed_count_follows_writes(daemon: RunningDaemon) -> None:
    ns = "reactive"
    with daemon.client() as cl:
        sub = cl.subscribe("read", agg="times", method="count", args={"namespace": ns})
        assert sub.next(timeout=30) == 0
        cl.mutation("write", agg="times", method="insert_many", args={"items": [[1, "a"], [2, "a"]], "namespace": ns})
        assert sub.value == 2  # a client's mutation returns once its subscriptions reflect it
        cl.mutation("write", agg="times", method="delete", args={"key": 1, "id": "a", "namespace": ns})
        assert sub.value == 1
