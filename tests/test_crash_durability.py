"""Guarantee: a transaction acknowledged by the committer survives ``kill -9``;
no partial transaction is ever visible.

Each round starts ``tests/crash_child.py`` on one data directory, lets its
writer threads commit (and acknowledge on stdout) for a random moment, kills it
with SIGKILL, then reopens the Storage in this process and checks:

* every acknowledged transaction is there, whole (through a ``by_txn`` index
  range and through the full ``by_creation_time`` scan);
* every transaction that is there at all is whole: exactly ``K`` documents,
  parts ``0..K-1``, and its thread counter counts it (counters and items are
  written in the same transaction, so they must agree exactly);
* per thread, the transactions present are exactly ``1..count``: nothing
  acknowledged is missing, and at most the one in-flight, unacknowledged
  transaction of each thread is there beyond the acknowledged ones;
* ``by_txn``, ``by_creation_time`` and the raw documents hold the same set of
  ids; every index entry points at a document and every document has its
  entries;
* the transaction log agrees with the data: one log entry per transaction
  holding exactly its ``K`` inserts and its counter patch, and every stored
  document carries the commit ts of the log entry that wrote it (so a log or an
  index written in a separate LMDB transaction would show after some crash);
* nothing seen after an earlier crash is gone after a later one;
* the data directory is 0700 and the LMDB files 0600, and the child's LMDB
  environment syncs on commit (``sync``/``metasync`` on, no ``map_async``).

Rounds reuse the same data directory, so the database accumulates and each
child recovers from the previous kill.  Some rounds kill the child while it is
still starting (opening, defining tables, creating counters).

A ``kill -9`` cannot tell "fsync'd" from "written to the page cache" (the
kernel keeps the page cache of a killed process), so a missing fsync is only
caught through the environment flags check, not by the crash itself.

The random kill times come from ``random.Random(seed)``; the seed is printed in
every failure message, and ``BULKHEAD_CRASH_SEED`` fixes it for a re-run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import runtime
from runtime.limits import DEFAULT
from runtime.storage import Storage, keys
from runtime.transactions import IndexRange, Transaction

HERE = Path(__file__).resolve().parent
CHILD = HERE / "crash_child.py"
ROOT = HERE.parent

# Must match tests/crash_child.py (kept literal: the child is a script, not a module).
MOUNT = ""
ITEMS = "items"
COUNTERS = "counters"
THREAD_IDS = (1, 2, 3, 4)
K = 3
TXN_STRIDE = 10**6

READY_TIMEOUT_S = 30.0
KILL_SLEEP_S = (0.05, 0.4)
EARLY_KILL_PROBABILITY = 0.15
"""Share of rounds that kill the child at a random moment of its start-up instead."""
EARLY_KILL_S = (0.0, 0.15)

VERIFY_LIMITS = dataclasses.replace(
    DEFAULT,
    txn_scanned_documents=10**12,
    txn_read_bytes=2**62,
    txn_index_ranges=10**9,
)
"""The verifier reads the whole database in one transaction."""


@dataclass
class RoundResult:
    acks: list[int]
    ready: dict[str, Any] | None
    early: bool
    sleep_s: float
    returncode: int
    stderr: str


@dataclass
class History:
    """What earlier rounds established."""

    acked: set[int] = field(default_factory=set)
    counts: dict[int, int] = field(default_factory=lambda: {t: 0 for t in THREAD_IDS})
    """Per thread: transactions present at the last verification."""
    last_ts: int = 0
    rounds_with_acks: int = 0


# --- running one child ---------------------------------------------------------------------


def run_child_round(data_dir: Path, rng: random.Random, stderr_path: Path, ctx: str) -> RoundResult:
    """Start the child, kill it with SIGKILL at a random moment, return its acknowledgements."""
    early = rng.random() < EARLY_KILL_PROBABILITY
    sleep_s = rng.uniform(*EARLY_KILL_S) if early else rng.uniform(*KILL_SLEEP_S)
    lines: list[bytes] = []
    ready = threading.Event()
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            cwd=str(ROOT),
        )
    assert proc.stdout is not None
    stdout = proc.stdout

    def reader() -> None:
        # readline() returns a trailing partial line without b"\n" at EOF; it is kept here
        # and dropped below, as the guarantee covers only fully written acknowledgements.
        for line in iter(stdout.readline, b""):
            lines.append(line)
            if line.startswith(b"READY "):
                ready.set()

    thread = threading.Thread(target=reader, name="crash-ack-reader", daemon=True)
    thread.start()
    try:
        if not early:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not ready.wait(0.01):
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
        time.sleep(sleep_s)
        if proc.poll() is None:  # not reaped, so the pid is still ours (at worst a zombie)
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        thread.join(timeout=30)
        assert not thread.is_alive(), f"{ctx}: stdout of the killed child never reached EOF"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        thread.join(timeout=5)
        stdout.close()
    stderr = stderr_path.read_text(errors="replace")

    complete = [ln[:-1].decode("ascii", "replace") for ln in lines if ln.endswith(b"\n")]
    ready_info = None
    acks: list[int] = []
    for i, text in enumerate(complete):
        if text.startswith("READY "):
            assert i == 0, f"{ctx}: READY is not the first line of the child's output: {complete[:i + 1]!r}"
            ready_info = json.loads(text[len("READY "):])
            continue
        assert text.isdigit(), f"{ctx}: malformed acknowledgement line {text!r}"
        assert ready_info is not None, f"{ctx}: acknowledgement {text!r} before READY"
        acks.append(int(text))
    return RoundResult(acks, ready_info, early, sleep_s, proc.returncode, stderr)


# --- checks ---------------------------------------------------------------------------------


def check_permissions(data_dir: Path, ctx: str) -> None:
    """The data directory (and LMDB's subdirectory) 0700, every LMDB file 0600."""
    if not data_dir.exists():
        return  # killed before it even made the directory
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    assert mode == 0o700, f"{ctx}: data dir {data_dir} has mode {mode:o}, not 700"
    lmdb_dir = data_dir / "lmdb"
    if not lmdb_dir.exists():
        return
    mode = stat.S_IMODE(lmdb_dir.stat().st_mode)
    assert mode == 0o700, f"{ctx}: {lmdb_dir} has mode {mode:o}, not 700"
    for f in lmdb_dir.iterdir():
        mode = stat.S_IMODE(f.stat().st_mode)
        assert f.is_file(), f"{ctx}: unexpected non-file {f}"
        assert mode == 0o600, f"{ctx}: LMDB file {f} has mode {mode:o}, not 600"


def raw_table(storage: Storage, table_number: int) -> dict[str, tuple[dict[str, Any], int]]:
    """Every stored document of a table: ``id -> (document, commit ts)``, straight from LMDB."""
    out = {}
    prefix = keys.table_documents_prefix(table_number)
    with storage.env.lmdb.begin(write=False) as txn, txn.cursor(db=storage.env.dbs[keys.DB_DOCUMENTS]) as cur:
        ok = cur.set_range(prefix)
        while ok and cur.key().startswith(prefix):
            doc, ts = keys.unpack_document(cur.value())
            out[doc["_id"]] = (doc, ts)
            ok = cur.next()
    return out


def raw_index_count(storage: Storage, index_number: int) -> int:
    """Number of entries of one index, straight from LMDB."""
    n = 0
    prefix = keys.index_prefix(index_number)
    with storage.env.lmdb.begin(write=False) as txn, txn.cursor(db=storage.env.dbs[keys.DB_INDEXES]) as cur:
        ok = cur.set_range(prefix)
        while ok and cur.key().startswith(prefix):
            n += 1
            ok = cur.next()
    return n


def verify(data_dir: Path, result: RoundResult, history: History, ctx: str) -> None:
    """Reopen the data directory and check everything the module docstring lists."""
    acks = result.acks
    storage = Storage.open(data_dir)
    try:
        items_info = storage.catalog.tables.get((MOUNT, ITEMS))
        counters_info = storage.catalog.tables.get((MOUNT, COUNTERS))
        if items_info is None or counters_info is None:
            # Killed while defining the tables: then nothing can ever have been acknowledged.
            assert not history.acked and not acks, f"{ctx}: tables missing after acknowledged commits"
            return

        # --- reads through the transaction API ------------------------------------------------
        txn = Transaction(storage, now=time.time(), limits=VERIFY_LIMITS)
        try:
            by_ct, _, done_ct = txn.scan(MOUNT, ITEMS)
            by_txn, _, done_txn = txn.scan(MOUNT, ITEMS, "by_txn")
            assert done_ct and done_txn
            counter_docs, _, _ = txn.scan(MOUNT, COUNTERS, "by_thread")
            per_ack = {
                n: txn.scan(MOUNT, ITEMS, "by_txn", IndexRange(eq=(("txn", n),)))[0] for n in acks
            }
        finally:
            txn.close()

        ct_ids = [d["_id"] for d in by_ct]
        txn_ids = [d["_id"] for d in by_txn]
        assert len(set(ct_ids)) == len(ct_ids), f"{ctx}: by_creation_time yields a document twice"
        assert len(set(txn_ids)) == len(txn_ids), f"{ctx}: by_txn yields a document twice"
        assert set(ct_ids) == set(txn_ids), (
            f"{ctx}: by_creation_time and by_txn disagree: only in by_creation_time "
            f"{sorted(set(ct_ids) - set(txn_ids))[:10]}, only in by_txn {sorted(set(txn_ids) - set(ct_ids))[:10]}"
        )
        docs = {d["_id"]: d for d in by_ct}
        assert all(docs[d["_id"]] == d for d in by_txn), f"{ctx}: by_txn returns other contents than by_creation_time"
        txn_values = [d["txn"] for d in by_txn]
        assert txn_values == sorted(txn_values), f"{ctx}: by_txn is not in txn order"

        groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for d in by_ct:
            assert set(d) == {"_id", "_creation_time", "txn", "part", "thread"}, f"{ctx}: odd document {d!r}"
            groups[d["txn"]].append(d)
        for n, group in groups.items():
            parts = sorted(d["part"] for d in group)
            assert parts == list(range(K)), (
                f"{ctx}: PARTIAL TRANSACTION visible: txn {n} has parts {parts}, expected {list(range(K))}"
            )
            assert all(d["thread"] == n // TXN_STRIDE for d in group), f"{ctx}: txn {n} has a foreign thread"

        # Every acknowledged transaction, through an index range and through the full scan.
        for n in acks:
            got = per_ack[n]
            assert len(got) == K, (
                f"{ctx}: ACKNOWLEDGED txn {n} LOST or partial: by_txn eq {n} gives {len(got)} documents, expected {K} "
                f"(acknowledged this round: {len(acks)}, last acks {acks[-5:]})"
            )
            assert {d["_id"] for d in got} == {d["_id"] for d in groups.get(n, [])}, (
                f"{ctx}: acknowledged txn {n}: by_txn range and by_creation_time scan disagree"
            )
        missing = sorted(n for n in history.acked.union(acks) if n not in groups)
        assert not missing, f"{ctx}: {len(missing)} ACKNOWLEDGED transactions LOST, e.g. {missing[:10]}"

        # --- counters: exactly the transactions present, contiguous per thread ----------------
        counters: dict[int, dict[str, Any]] = {}
        for c in counter_docs:
            t = c["thread"]
            assert t in THREAD_IDS, f"{ctx}: counter of unknown thread {c!r}"
            assert t not in counters, f"{ctx}: thread {t} has two counter documents: {counters[t]!r}, {c!r}"
            counters[t] = c
        present_by_thread: dict[int, list[int]] = defaultdict(list)
        for n in groups:
            present_by_thread[n // TXN_STRIDE].append(n)
        acked_by_thread: dict[int, list[int]] = defaultdict(list)
        for n in acks:
            acked_by_thread[n // TXN_STRIDE].append(n)
        new_counts = {}
        for t in THREAD_IDS:
            present = sorted(present_by_thread.get(t, []))
            if t not in counters:
                assert not present, f"{ctx}: thread {t} has transactions but no counter document"
                assert history.counts[t] == 0, f"{ctx}: the counter document of thread {t} was LOST"
                new_counts[t] = 0
                continue
            count = counters[t]["count"]
            seqs = [n - t * TXN_STRIDE for n in present]
            assert seqs == list(range(1, count + 1)), (
                f"{ctx}: thread {t}: counter says {count} transactions but these are present: "
                f"{seqs[:5]}...{seqs[-5:]} ({len(seqs)}) -- partial transaction (counter and items disagree)"
            )
            assert counters[t]["last"] == (t * TXN_STRIDE + count if count else None), f"{ctx}: counter {counters[t]!r}"
            prev = history.counts[t]
            assert count >= prev, f"{ctx}: thread {t} had {prev} transactions after the last crash, now {count}: LOST"
            acked = [n - t * TXN_STRIDE for n in acked_by_thread.get(t, [])]
            if acked:
                assert acked == list(range(prev + 1, prev + 1 + len(acked))), (
                    f"{ctx}: thread {t} acknowledged out of sequence: {acked[:5]}... after {prev}"
                )
                floor = acked[-1]
            else:
                floor = prev
            # At most one in-flight (committed, killed before its ack) transaction per thread.
            assert floor <= count <= floor + 1, (
                f"{ctx}: thread {t}: {count} transactions present, last acknowledged/known {floor}: "
                + ("ACKNOWLEDGED TRANSACTION LOST" if count < floor else "unexplained extra commits")
            )
            new_counts[t] = count

        # --- raw LMDB: documents, indexes and log agree ---------------------------------------
        raw_items = raw_table(storage, items_info.number)
        raw_counters = raw_table(storage, counters_info.number)
        assert set(raw_items) == set(docs), f"{ctx}: raw documents differ from the by_creation_time scan"
        assert all(raw_items[i][0] == d for i, d in docs.items()), f"{ctx}: raw documents differ from scan results"
        assert {c["_id"] for c in counter_docs} == set(raw_counters), f"{ctx}: counter index and documents disagree"
        for info, n_docs in ((items_info, len(raw_items)), (counters_info, len(raw_counters))):
            for ix in info.indexes.values():
                if ix.name == keys.BY_ID:
                    continue  # by_id is the document key itself
                assert raw_index_count(storage, ix.number) == n_docs, (
                    f"{ctx}: index {info.name}.{ix.name} has {raw_index_count(storage, ix.number)} entries "
                    f"for {n_docs} documents"
                )

        last_ts = storage.last_ts
        assert last_ts >= history.last_ts, f"{ctx}: last commit ts went back from {history.last_ts} to {last_ts}"
        written: dict[str, tuple[int, dict[str, Any]]] = {}
        prev_ts = 0
        for ts, entry in storage.log_since(0):
            assert ts > prev_ts, f"{ctx}: log timestamps not increasing at {ts}"
            assert ts <= last_ts, f"{ctx}: log entry {ts} after the recorded last commit ts {last_ts}"
            prev_ts = ts
            item_writes = [(i, d) for tn, i, d in entry if tn == items_info.number]
            counter_writes = [(i, d) for tn, i, d in entry if tn == counters_info.number]
            assert len(item_writes) + len(counter_writes) == len(entry), f"{ctx}: log {ts} writes another table"
            if item_writes:
                ns = {d["txn"] for _, d in item_writes if d is not None}
                assert len(item_writes) == K and len(ns) == 1, f"{ctx}: log entry {ts} is not one whole txn: {entry!r}"
                n = ns.pop()
                assert (
                    len(counter_writes) == 1
                    and counter_writes[0][1]["count"] == n % TXN_STRIDE
                    and counter_writes[0][1]["last"] == n
                ), (
                    f"{ctx}: log entry {ts} of txn {n} lacks its counter patch: {entry!r}"
                )
            else:
                assert counter_writes and all(d["count"] == 0 for _, d in counter_writes), (
                    f"{ctx}: unexpected log entry {ts}: {entry!r}"
                )
            for doc_id, d in item_writes + counter_writes:
                written[doc_id] = (ts, d)
        assert prev_ts == last_ts, f"{ctx}: newest log entry {prev_ts} but last commit ts {last_ts}"
        stored = {**raw_items, **raw_counters}
        assert set(written) == set(stored), (
            f"{ctx}: log and documents disagree: only logged {sorted(set(written) - set(stored))[:5]}, "
            f"only stored {sorted(set(stored) - set(written))[:5]}"
        )
        for doc_id, (doc, ts) in stored.items():
            log_ts, log_doc = written[doc_id]
            assert ts == log_ts and doc == log_doc, (
                f"{ctx}: document {doc_id} (commit ts {ts}) is not what log entry {log_ts} wrote"
            )
    finally:
        storage.close()

    history.acked.update(acks)
    history.counts = new_counts
    history.last_ts = last_ts
    if acks:
        history.rounds_with_acks += 1


# --- the tests ---------------------------------------------------------------------------------


def run_rounds(tmp_path: Path, rounds: int) -> None:
    seed = int(os.environ.get("BULKHEAD_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    history = History()
    for r in range(rounds):
        ctx = f"[seed={seed} round={r}/{rounds}; re-run with BULKHEAD_CRASH_SEED={seed}]"
        result = run_child_round(data_dir, rng, tmp_path / f"child-{r}.stderr", ctx)
        early = ", during start-up" if result.early else ""
        ctx += f" (kill after {result.sleep_s:.3f}s{early}, {len(result.acks)} acks)"
        assert result.returncode == -signal.SIGKILL, (
            f"{ctx}: the child ended with {result.returncode}, not by our SIGKILL; stderr:\n{result.stderr}"
        )
        if not result.early:
            assert result.ready is not None, f"{ctx}: the child never became ready; stderr:\n{result.stderr}"
        if result.ready is not None:
            assert Path(result.ready["runtime"]).resolve() == Path(runtime.__file__).resolve(), (
                f"{ctx}: the child imported {result.ready['runtime']}, this test {runtime.__file__}"
            )
            flags = result.ready["lmdb_flags"]
            assert flags["sync"] and flags["metasync"] and not flags["map_async"], (
                f"{ctx}: the child's LMDB environment does not sync on commit: {flags}"
            )
        check_permissions(data_dir, ctx)  # as the killed child left it (opening would repair modes)
        verify(data_dir, result, history, ctx)
        check_permissions(data_dir, ctx)
    assert history.rounds_with_acks >= rounds // 2, (
        f"[seed={seed}] only {history.rounds_with_acks} of {rounds} rounds acknowledged anything; "
        "the test proves little"
    )
    assert sum(history.counts.values()) > 0


def test_acknowledged_commits_survive_sigkill(tmp_path: Path) -> None:
    run_rounds(tmp_path, 20)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_acknowledged_commits_survive_sigkill_soak(tmp_path: Path) -> None:
    run_rounds(tmp_path, 200)
