"""Peers in the same run: what a Python user would otherwise pick, beside Bulkhead's figures.

- ``peer.sqlite_8`` (mutations/s): the ``throughput.conflicting_8`` workload
  (suite ``calls``) on plain in-process SQLite: 8 threads, each with its own
  connection, each call a read-modify-write of one of the same 2 hot rows
  (``BEGIN IMMEDIATE``; ``SELECT``; ``UPDATE``; ``COMMIT``), in WAL mode with
  ``synchronous=FULL`` (every commit durable), a file in a temp dir.  The
  same number of calls per thread and repeats as ``throughput.conflicting_8``.
- ``throughput.conflicting_8_vs_sqlite`` (mutations/s): the median of
  ``throughput.conflicting_8`` measured by suite ``calls`` earlier in this run,
  restated (one sample) with baseline ``peer.sqlite_8`` so the table shows the
  ratio.  Target: ≥ 1.
- ``peer.sqlite_transfer_8`` (transfers/s): two-row transfers on SQLite (read
  both rows, write both) from 8 threads, the same settings.
- ``throughput.transfer_8`` (transfers/s): the same two-row transfers through a
  real daemon (``benchmarks/apps/peers``): 8 client threads, each transfer an
  app mutation reading both accounts through an index and patching both.
  Baseline ``peer.sqlite_transfer_8``.  The note gives conflict re-runs and
  failed calls; the total balance is checked afterwards (no money lost).
- ``peer.ray_actor_call`` (µs): a Ray actor method call round trip
  (``ray.get(actor.bump.remote(key))``), in a fresh child process running a
  local Ray on loopback (``_ray_peer.py``).  Needs the optional ``bench``
  extra (``pip install 'bulkhead[bench]'``); skipped with a note otherwise, or
  when ``BULKHEAD_BENCH_RAY=0``.
- ``call.app_to_component_vs_ray`` (µs): the median of
  ``call.app_to_component`` (suite ``calls``, same run) restated with baseline
  ``peer.ray_actor_call``.  Target: ≤ 0.5.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness import BenchContext, stop_process, timed_threads
from runtime.errors import BulkheadError
from runtime.testing import RunningDaemon

NAME = "peers"
DESCRIPTION = "peers in the same run: SQLite (WAL, synchronous=FULL) from 8 threads, a Ray actor call"
ORDER = 35

APP = Path(__file__).parent / "apps" / "peers" / "app.py"
RAY_PEER = Path(__file__).parent / "_ray_peer.py"
THREADS = 8
HOT_KEYS = ("k0", "k1")
ACCOUNTS = ("alice", "bob")
OPENING_BALANCE = 1_000_000
RAY_TIMEOUT_S = 240.0
RAY_ENV = "BULKHEAD_BENCH_RAY"
"""Set to ``0`` to skip the Ray peer even when Ray is installed (it takes ~10 s to start)."""


# --- SQLite ------------------------------------------------------------------------
def _sqlite_open(path: Path) -> sqlite3.Connection:
    """A connection as a careful user would set it up: WAL, durable commits, manual transactions."""
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=True)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def _sqlite_db(ctx: BenchContext, tag: str, rows: dict[str, int]) -> Path:
    path = ctx.tmpdir(f"bh-peers-sqlite-{tag}-") / "peer.db"
    conn = _sqlite_open(path)
    try:
        conn.execute("CREATE TABLE rows (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        conn.executemany("INSERT INTO rows VALUES (?, ?)", list(rows.items()))
    finally:
        conn.close()
    return path


def _sqlite_burst(path: Path, per_thread: int, op: Callable[[sqlite3.Connection, int, int], None]) -> float:
    """``op(conn, thread, k)`` ``per_thread`` times from each of 8 threads (own connections): ops/s."""
    errors: list[BaseException] = []

    def run(i: int, start: threading.Barrier) -> None:
        conn = _sqlite_open(path)  # connections are per thread, opened before the clock starts
        try:
            start.wait()
            for k in range(per_thread):
                op(conn, i, k)
        except BaseException as exc:  # re-raised in the measuring thread
            errors.append(exc)
        finally:
            conn.close()

    elapsed = timed_threads(THREADS, run)
    if errors:
        raise errors[0]
    return THREADS * per_thread / elapsed


def _bump(conn: sqlite3.Connection, i: int, k: int) -> None:
    """conflicting_8's call: read one of the 2 hot rows, write it back plus one."""
    key = HOT_KEYS[(i + k) % 2]
    conn.execute("BEGIN IMMEDIATE")
    try:
        (value,) = conn.execute("SELECT value FROM rows WHERE key = ?", (key,)).fetchone()
        conn.execute("UPDATE rows SET value = ? WHERE key = ?", (value + 1, key))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _transfer(conn: sqlite3.Connection, i: int, k: int) -> None:
    """A two-row transfer: read both balances, write both."""
    src, dst = ACCOUNTS if (i + k) % 2 else ACCOUNTS[::-1]
    conn.execute("BEGIN IMMEDIATE")
    try:
        (a,) = conn.execute("SELECT value FROM rows WHERE key = ?", (src,)).fetchone()
        (b,) = conn.execute("SELECT value FROM rows WHERE key = ?", (dst,)).fetchone()
        conn.execute("UPDATE rows SET value = ? WHERE key = ?", (a - 1, src))
        conn.execute("UPDATE rows SET value = ? WHERE key = ?", (b + 1, dst))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _sqlite_sum(path: Path) -> int:
    conn = _sqlite_open(path)
    try:
        return int(conn.execute("SELECT SUM(value) FROM rows").fetchone()[0])
    finally:
        conn.close()


def _sqlite(ctx: BenchContext, per_thread: int, reps: int) -> None:
    path = _sqlite_db(ctx, "bump", {k: 0 for k in HOT_KEYS})
    rates = [_sqlite_burst(path, per_thread, _bump) for _ in range(reps + 1)][1:]  # first burst: warm-up
    if (got := _sqlite_sum(path)) != THREADS * per_thread * (reps + 1):
        raise AssertionError(f"peer.sqlite_8: counted {got}, expected {THREADS * per_thread * (reps + 1)}")
    ctx.record("peer.sqlite_8", "mutations/s", rates, better="higher",
               note=f"in-process SQLite {sqlite3.sqlite_version}, WAL, synchronous=FULL, BEGIN IMMEDIATE; "
                    f"{THREADS} threads x {per_thread} read-modify-writes of 2 hot rows per repeat")

    path = _sqlite_db(ctx, "transfer", dict.fromkeys(ACCOUNTS, OPENING_BALANCE))
    rates = [_sqlite_burst(path, per_thread, _transfer) for _ in range(reps + 1)][1:]
    if (got := _sqlite_sum(path)) != 2 * OPENING_BALANCE:
        raise AssertionError(f"peer.sqlite_transfer_8: total balance {got}, expected {2 * OPENING_BALANCE}")
    ctx.record("peer.sqlite_transfer_8", "transfers/s", rates, better="higher",
               note=f"two-row transfers (read both, write both), {THREADS} threads x {per_thread} per repeat, "
                    "same SQLite settings")


# --- the same transfers through a daemon -----------------------------------------------
def _daemon_transfers(ctx: BenchContext, per_thread: int, reps: int) -> None:
    d = RunningDaemon(ctx.tmpdir("bh-peers-") / "data").start()
    ctx.defer(d.stop)
    d.deploy(APP)
    with d.client() as c:
        c.mutation("open_accounts", names=list(ACCOUNTS), balance=OPENING_BALANCE)
        c.mutation("transfer", src=ACCOUNTS[0], dst=ACCOUNTS[1], amount=1)  # warm the worker
    clients = [d.client() for _ in range(THREADS)]
    for c in clients:
        ctx.defer(c.close)
    failed = 0
    rates = []
    retries_before = d.status()["stats"]["conflict_retries"]
    for _ in range(reps):
        done = [0] * THREADS
        fails = [0] * THREADS
        def run(i: int, start: threading.Barrier, done: list[int] = done, fails: list[int] = fails) -> None:
            start.wait()
            for k in range(per_thread):
                src, dst = ACCOUNTS if (i + k) % 2 else ACCOUNTS[::-1]
                try:
                    clients[i].mutation("transfer", src=src, dst=dst, amount=1)
                    done[i] += 1
                except BulkheadError:  # ConflictError after every retry, or a timeout
                    fails[i] += 1

        elapsed = timed_threads(THREADS, run)
        rates.append(sum(done) / elapsed)
        failed += sum(fails)
    retries = d.status()["stats"]["conflict_retries"] - retries_before
    with d.client() as c:
        total = c.query("total")
    if total != 2 * OPENING_BALANCE:
        raise AssertionError(f"throughput.transfer_8: total balance {total}, expected {2 * OPENING_BALANCE}")
    ctx.record("throughput.transfer_8", "transfers/s", rates, better="higher", baseline="peer.sqlite_transfer_8",
               note=f"{THREADS} clients x {per_thread} two-row transfers per repeat through the daemon; "
                    f"{retries} conflict re-runs, {failed} calls failed; balance conserved")
    ctx.record("throughput.transfer_8.failed", "calls", [float(failed)],
               note="transfers of throughput.transfer_8 that failed (target 0), all repeats")
    d.stop()


# --- Ray -----------------------------------------------------------------------------------
def _ray(ctx: BenchContext, calls: int, reps: int) -> bool:
    """Measure ``peer.ray_actor_call`` in a child; False (and a visible skip) without Ray."""
    if os.environ.get(RAY_ENV) == "0":
        ctx.skip("peer.ray_actor_call", f"{RAY_ENV}=0: the Ray peer was not started")
        return False
    if importlib.util.find_spec("ray") is None:
        ctx.skip("peer.ray_actor_call", "Ray is not installed: pip install 'bulkhead[bench]' to measure it")
        return False
    tmp = ctx.tmpdir("bhray-")
    errlog = tmp / "stderr.log"
    with errlog.open("wb") as err:
        proc = ctx.spawn_python([str(RAY_PEER), str(calls), str(reps), str(tmp / "ray")],
                                stdout=subprocess.PIPE, stderr=err)
    try:
        out, _ = proc.communicate(timeout=RAY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stop_process(proc)
        raise RuntimeError(f"the Ray peer did not finish within {RAY_TIMEOUT_S:.0f} s") from None
    lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.startswith("{")]
    result = json.loads(lines[-1]) if lines else {"error": f"exit code {proc.returncode}, no result"}
    if "error" in result:
        tail = errlog.read_text(errors="replace")[-1500:]
        raise RuntimeError(f"the Ray peer failed: {result['error']}\n{tail}")
    ctx.record("peer.ray_actor_call", "us", result["samples_us"],
               note=f"Ray {result['ray']} local instance on 127.0.0.1 (2 CPUs, 80 MiB object store), "
                    f"ray.get(actor.bump.remote(key)); ray.init + actor start took {result['init_s']:.1f} s")
    return True


# --- derived comparisons -------------------------------------------------------------------
def _restate(ctx: BenchContext, name: str, source: str, baseline: str, target: str) -> None:
    """Record ``name`` as ``source``'s median with ``baseline``, or skip it visibly if ``source`` is missing."""
    rec = ctx.find(source)
    if rec is None:
        ctx.skip(name, f"{source} was not measured in this run (it comes from suite 'calls': "
                       "add --only calls)")
        return
    if ctx.find(baseline) is None:
        ctx.skip(name, f"{baseline} was not measured in this run")
        return
    ctx.record(name, rec.unit, [rec.median], better=rec.better, baseline=baseline,
               note=f"the median of {source} (suite {rec.suite}, this run) restated to show its ratio "
                    f"to {baseline}; target {target}")


def run(ctx: BenchContext) -> None:
    reps = ctx.repeats(5, 3)
    per_thread = ctx.pick(100, 20)  # the same as throughput.conflicting_8 in suite_calls
    _sqlite(ctx, per_thread, reps)
    _restate(ctx, "throughput.conflicting_8_vs_sqlite", "throughput.conflicting_8", "peer.sqlite_8", "≥ 1")
    _daemon_transfers(ctx, per_thread, reps)
    if _ray(ctx, ctx.pick(1000, 300), reps):
        _restate(ctx, "call.app_to_component_vs_ray", "call.app_to_component", "peer.ray_actor_call", "≤ 0.5")
    else:
        ctx.skip("call.app_to_component_vs_ray", "peer.ray_actor_call was not measured in this run")
