"""The storage engine: commit path, range scans and OCC validation, beside raw LMDB.

Each figure's baseline is raw LMDB doing the same physical work in the same run:

- ``storage.commit_single`` (commits/s): one-document transactions committed
  one at a time.  Baseline ``limit.lmdb_commit_single_same_bytes``: raw LMDB
  writing exactly the keys and values those commits wrote, one commit each.
- ``storage.commit_grouped`` (puts/s): many prepared transactions submitted at
  once, so the committer groups them (validation, timestamps, encoding, one
  LMDB write transaction and one fsync per round).  Baseline
  ``limit.lmdb_commit_grouped_same_bytes``: raw LMDB writing the very same
  keys and values with the same number of puts per durable commit.
- ``storage.txn_grouped`` (commits/s): the same, including building each
  transaction (snapshot, insert, validation, prepare) — what a coordinator pays.
- ``scan.range`` (rows/s): an index range scan in a transaction (read set,
  limits, documents decoded).  Baseline ``limit.lmdb_scan_same_rows``: a raw
  cursor over the same index entries, fetching each document's bytes.
- ``occ.validate`` (µs): validating a 64-range read set against 1,000 commits
  in the write log (3 keys each).
"""

from __future__ import annotations

import time

from benchmarks.harness import BenchContext, raw_lmdb_grouped
from runtime.keycodec import encode
from runtime.storage import Storage, keys
from runtime.transactions import Committer, IndexRange, ReadSet, Transaction, wait_all
from runtime.transactions.write_log import WriteLog

NAME = "storage"
DESCRIPTION = "storage engine: single and grouped commits, range scans, OCC validation vs raw LMDB"
ORDER = 10


def _doc(i: int) -> dict[str, object]:
    return {"name": f"user-{i:06d}", "score": i % 1000, "text": "x" * 40}


def _open(ctx: BenchContext, tag: str) -> Storage:
    storage = Storage.open(ctx.tmpdir(f"bh-storage-{tag}-"))
    storage.define_table("", "t", {"by_score": ["score"]})
    ctx.defer(storage.close)
    return storage


def _prepared(storage: Storage, start: int, n: int) -> list:  # type: ignore[type-arg]
    out = []
    for i in range(start, start + n):
        with Transaction(storage, now=time.time()) as t:
            t.insert("", "t", _doc(i))
            out.append(t.prepare())
    return out


def _written_items(prepared: list) -> list[tuple[bytes, bytes]]:  # type: ignore[type-arg]
    """Every key/value the commit path writes for these transactions, in the order it writes them."""
    items: list[tuple[bytes, bytes]] = []
    for ts, p in enumerate(prepared, start=1):
        items += [(k, b"") for k in p.index_puts]
        items += [(k, v + keys.ts_suffix(ts)) for k, v in p.doc_puts]
        items.append((keys.log_key(ts), p.log_value))
    return items


def _commits(ctx: BenchContext) -> None:
    reps = ctx.repeats(5, 3)
    # --- one at a time
    n_single = ctx.pick(600, 80)
    single_rates, raw_rates = [], []
    for r in range(reps):
        storage = _open(ctx, f"single{r}")
        with Committer(storage) as committer:
            prepared = _prepared(storage, 0, n_single)
            t0 = time.perf_counter()
            for p in prepared:
                committer.commit(p)
            single_rates.append(n_single / (time.perf_counter() - t0))
        items = _written_items(prepared)
        per_commit = max(1, round(len(items) / n_single))
        raw_rates.append(raw_lmdb_grouped(ctx.tmpdir("bh-raw1-"), items, per_commit) / per_commit)
    ctx.record("limit.lmdb_commit_single_same_bytes", "commits/s", raw_rates, better="higher",
               note="raw LMDB, the same keys/values as storage.commit_single, one durable commit per transaction")
    ctx.record("storage.commit_single", "commits/s", single_rates, better="higher",
               baseline="limit.lmdb_commit_single_same_bytes", note="1-document transactions committed one at a time")

    # --- grouped
    n_grouped = ctx.pick(20_000, 2_000)
    puts_rates, raw_puts, txn_rates, grouping = [], [], [], []
    for r in range(reps):
        storage = _open(ctx, f"grouped{r}")
        with Committer(storage) as committer:
            prepared = _prepared(storage, 0, n_grouped)
            rounds0 = committer.rounds
            t0 = time.perf_counter()
            wait_all([committer.submit(p) for p in prepared])
            elapsed = time.perf_counter() - t0
            rounds = committer.rounds - rounds0
            # the whole path: build + prepare + commit, submitted as they are built
            t1 = time.perf_counter()
            futures = []
            for i in range(n_grouped, 2 * n_grouped):
                with Transaction(storage, now=time.time()) as t:
                    t.insert("", "t", _doc(i))
                    futures.append(committer.submit(t.prepare()))
            wait_all(futures)
            txn_rates.append(n_grouped / (time.perf_counter() - t1))
        items = _written_items(prepared)
        puts = len(items) + rounds  # + one meta put (last ts) per round
        puts_rates.append(puts / elapsed)
        grouping.append(n_grouped / rounds)
        raw_puts.append(raw_lmdb_grouped(ctx.tmpdir("bh-rawg-"), items, max(1, round(puts / rounds))))
    ctx.record("limit.lmdb_commit_grouped_same_bytes", "puts/s", raw_puts, better="higher",
               note="raw LMDB, the same keys/values as storage.commit_grouped, the same puts per durable commit")
    ctx.record("storage.commit_grouped", "puts/s", puts_rates, better="higher",
               baseline="limit.lmdb_commit_grouped_same_bytes",
               note=f"prepared 1-doc transactions submitted at once; "
                    f"median {sorted(grouping)[len(grouping) // 2]:.0f} per fsync")
    ctx.record("storage.txn_grouped", "commits/s", txn_rates, better="higher", baseline="storage.commit_single",
               note="begin + insert + prepare + grouped commit, one thread submitting")


def _scan(ctx: BenchContext) -> None:
    storage = _open(ctx, "scan")
    rows = ctx.pick(20_000, 3_000)
    with Committer(storage) as committer:
        for start in range(0, rows, 1000):
            with Transaction(storage, now=time.time()) as t:
                for i in range(start, start + 1000):
                    t.insert("", "t", {"name": f"u{i}", "score": i, "text": "x" * 40})
                committer.commit(t.prepare())
    rng = IndexRange.from_ops([["gte", "score", 0], ["lt", "score", rows]])

    def scan_once() -> int:
        with Transaction(storage, now=0.0) as t:
            return len(t.scan("", "t", "by_score", rng)[0])

    ctx.record("scan.range", "rows/s", ctx.measure_throughput(scan_once), better="higher",
               baseline="limit.lmdb_scan_same_rows", note=f"{rows} rows, one index range, in a transaction")
    ix = storage.catalog.table("", "t").index("by_score")
    prefix = keys.index_prefix(ix.number)
    env = storage.env

    def raw_scan() -> int:
        n = 0
        with env.lmdb.begin(buffers=True) as txn:
            docs = env.dbs[keys.DB_DOCUMENTS]
            cur = txn.cursor(db=env.dbs[keys.DB_INDEXES])
            ok = cur.set_range(prefix)
            tn = keys.table_documents_prefix(storage.catalog.table("", "t").number)
            while ok and bytes(cur.key()[:4]) == prefix:
                local = bytes(cur.key())
                txn.get(tn + local[-30:-1], db=docs)
                n += 1
                ok = cur.next()
        return n

    ctx.record("limit.lmdb_scan_same_rows", "rows/s", ctx.measure_throughput(raw_scan), better="higher",
               note="raw LMDB cursor over the same index entries, one document get per entry")


def _occ(ctx: BenchContext) -> None:
    log = WriteLog(0, 3600.0, 1_000_000)
    for ts in range(1, 1001):
        log.append((ts, {7: [encode(f"k{ts}-{j}") for j in range(3)]}, {7: "t"}))
    reads = ReadSet()
    for i in range(64):
        reads.add(7, encode(f"r{i}"), encode(f"r{i}z"))
    assert log.conflict(0, reads) is None
    ctx.record("occ.validate", "us", ctx.time_samples(lambda: log.conflict(0, reads), inner=ctx.pick(200, 50)),
               note="64 read ranges against 1,000 logged commits of 3 keys each")


def run(ctx: BenchContext) -> None:
    """Run the storage figures."""
    _commits(ctx)
    _scan(ctx)
    _occ(ctx)
