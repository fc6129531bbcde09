"""Hot keys through a real daemon: a sharded counter vs a single-document counter, and hot rate limits.

- ``counter.sharded_8`` (increments/s): 8 client threads incrementing **one**
  key of a ``sharded_counter`` (16 shards), each increment an app mutation
  calling the component.  Baseline ``counter.single_doc_8``: the same through a
  component that keeps one document per key.
  The two are measured in alternating rounds after a warm-up round.
- ``counter.<variant>.conflict_retries`` (re-runs per round): how many
  mutations the daemon re-ran after an OCC conflict (``conflict_retries`` of
  ``bulkhead daemon status``), and ``counter.<variant>.failed`` (calls per
  round, target 0): calls that still failed with ``ConflictError`` after every
  retry (or timed out).
- ``ratelimit.exact_8`` / ``ratelimit.sharded_8`` / ``ratelimit.lazy_8``
  (calls/s): 8 threads taking one token each from one hot limit (never
  exhausted): unsharded, 8 shards with power-of-two choices, and the lazy mode
  (read + append, one fold in ~8 calls).  Baseline ``ratelimit.exact_8``; the three
  alternate round by round; ``.conflict_retries`` and ``.failed`` as above.
"""

import threading
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness import BenchContext, timed_threads
from runtime.errors import BulkheadError
from runtime.testing import RunningDaemon

NAME = "counter"
DESCRIPTION = "one hot key from 8 clients: sharded vs single-document counter; exact, sharded and lazy rate limits"
ORDER = 60

APP = Path(__file__).parent / "apps" / "counter" / "app.py"
THREADS = 8
WARMUP = 1
"""Discarded rounds of each variant before the measured ones."""


def _burst(d: RunningDaemon, call: Callable[..., object], per_thread: int) -> tuple[float, int, int]:
    """Run ``call(client)`` ``per_thread`` times from each of 8 threads: (ok calls/s, failed, conflict re-runs)."""
    done = [0] * THREADS
    failed = [0] * THREADS
    clients = [d.client() for _ in range(THREADS)]

    def run(i: int, start: threading.Barrier) -> None:
        start.wait()
        for _ in range(per_thread):
            try:
                call(clients[i])
                done[i] += 1
            except BulkheadError:  # ConflictError after every retry, or a timeout
                failed[i] += 1

    retries_before = d.status()["stats"]["conflict_retries"]
    elapsed = timed_threads(THREADS, run)
    for c in clients:
        c.close()
    retries = d.status()["stats"]["conflict_retries"] - retries_before
    return sum(done) / elapsed, sum(failed), retries


def _pair(ctx: BenchContext, d: RunningDaemon, variants: dict[str, Callable[..., object]], baseline: str,
          per_thread: int, reps: int, unit: str) -> dict[str, list[int]]:
    """Each variant's bursts in alternating rounds after a warm-up; record it, its ``.conflict_retries`` and
    ``.failed``; return every round's failed calls per variant (warm-up included, first)."""
    failures: dict[str, list[int]] = {name: [] for name in variants}
    retries: dict[str, list[int]] = {name: [] for name in variants}

    def round_of(name: str) -> Callable[[], list[float]]:
        def one() -> list[float]:
            rate, failed, rr = _burst(d, variants[name], per_thread)
            failures[name].append(failed)
            retries[name].append(rr)
            return [rate]
        return one

    got = ctx.interleave({name: round_of(name) for name in variants}, reps, warmup=WARMUP)
    for name in variants:
        fails, rr = failures[name][WARMUP:], retries[name][WARMUP:]
        ctx.record(name, unit, got[name], better="higher", baseline=None if name == baseline else baseline,
                   note=f"{THREADS} threads x {per_thread} calls per round, rounds alternating with "
                        f"{', '.join(n for n in variants if n != name)}; {sum(rr)} conflict re-runs, "
                        f"{sum(fails)} calls failed in all")
        ctx.record(f"{name}.conflict_retries", "re-runs", rr,
                   note="mutations re-run after an OCC conflict, per round (daemon stats)")
        ctx.record(f"{name}.failed", "calls", fails,
                   note="calls that failed (ConflictError after every retry, or a timeout), per round (target 0)")
    return failures


def run(ctx: BenchContext) -> None:
    per_thread = ctx.pick(60, 10)
    reps = ctx.repeats(5, 3)
    d = RunningDaemon(ctx.tmpdir("bh-counter-") / "data").start()
    ctx.defer(d.stop)
    d.deploy(APP)
    with d.client() as c:  # warm both paths (worker imports, first documents)
        c.mutation("sharded_inc", key="warm")
        c.mutation("single_inc", key="warm")

    counters = {"counter.single_doc_8": ("single_inc", "hot-single_doc_8", "single"),
                "counter.sharded_8": ("sharded_inc", "hot-sharded_8", "sharded")}
    failures = _pair(ctx, d, {name: lambda c, fn=fn, key=key: c.mutation(fn, key=key)
                              for name, (fn, key, _) in counters.items()},
                     "counter.single_doc_8", per_thread, reps, "increments/s")
    for name, (_, key, field) in counters.items():
        with d.client() as c:
            got = c.query("counts", key=key)[field]
        expected = THREADS * per_thread * (reps + WARMUP) - sum(failures[name])
        if got != expected:
            raise AssertionError(f"{name}: counted {got}, expected {expected}: an increment was lost")

    _pair(ctx, d, {f"ratelimit.{v}_8": lambda c, v=v: c.mutation("take", name=v, key="hot")
                   for v in ("exact", "sharded", "lazy")}, "ratelimit.exact_8", per_thread, reps, "calls/s")
    d.stop()
