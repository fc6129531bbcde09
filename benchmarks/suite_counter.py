"""Hot keys through a real daemon: a sharded counter vs a single-document counter, and hot rate limits.

- ``counter.sharded_8`` (increments/s): 8 client threads incrementing **one**
  key of a ``sharded_counter`` (16 shards), each increment an app mutation
  calling the component.  Baseline ``counter.single_doc_8``: the same through a
  component that keeps one document per key.
- ``counter.<variant>.conflict_retries`` (re-runs per repeat): how many
  mutations the daemon re-ran after an OCC conflict (``conflict_retries`` of
  ``bulkhead daemon status``), and ``counter.<variant>.failed`` (calls per
  repeat): calls that still failed with ``ConflictError`` after every retry.
- ``ratelimit.exact_8`` / ``ratelimit.sharded_8`` / ``ratelimit.lazy_8``
  (calls/s): 8 threads taking one token each from one hot limit (never
  exhausted): unsharded, 8 shards with power-of-two choices, and the lazy mode
  (read + append, one fold in ~8 calls).  Baseline ``ratelimit.exact_8``; the
  notes give re-runs and failures.
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


def _variant(ctx: BenchContext, d: RunningDaemon, name: str, call: Callable[..., object], per_thread: int,
             reps: int, baseline: str | None, unit: str) -> tuple[int, int, list[int], list[int]]:
    rates, failures, retries = [], [], []
    for _ in range(reps):
        rate, failed, rr = _burst(d, call, per_thread)
        rates.append(rate)
        failures.append(failed)
        retries.append(rr)
    note = (f"{THREADS} threads x {per_thread} calls per repeat; {sum(retries)} conflict re-runs, "
            f"{sum(failures)} calls failed in all")
    ctx.record(name, unit, rates, better="higher", baseline=baseline, note=note)
    return sum(retries), sum(failures), retries, failures


def run(ctx: BenchContext) -> None:
    per_thread = ctx.pick(60, 20)
    reps = ctx.repeats(5, 3)
    d = RunningDaemon(ctx.tmpdir("bh-counter-") / "data").start()
    ctx.defer(d.stop)
    d.deploy(APP)
    with d.client() as c:  # warm both paths (worker imports, first documents)
        c.mutation("sharded_inc", key="warm")
        c.mutation("single_inc", key="warm")

    for variant, fn in (("single_doc_8", "single_inc"), ("sharded_8", "sharded_inc")):
        key = f"hot-{variant}"
        *_, retries, failures = _variant(
            ctx, d, f"counter.{variant}", lambda c, fn=fn, key=key: c.mutation(fn, key=key), per_thread, reps,
            None if variant == "single_doc_8" else "counter.single_doc_8", "increments/s")
        ctx.record(f"counter.{variant}.conflict_retries", "re-runs", retries,
                   note="mutations re-run after an OCC conflict, per repeat (daemon stats)")
        ctx.record(f"counter.{variant}.failed", "calls", failures,
                   note="calls that failed (ConflictError after every retry, or a timeout), per repeat")
        with d.client() as c:
            counted = c.query("counts", key=key)
        expected = THREADS * per_thread * reps - sum(failures)
        got = counted["sharded" if variant == "sharded_8" else "single"]
        if got != expected:
            raise AssertionError(f"{variant}: counted {got}, expected {expected}: an increment was lost")

    for variant in ("exact", "sharded", "lazy"):
        *_, retries, failures = _variant(
            ctx, d, f"ratelimit.{variant}_8", lambda c, v=variant: c.mutation("take", name=v, key="hot"),
            per_thread, reps, None if variant == "exact" else "ratelimit.exact_8", "calls/s")
        ctx.record(f"ratelimit.{variant}_8.conflict_retries", "re-runs", retries,
                   note="mutations re-run after an OCC conflict, per repeat (daemon stats)")
        ctx.record(f"ratelimit.{variant}_8.failed", "calls", failures,
                   note="calls that failed (ConflictError after every retry, or a timeout), per repeat")
    d.stop()
