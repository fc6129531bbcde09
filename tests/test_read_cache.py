"""The worker's read cache (sandbox/readcache.py, kernel/feed.py): reads by Id answered in the worker stay exact.

Every test runs against a real daemon whose workers cache reads by Id (the
default).  Each one would fail if a cached read were stale, or if it were
missing from the read set: then concurrent bumps would lose updates,
subscriptions would not move, and a read after a write would not see it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from runtime.errors import ConflictError, IsolationError, ValidationError
from runtime.storage import Storage
from runtime.testing import RunningDaemon, start_daemon
from runtime.transactions import Committer
from runtime.transactions.transaction import Transaction
from sandbox.readcache import ReadCache

APP = Path(__file__).parent / "apps" / "cache" / "app.py"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> RunningDaemon:
    with start_daemon(tmp_path_factory.mktemp("cache") / "data", app=APP) as d:
        yield d


def _stats(d: RunningDaemon) -> dict[str, int]:
    stats: dict[str, int] = d.status()["stats"]
    return stats


def test_a_repeated_read_is_answered_in_the_worker_and_still_counted(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        doc_id = c.mutation("make", name="a", n=1)
        assert c.query("get", id=doc_id, nonce=1)["n"] == 1  # a miss: asks, and the worker keeps the answer
        before = _stats(daemon)
        assert c.query("get", id=doc_id, nonce=2)["n"] == 1
        after = _stats(daemon)
    assert after["syscalls"] == before["syscalls"]  # no round trip to the coordinator for the read
    assert after["cached_reads"] == before["cached_reads"] + 1  # but the read was reported


def test_an_index_scan_is_answered_in_the_worker_and_a_phantom_ends_it(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        c.mutation("make", name="idx", n=1)
        assert c.query("ns_named", name="idx", nonce=1) == [1]
        before = _stats(daemon)
        assert c.query("ns_named", name="idx", nonce=2) == [1]
        after = _stats(daemon)
        assert after["syscalls"] == before["syscalls"] and after["cached_reads"] == before["cached_reads"] + 1
        c.mutation("make", name="idx", n=2)  # a new document inside the scanned range
        assert c.query("ns_named", name="idx", nonce=3) == [1, 2]
        c.mutation("make", name="idy", n=3)  # outside it
        assert c.query("ns_named", name="idx", nonce=4) == [1, 2]


def test_user_code_changing_what_it_read_does_not_change_the_cache(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        doc_id = c.mutation("make", name="m", n=5)
        assert c.query("n_twice", id=doc_id, nonce=1) == [-1000, 5]
        assert c.query("n_twice", id=doc_id, nonce=2) == [-1000, 5]
        assert c.query("get", id=doc_id, nonce=3)["n"] == 5


def test_a_write_by_another_path_is_seen_by_the_next_read(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        doc_id = c.mutation("make", name="b", n=1)
        for i in range(5):
            assert c.query("get", id=doc_id, nonce=10 + i)["n"] == i + 1
            c.mutation("set_by_name", name="b", n=i + 2)  # written through the index: the cache is not involved
        assert c.query("get", id=doc_id, nonce=99)["n"] == 6


def test_more_changes_than_an_outbox_keeps_drop_the_cache_instead_of_serving_stale(tmp_path: Path) -> None:
    with start_daemon(tmp_path / "data", app=APP, env={"BULKHEAD_WORKER_CACHE_FEED_KEYS": "8"}) as d, d.client() as c:
        doc_id = c.mutation("make", name="flood", n=1)
        assert c.query("get", id=doc_id, nonce=1)["n"] == 1
        before = _stats(d)
        assert c.query("get", id=doc_id, nonce=2)["n"] == 1
        assert _stats(d)["cached_reads"] == before["cached_reads"] + 1  # it is cached
        c.mutation("set_by_name", name="flood", n=2, filler=20)  # one commit changing more Ids than kept
        assert c.query("get", id=doc_id, nonce=3)["n"] == 2


def test_reads_after_the_invocations_own_writes_and_nested_writes_see_them(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        doc_id = c.mutation("make", name="c", n=1)
        assert c.query("get", id=doc_id, nonce=1)["n"] == 1  # cached now
        assert c.mutation("write_then_read", id=doc_id) == {"before": 1, "after": 11, "gone": None}
        assert c.query("get", id=doc_id, nonce=2) is None
        other = c.mutation("make", name="d", n=1)
        assert c.query("get", id=other, nonce=1)["n"] == 1
        assert c.mutation("read_in_nested", id=other) == [1, 2]
        assert c.query("get", id=other, nonce=2)["n"] == 2


def test_cached_reads_are_in_the_read_set_so_concurrent_bumps_lose_nothing(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        hot = [c.mutation("make", name=f"hot{i}", n=0) for i in range(2)]
        for h in hot:
            c.query("get", id=h, nonce=1)  # cached before the race
    before = _stats(daemon)
    errors: list[BaseException] = []

    def hammer(k: int) -> None:
        try:
            with daemon.client() as cc:
                for _ in range(25):
                    cc.mutation("bump", id=hot[k % 2])
                    cc.mutation("move", src=hot[k % 2], dst=hot[(k + 1) % 2], amount=1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with daemon.client() as c:
        total = sum(c.query("get", id=h, nonce=2)["n"] for h in hot)
    assert total == 8 * 25  # every bump counted: moves conserve, lost updates would show
    assert _stats(daemon)["cached_reads"] > before["cached_reads"]  # and the cache did answer some of them


def test_a_read_answered_from_the_cache_orders_transactions_like_any_read(daemon: RunningDaemon) -> None:
    """Write skew: two withdrawals from different accounts each read both; the one that commits second must
    see the first (it read what the first wrote) or be retried.  Without the cached read in the read set,
    both commit and the pair goes negative."""
    with daemon.client() as c:
        pair = [c.mutation("make", name="acct", n=50), c.mutation("make", name="acct", n=50)]
    for round_ in range(15):
        with daemon.client() as c:
            c.mutation("reset", ids=pair, n=50)
            for i in pair:
                c.query("get", id=i, nonce=round_)  # both cached in the worker
        barrier = threading.Barrier(4)

        def take(k: int, barrier: threading.Barrier = barrier) -> None:
            with daemon.client() as cc:
                barrier.wait()
                cc.mutation("withdraw", take_from=pair[k % 2], other=pair[(k + 1) % 2], amount=100)

        threads = [threading.Thread(target=take, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with daemon.client() as c:
            total = sum(c.query("get", id=i, nonce=1000 + round_)["n"] for i in pair)
        assert total in (0, 100), f"round {round_}: the accounts hold {total} (write skew)"


def test_a_subscription_to_a_cached_read_moves_when_the_document_changes(daemon: RunningDaemon) -> None:
    with daemon.client() as c, daemon.client() as writer:
        doc_id = c.mutation("make", name="s", n=1)
        assert c.query("get", id=doc_id, nonce=7)["n"] == 1  # the worker holds it before the subscription runs
        sub = c.subscribe("get", id=doc_id, nonce=7)
        assert sub.next(timeout=60)["n"] == 1
        writer.mutation("set_by_name", name="s", n=2)
        assert sub.next(timeout=60)["n"] == 2


def _point(k: bytes) -> tuple[int, bytes, bytes, int, int]:
    return (7, k, k + b"\x00", 1, 10)


def test_cache_validity_rules() -> None:
    cache = ReadCache(max_entries=3, max_bytes=1 << 20)
    cache.store(b"get x", {"n": 1}, 10, _point(b"x"))
    assert cache.lookup(b"get x", 10) == ({"n": 1}, _point(b"x"))
    assert cache.lookup(b"get x", 9) is None  # older than the read: unknown
    cache.changed([(15, [(7, [b"x"])])])
    assert cache.lookup(b"get x", 14) is not None and cache.lookup(b"get x", 15) is None  # written at 15
    cache.changed([(16, [(8, [b"y"])])])  # another index: no effect on y's entry below
    cache.changed([(20, [(7, [b"y"])])])
    cache.store(b"get y", {"n": 0}, 18, _point(b"y"))  # the answer arrived after the news of a later write
    assert cache.lookup(b"get y", 19) is not None and cache.lookup(b"get y", 20) is None

    scan = (7, b"a", b"m", 3, 30)
    cache.store(b"scan a-m", {"docs": []}, 21, scan)
    cache.changed([(22, [(7, [b"z"])])])  # outside the range
    assert cache.lookup(b"scan a-m", 22) is not None
    cache.changed([(23, [(7, [b"c"])])])  # inside it: a phantom
    assert cache.lookup(b"scan a-m", 23) is None and cache.lookup(b"scan a-m", 22) is not None

    cache.changed([], lost_through=30)
    assert len(cache) == 0
    cache.store(b"get z", None, 25, _point(b"z"))  # read before announcements were lost: not kept
    assert cache.lookup(b"get z", 40) is None
    cache.store(b"get z", None, 31, _point(b"z"))
    assert cache.lookup(b"get z", 31) == (None, _point(b"z"))
    for i in range(5):
        cache.store(b"get k%d" % i, {"i": i}, 40, _point(b"k%d" % i))
    assert len(cache) == 3  # bounded


def test_a_reported_read_on_another_mounts_index_is_refused(storage: Storage) -> None:
    """A compromised worker can report whatever it likes: a range on another mount's index is refused, one on
    its own is recorded (so validation against a later write of that range sees it)."""
    mine, theirs = storage.catalog.table("", "t"), storage.catalog.table("child", "t")
    with Transaction(storage, now=0.0) as txn:
        with pytest.raises(IsolationError, match="not one of mount"):
            txn.note_cached_reads("", [(theirs.indexes["by_k"].number, b"a", b"b", 1, 10)])
        own = mine.indexes["by_k"].number
        txn.note_cached_reads("", [(own, b"a", b"b", 1, 10)])
        assert txn.reads.first_overlap({own: [b"a\x05"]}) is not None
        assert txn.scanned == 1 and txn.bytes_read == 10


# --- Ids minted in the worker ------------------------------------------------------------------------


def test_inserts_are_buffered_with_ids_the_worker_minted(daemon: RunningDaemon) -> None:
    with daemon.client() as c:
        c.mutation("make", name="warm", n=0)  # the worker has heard its table numbers
        before = _stats(daemon)
        ids = c.mutation("make_many", prefix="mm", count=40)
        after = _stats(daemon)
        assert len(set(ids)) == 40
        assert after["syscalls"] - before["syscalls"] <= 2  # the read back (and the inserts with it), not 40
        assert [c.query("get", id=i, nonce=5)["n"] for i in ids[:3]] == [0, 1, 2]
        assert c.query("get", id=ids[-1], nonce=5)["name"] == "mm39"


def test_a_minted_id_must_name_the_table_and_be_new(storage: Storage, committer: Committer) -> None:
    from runtime import values

    t = storage.catalog.table("", "t")
    other = storage.catalog.table("child", "t")
    doc_id = values.make_id(t.number, 1.0)
    with Transaction(storage, now=1.0) as txn:
        with pytest.raises(ValidationError, match="does not name a document of table 't'"):
            txn.insert("", "t", {"k": 1}, values.make_id(other.number, 1.0))
        assert txn.insert("", "t", {"k": 1}, doc_id) == doc_id
        with pytest.raises(ValidationError, match="already in use"):
            txn.insert("", "t", {"k": 2}, doc_id)  # written in this transaction
        committer.commit(txn.prepare())
    with Transaction(storage, now=2.0) as txn, pytest.raises(ValidationError, match="already in use"):
        txn.insert("", "t", {"k": 3}, doc_id)  # stored
    fresh = values.make_id(t.number, 3.0)
    a, b = Transaction(storage, now=3.0), Transaction(storage, now=3.0)
    a.insert("", "t", {"k": 4}, fresh)
    b.insert("", "t", {"k": 5}, fresh)
    committer.commit(a.prepare())
    with pytest.raises(ConflictError):  # the same new Id from two transactions: the second conflicts
        committer.commit(b.prepare())
    a.close()
    b.close()
