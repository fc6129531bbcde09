"""Peers in the same run: what a Python user would otherwise pick, beside Bulkhead's figures.

This suite measures the two-row transfers; the other peers live here too but
are measured by suite ``calls``, alternately with the figures they are the
baseline of (``BenchContext.interleave``):

- ``peer.sqlite_transfer_8`` (transfers/s): two-row transfers on plain
  in-process SQLite (read both rows, write both; ``BEGIN IMMEDIATE``) from 8
  threads with their own connections, WAL, ``synchronous=FULL`` (every commit
  durable), a file in a temp dir.
- ``throughput.transfer_8`` (transfers/s): the same two-row transfers through a
  real daemon (``benchmarks/apps/peers``): 8 client threads, each transfer an
  app mutation reading both accounts through an index and patching both.
  Baseline ``peer.sqlite_transfer_8``, the two taken in alternating rounds.
  ``throughput.transfer_8.failed`` (calls per round) counts the transfers that
  failed (target 0); the total balance is checked afterwards (no money lost).

Used by suite ``calls``: :func:`sqlite_db`, :func:`sqlite_burst` and
:func:`bump` (``peer.sqlite_8``: ``throughput.conflicting_8``'s read-modify-write
of one of 2 hot rows on SQLite) and :class:`RayPeer` (``peer.ray_actor_call``:
``ray.get(actor.bump.remote(key))`` in a fresh child running a local Ray on
loopback, ``_ray_peer.py``; needs the optional ``bench`` extra, ``pip install
'bulkhead[bench]'``, and is skipped as "not installed" otherwise, or when
``BULKHEAD_BENCH_RAY=0``).
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness import BenchContext, PeerProcess, timed_threads
from runtime.errors import BulkheadError
from runtime.testing import RunningDaemon

NAME = "peers"
DESCRIPTION = "two-row transfers from 8 clients through a daemon, alternating with SQLite doing the same"
ORDER = 35

APP = Path(__file__).parent / "apps" / "peers" / "app.py"
RAY_PEER = Path(__file__).parent / "_ray_peer.py"
THREADS = 8
HOT_KEYS = ("k0", "k1")
ACCOUNTS = ("alice", "bob")
OPENING_BALANCE = 1_000_000
RAY_TIMEOUT_S = 240.0
WARMUP_ROUNDS = 1
RAY_ENV = "BULKHEAD_BENCH_RAY"
"""Set to ``0`` to skip the Ray peer even when Ray is installed (it takes ~10 s to start)."""


# --- SQLite ------------------------------------------------------------------------
def sqlite_open(path: Path) -> sqlite3.Connection:
    """A connection as a careful user would set it up: WAL, durable commits, manual transactions."""
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=True)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def sqlite_db(ctx: BenchContext, tag: str, rows: dict[str, int]) -> Path:
    """A fresh SQLite file in a temp dir holding table ``rows(key, value)`` with ``rows``."""
    path = ctx.tmpdir(f"bh-peers-sqlite-{tag}-") / "peer.db"
    conn = sqlite_open(path)
    try:
        conn.execute("CREATE TABLE rows (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        conn.executemany("INSERT INTO rows VALUES (?, ?)", list(rows.items()))
    finally:
        conn.close()
    return path


def sqlite_burst(path: Path, per_thread: int, op: Callable[[sqlite3.Connection, int, int], None]) -> float:
    """``op(conn, thread, k)`` ``per_thread`` times from each of 8 threads (own connections): ops/s."""
    errors: list[BaseException] = []

    def run(i: int, start: threading.Barrier) -> None:
        conn = sqlite_open(path)  # connections are per thread, opened before the clock starts
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


def bump(conn: sqlite3.Connection, i: int, k: int) -> None:
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


def transfer(conn: sqlite3.Connection, i: int, k: int) -> None:
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


def sqlite_sum(path: Path) -> int:
    conn = sqlite_open(path)
    try:
        return int(conn.execute("SELECT SUM(value) FROM rows").fetchone()[0])
    finally:
        conn.close()


# --- the same transfers through a daemon, alternating with SQLite's -------------------------
def _transfers(ctx: BenchContext, per_thread: int, reps: int) -> None:
    path = sqlite_db(ctx, "transfer", dict.fromkeys(ACCOUNTS, OPENING_BALANCE))
    d = RunningDaemon(ctx.tmpdir("bh-peers-") / "data").start()
    ctx.defer(d.stop)
    d.deploy(APP)
    with d.client() as c:
        c.mutation("open_accounts", names=list(ACCOUNTS), balance=OPENING_BALANCE)
        c.mutation("transfer", src=ACCOUNTS[0], dst=ACCOUNTS[1], amount=1)  # warm the worker
    clients = [d.client() for _ in range(THREADS)]
    for c in clients:
        ctx.defer(c.close)
    failed: list[float] = []

    def daemon_round() -> list[float]:
        done, fails = [0] * THREADS, [0] * THREADS

        def run(i: int, start: threading.Barrier) -> None:
            start.wait()
            for k in range(per_thread):
                src, dst = ACCOUNTS if (i + k) % 2 else ACCOUNTS[::-1]
                try:
                    clients[i].mutation("transfer", src=src, dst=dst, amount=1)
                    done[i] += 1
                except BulkheadError:  # ConflictError after every retry, or a timeout
                    fails[i] += 1

        elapsed = timed_threads(THREADS, run)
        failed.append(float(sum(fails)))
        return [sum(done) / elapsed]

    retries_before = d.status()["stats"]["conflict_retries"]
    got = ctx.interleave({"peer.sqlite_transfer_8": lambda: [sqlite_burst(path, per_thread, transfer)],
                          "throughput.transfer_8": daemon_round}, reps, warmup=WARMUP_ROUNDS)
    retries = d.status()["stats"]["conflict_retries"] - retries_before
    failed = failed[WARMUP_ROUNDS:]
    if (total := sqlite_sum(path)) != 2 * OPENING_BALANCE:
        raise AssertionError(f"peer.sqlite_transfer_8: total balance {total}, expected {2 * OPENING_BALANCE}")
    with d.client() as c:
        total = c.query("total")
    if total != 2 * OPENING_BALANCE:
        raise AssertionError(f"throughput.transfer_8: total balance {total}, expected {2 * OPENING_BALANCE}")
    ctx.record("peer.sqlite_transfer_8", "transfers/s", got["peer.sqlite_transfer_8"], better="higher",
               note=f"in-process SQLite {sqlite3.sqlite_version}, WAL, synchronous=FULL, BEGIN IMMEDIATE; "
                    f"two-row transfers (read both, write both), {THREADS} threads x {per_thread} per round")
    ctx.record("throughput.transfer_8", "transfers/s", got["throughput.transfer_8"], better="higher",
               baseline="peer.sqlite_transfer_8",
               note=f"{THREADS} clients x {per_thread} two-row transfers per round through the daemon, alternating "
                    f"with SQLite's rounds; {retries} conflict re-runs, {sum(failed):.0f} calls failed; "
                    "balance conserved")
    ctx.record("throughput.transfer_8.failed", "calls", failed,
               note="transfers of throughput.transfer_8 that failed (target 0), per round")
    d.stop()


# --- Ray -----------------------------------------------------------------------------------
class RayPeer(PeerProcess):
    """A local Ray and one actor in a fresh child (``_ray_peer.py``), timed round by round.

    :meth:`start` returns at once (Ray takes seconds to start: do other set-up
    meanwhile); :meth:`ready` waits for it; :meth:`round` is one round of calls
    (µs each) for :meth:`BenchContext.interleave`; :meth:`close` ends it.
    """

    LABEL = "Ray"
    TIMEOUT_S = RAY_TIMEOUT_S

    @classmethod
    def start(cls, ctx: BenchContext) -> RayPeer | None:
        """Spawn the peer, or record ``peer.ray_actor_call`` as skipped (and return None) without Ray."""
        if os.environ.get(RAY_ENV) == "0":
            ctx.skip("peer.ray_actor_call", f"{RAY_ENV}=0: the Ray peer was not started")
            return None
        if importlib.util.find_spec("ray") is None:
            ctx.skip("peer.ray_actor_call", "baseline not installed: Ray is missing "
                     "(pip install 'bulkhead[bench]' to measure it)", not_installed=True)
            return None
        tmp = ctx.tmpdir("bhray-")
        errlog = tmp / "stderr.log"
        with errlog.open("wb") as err:
            proc = ctx.spawn_python([str(RAY_PEER), str(tmp / "ray")], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err)
        peer = cls(proc, errlog)
        ctx.defer(peer.close)
        return peer

    def round(self, calls: int) -> list[float]:
        """µs of each of ``calls`` actor calls."""
        return [float(v) for v in self.ask(calls)["samples_us"]]


def run(ctx: BenchContext) -> None:
    """Record the two-row transfer figures (SQLite and the daemon in alternating rounds)."""
    _transfers(ctx, ctx.pick(100, 10), ctx.repeats(6, 4))
