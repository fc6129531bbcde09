"""Transactions: frames, isolation between mounts, cursors, limits, commit behaviour."""

from __future__ import annotations

import os
import stat
import threading
import time
from typing import Any

import pytest

from runtime.errors import ConflictError, IsolationError, LimitExceeded, NotFoundError, SnapshotTooOld, ValidationError
from runtime.limits import Limits
from runtime.storage import Storage
from runtime.transactions import Committer, IndexRange, Transaction


def txn(storage: Storage, **kw: Any) -> Transaction:
    return Transaction(storage, now=time.time(), **kw)


def insert_committed(storage: Storage, committer: Committer, docs: list[dict[str, Any]], mount: str = "") -> list[str]:
    with txn(storage) as t:
        ids = [t.insert(mount, "t", d) for d in docs]
        committer.commit(t.prepare())
    return ids


def test_discarded_frame_drops_its_writes_and_merged_frame_keeps_them(storage: Storage, committer: Committer) -> None:
    (a,) = insert_committed(storage, committer, [{"k": 1, "v": 0}])
    with txn(storage) as t:
        t.patch("", a, {"v": 1})
        tok = t.begin_nested()
        t.patch("", a, {"v": 2})
        b = t.insert("", "t", {"k": 9, "v": 9})
        assert t.get("", a)["v"] == 2 and t.get("", b) is not None  # reads see the open frame
        t.rollback_nested(tok)
        assert t.get("", a)["v"] == 1 and t.get("", b) is None
        tok = t.begin_nested()
        inner = t.begin_nested()
        c = t.insert("", "t", {"k": 3, "v": 3})
        t.commit_nested(inner)
        t.commit_nested(tok)
        committer.commit(t.prepare())
    with txn(storage) as t:
        assert t.get("", a)["v"] == 1
        assert t.get("", b) is None
        assert t.get("", c)["v"] == 3


def test_reads_of_a_discarded_frame_stay_in_the_read_set(storage: Storage, committer: Committer) -> None:
    (a,) = insert_committed(storage, committer, [{"k": 1, "v": 0}])
    t = txn(storage)
    tok = t.begin_nested()
    t.get("", a)  # the callee read it, then failed
    t.rollback_nested(tok)
    t.insert("", "t", {"k": 5, "v": 5})
    with txn(storage) as other:
        other.patch("", a, {"v": 7})
        committer.commit(other.prepare())
    with pytest.raises(ConflictError) as err:
        committer.commit(t.prepare())
    assert err.value.table == "t"
    t.close()


def test_frames_must_close_innermost_first(storage: Storage) -> None:
    with txn(storage) as t:
        outer = t.begin_nested()
        t.begin_nested()
        with pytest.raises(Exception, match="innermost"):
            t.commit_nested(outer)


def test_blind_inserts_do_not_conflict_but_range_readers_do(storage: Storage, committer: Committer) -> None:
    reader = txn(storage)
    reader.scan("", "t", "by_k", IndexRange.from_ops([["eq", "k", 4]]))
    reader.insert("", "t", {"k": 100, "v": 0})
    blind = txn(storage)
    blind.insert("", "t", {"k": 50, "v": 0})
    phantom = txn(storage)
    phantom.insert("", "t", {"k": 4, "v": 1})  # lands in the reader's (empty) range
    committer.commit(blind.prepare())
    committer.commit(reader.prepare())  # unaffected by k=50
    second = txn(storage)
    second.scan("", "t", "by_k", IndexRange.from_ops([["eq", "k", 4]]))
    second.insert("", "t", {"k": 101, "v": 0})
    committer.commit(phantom.prepare())
    with pytest.raises(ConflictError):
        committer.commit(second.prepare())
    for t in (reader, blind, phantom, second):
        t.close()


def test_an_update_that_keeps_the_index_key_conflicts_with_readers_through_that_index(
        storage: Storage, committer: Committer) -> None:
    """Read a row through an index, patch a field no index covers: two such transactions must not both commit."""
    (doc_id,) = insert_committed(storage, committer, [{"k": 7, "v": 0, "w": 0}])
    first, second = txn(storage), txn(storage)
    for t in (first, second):
        (row,), _last, _done = t.scan("", "t", "by_k", IndexRange.from_ops([["eq", "k", 7]]))
        t.patch("", doc_id, {"w": row["w"] + 1})  # k and v unchanged: no index entry moves
    committer.commit(first.prepare())
    with pytest.raises(ConflictError):
        committer.commit(second.prepare())  # it read w=0 through by_k: a lost update otherwise
    for t in (first, second):
        t.close()
    whole = txn(storage)
    whole.scan("", "t")  # by_creation_time
    other = txn(storage)
    other.patch("", doc_id, {"w": 5})
    committer.commit(other.prepare())
    whole.insert("", "t", {"k": 8, "v": 0})
    with pytest.raises(ConflictError):
        committer.commit(whole.prepare())
    whole.close()
    other.close()


def test_ids_of_another_mount_are_refused(storage: Storage, committer: Committer) -> None:
    (child_id,) = insert_committed(storage, committer, [{"k": 1}], mount="child")
    with txn(storage) as t:
        assert t.get("child", child_id)["k"] == 1
        ops = (lambda: t.get("", child_id), lambda: t.patch("", child_id, {"k": 2}), lambda: t.delete("", child_id))
        for op in ops:
            with pytest.raises(IsolationError, match="another mount"):
                op()
        with pytest.raises(ValidationError, match="not a document Id"):
            t.get("", "nonsense")
        with pytest.raises(ValidationError, match="checksum"):
            # a middle character (the last one also carries spare bits: changing it can make a
            # non-canonical spelling, refused as such rather than by the checksum)
            t.get("", child_id[:9] + ("a" if child_id[9] != "a" else "b") + child_id[10:])
        with pytest.raises(NotFoundError, match="no table"):
            t.insert("", "missing", {})


def test_same_table_name_in_two_mounts_is_two_tables(storage: Storage, committer: Committer) -> None:
    insert_committed(storage, committer, [{"k": 1}], mount="")
    insert_committed(storage, committer, [{"k": 2}, {"k": 3}], mount="child")
    with txn(storage) as t:
        assert [d["k"] for d in t.scan("", "t")[0]] == [1]
        assert [d["k"] for d in t.scan("child", "t")[0]] == [2, 3]


def test_pagination_walks_every_item_once_and_cursors_are_bound(storage: Storage, committer: Committer) -> None:
    insert_committed(storage, committer, [{"k": i % 7, "v": i} for i in range(50)])
    rng = IndexRange.from_ops([["gte", "k", 2]])
    with txn(storage) as t:
        expected = t.scan("", "t", "by_k", rng, "desc")[0]
        seen, cursor = [], None
        while True:
            page = t.paginate("", "t", "by_k", rng, "desc", cursor, num_items=6)
            seen += page.page
            cursor = page.continue_cursor
            if page.is_done:
                break
        assert seen == expected and len(seen) == len([i for i in range(50) if i % 7 >= 2])
        first = t.paginate("", "t", "by_k", rng, "desc", None, num_items=6)
        with pytest.raises(IsolationError, match="different query or mount"):
            t.paginate("child", "t", "by_k", rng, "desc", first.continue_cursor, num_items=6)
        with pytest.raises(IsolationError):
            t.paginate("", "t", "by_k", rng, "asc", first.continue_cursor, num_items=6)
        with pytest.raises(ValidationError, match="not a cursor"):
            t.paginate("", "t", "by_k", rng, "desc", first.continue_cursor[:-4] + "AAAA", num_items=6)
        with pytest.raises(ValidationError, match="num_items"):
            t.paginate("", "t", num_items=0)


def test_index_range_shape_is_checked(storage: Storage) -> None:
    with txn(storage) as t:
        for ops, msg in [
            ([["eq", "v", 1]], "not field 1"),
            ([["gt", "v", 1]], "field after the eq prefix"),
            ([["gt", "k", 1], ["eq", "v", 1]], "before the bounds"),
            ([["gt", "k", 1], ["gte", "k", 2]], "one lower bound"),
            ([["like", "k", 1]], "unknown operator"),
        ]:
            with pytest.raises(ValidationError, match=msg):
                t.scan("", "t", "by_k_v", IndexRange.from_ops(ops))
        with pytest.raises(NotFoundError, match="no index"):
            t.scan("", "t", "by_nothing")


@pytest.mark.parametrize(
    ("doc", "limit"),
    [
        ({"s": "x" * (1024 * 1024)}, "document_size_bytes"),
        ({"a": [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}, "document_depth"),
        ({f"f{i}": i for i in range(1025)}, "document_fields_count"),
        ({"a": list(range(8193))}, "array_elements_count"),
    ],
)
def test_value_limits_are_clear_errors(storage: Storage, doc: dict[str, Any], limit: str) -> None:
    with txn(storage) as t:
        with pytest.raises(LimitExceeded) as err:
            t.insert("", "t", doc)
        assert err.value.limit == limit and limit in str(err.value)


def test_bad_values_name_the_path(storage: Storage) -> None:
    with txn(storage) as t:
        for doc, fragment in [({"a": {1: 2}}, "a: dict key 1"), ({"a": [object()]}, "a[0]: object"),
                              ({"n": 2**64}, "64 bits"), ({"s": "\ud800"}, "surrogate"), ({"_x": 1}, "reserved")]:
            with pytest.raises(ValidationError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
                t.insert("", "t", doc)


def test_transaction_budgets(storage: Storage, committer: Committer) -> None:
    insert_committed(storage, committer, [{"k": 1, "v": i} for i in range(20)])
    with (txn(storage, limits=Limits(txn_scanned_documents=10)) as t,
          pytest.raises(LimitExceeded, match="txn_scanned_documents")):
        t.scan("", "t")
    with txn(storage, limits=Limits(txn_index_ranges=3)) as t:
        for _ in range(3):
            t.scan("", "t", limit=1)
        with pytest.raises(LimitExceeded, match="txn_index_ranges"):
            t.scan("", "t", limit=1)
    with txn(storage, limits=Limits(txn_written_documents=5)) as t:
        for i in range(5):
            t.insert("", "t", {"k": i})
        with pytest.raises(LimitExceeded, match="txn_written_documents"):
            t.insert("", "t", {"k": 6})


def test_schema_hook_sees_every_write_and_can_refuse(storage: Storage) -> None:
    seen = []

    def hook(mount: str, table: str, doc: dict[str, Any]) -> dict[str, Any]:
        seen.append((mount, table, dict(doc)))
        if not isinstance(doc.get("k"), int):
            raise ValidationError("k must be an int")
        return doc

    with txn(storage, schema_hook=hook) as t:
        a = t.insert("", "t", {"k": 1})
        t.patch("", a, {"v": 2})
        with pytest.raises(ValidationError, match="k must be an int"):
            t.replace("", a, {"k": "no"})
        assert t.get("", a) == {"k": 1, "v": 2, "_id": a, "_creation_time": t.get("", a)["_creation_time"]}
    assert seen[:2] == [("", "t", {"k": 1}), ("", "t", {"k": 1, "v": 2})]


def test_snapshot_too_old_beyond_the_write_log(storage: Storage) -> None:
    with Committer(storage, Limits(write_log_max_entries=2)) as c:
        old = txn(storage)
        old.get("", insert_committed(storage, c, [{"k": 0}])[0])
        old.insert("", "t", {"k": 1})
        for i in range(3):
            insert_committed(storage, c, [{"k": 10 + i}])
        with pytest.raises(SnapshotTooOld):
            c.commit(old.prepare())
        old.close()


def test_new_index_is_backfilled_and_dropped_index_removed(storage: Storage, committer: Committer) -> None:
    insert_committed(storage, committer, [{"k": 3, "v": 1}, {"k": 1, "v": 2}, {"k": 2}])
    storage.define_table("", "t", {"by_v": ["v"]})
    with txn(storage) as t:
        assert [d.get("v") for d in t.scan("", "t", "by_v")[0]] == [None, 1, 2]  # missing sorts first
        with pytest.raises(NotFoundError):
            t.scan("", "t", "by_k")


def test_unmounted_tables_are_read_only(storage: Storage, committer: Committer) -> None:
    (a,) = insert_committed(storage, committer, [{"k": 1}], mount="child")
    storage.set_read_only("child", True)
    with txn(storage) as t:
        assert t.get("child", a)["k"] == 1
        with pytest.raises(IsolationError, match="read-only"):
            t.patch("child", a, {"k": 2})
        with pytest.raises(IsolationError, match="read-only"):
            t.insert("child", "t", {"k": 2})


def test_concurrent_transfers_conserve_the_total_and_commits_are_grouped(
    storage: Storage, committer: Committer
) -> None:
    accounts = insert_committed(storage, committer, [{"k": i, "v": 100} for i in range(4)])
    done, conflicts = [], []

    def worker(seed: int) -> None:
        import random

        rnd = random.Random(seed)
        for _ in range(40):
            for _attempt in range(50):
                a, b = rnd.sample(accounts, 2)
                with txn(storage) as t:
                    t.patch("", a, {"v": t.get("", a)["v"] - 1})
                    t.patch("", b, {"v": t.get("", b)["v"] + 1})
                    try:
                        committer.commit(t.prepare())
                        done.append(1)
                        break
                    except ConflictError:
                        conflicts.append(1)
                time.sleep(rnd.uniform(0, 0.001 * (_attempt + 1)))  # jittered backoff, as the runtime retries

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    rounds_before = committer.rounds
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    with txn(storage) as t:
        assert sum(t.get("", a)["v"] for a in accounts) == 400
    assert len(done) == 8 * 40
    # 8 writers waiting on one fsync at a time: rounds must carry several commits each
    assert committer.rounds - rounds_before < len(done)


def test_commit_timestamps_increase_and_the_log_holds_each_write_set(storage: Storage, committer: Committer) -> None:
    stamps = []
    for i in range(5):
        with txn(storage) as t:
            t.insert("", "t", {"k": i})
            stamps.append(committer.commit(t.prepare()))
    assert stamps == sorted(stamps) and len(set(stamps)) == 5
    log = list(storage.log_since(stamps[0] - 1))
    assert [ts for ts, _ in log] == stamps
    assert [ws[0][2]["k"] for _, ws in log] == list(range(5))


def test_data_dir_is_private(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Storage.open(tmp_path / "d")
    try:
        assert stat.S_IMODE(os.stat(tmp_path / "d").st_mode) == 0o700
        for name in os.listdir(tmp_path / "d" / "lmdb"):
            assert stat.S_IMODE(os.stat(tmp_path / "d" / "lmdb" / name).st_mode) == 0o600
    finally:
        s.close()


def test_commit_async_settles_on_the_event_loop(storage: Storage, committer: Committer) -> None:
    import asyncio

    async def main() -> tuple[list[int], int, type[BaseException] | None]:
        stamps = []
        for i in range(3):
            with txn(storage) as t:
                t.insert("", "t", {"k": i})
                stamps.append(await committer.commit_async(t.prepare()))
        with txn(storage) as ro:
            ro.scan("", "t")
            read_only = await committer.commit_async(ro.prepare())
        with txn(storage) as first:
            (a,) = [d["_id"] for d in first.scan("", "t", limit=1)[0]]
        loser, winner = txn(storage), txn(storage)
        for t in (loser, winner):
            t.patch("", a, {"v": 1})
        await committer.commit_async(winner.prepare())
        try:
            await committer.commit_async(loser.prepare())
            err = None
        except ConflictError as exc:
            err = type(exc)
        loser.close()
        winner.close()
        return stamps, read_only, err

    stamps, read_only, err = asyncio.run(main())
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    assert read_only == stamps[-1]
    assert err is ConflictError
