"""The durable and realtime halves through a real daemon: scheduler and subscriptions.

(``query.cached`` is measured by suite ``calls``, in the same rounds as its
baseline and as ``query.one_doc``, the uncached read.)

- ``scheduler.jobs`` (jobs/s): one mutation schedules 1,000 (quick: 300) jobs
  that each insert a document; time from that commit until the last job
  succeeded.
- ``subscription.fanout_1000`` (µs): 10 clients hold 100 subscriptions each,
  every one on its own row; a write to one row; time from the write being sent
  until its subscriber holds the new value.  Baseline ``mutation.one_doc``
  (suite ``calls``, same run) — the write alone.  The note gives the re-runs
  per write (exactly 1 expected: only the touched subscription re-runs).
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.harness import BenchContext
from runtime.testing import RunningDaemon

NAME = "realtime"
DESCRIPTION = "scheduled jobs/s, subscription push latency with 1,000 subscriptions"
ORDER = 40

APP = Path(__file__).parent / "apps" / "realtime" / "app.py"


def _daemon(ctx: BenchContext, keys: list[str]) -> RunningDaemon:
    d = RunningDaemon(ctx.tmpdir("bh-rt-") / "data").start()
    ctx.defer(d.stop)
    d.deploy(APP)
    with d.client() as c:
        for i in range(0, len(keys), 500):
            c.mutation("seed", keys=keys[i:i + 500])
    return d


def run(ctx: BenchContext) -> None:
    reps = ctx.repeats(5, 3)
    keys = [f"k{i}" for i in range(1000)]
    d = _daemon(ctx, keys)

    jobs = ctx.pick(1000, 300)
    rates = []
    with d.client() as c:
        for _ in range(reps):
            before = d.status()["scheduler"]["jobs_succeeded"]
            t0 = time.perf_counter()
            c.mutation("schedule", n=jobs)
            while d.status()["scheduler"]["jobs_succeeded"] < before + jobs:
                time.sleep(0.01)
            rates.append(jobs / (time.perf_counter() - t0))
    ctx.record("scheduler.jobs", "jobs/s", rates, better="higher",
               note=f"{jobs} jobs scheduled by one mutation, each a mutation inserting one document")

    clients = [d.client() for _ in range(10)]
    for c in clients:
        ctx.defer(c.close)
    subs = []
    for i, key in enumerate(keys):
        sub = clients[i % 10].subscribe("get", key=key)
        subs.append(sub)
    for sub in subs:
        sub.next(timeout=60)
    latencies = []
    reruns0 = d.status()["subscriptions"]["reruns"]
    writes = ctx.pick(200, 40)
    with d.client() as writer:
        for w in range(writes):
            i = (w * 37) % len(keys)
            t0 = time.perf_counter_ns()
            writer.mutation("put", key=keys[i], value=w + 1)
            while True:
                try:
                    value = subs[i].next(timeout=10)
                except TimeoutError:
                    raise RuntimeError(f"no push for {keys[i]} within 10 s") from None
                if value == w + 1:
                    break
            latencies.append((time.perf_counter_ns() - t0) / 1000)
    reruns = d.status()["subscriptions"]["reruns"] - reruns0
    ctx.record("subscription.fanout_1000", "us", latencies, baseline="mutation.one_doc",
               note=f"1,000 subscriptions over 10 clients; {reruns / writes:.2f} re-runs per write (1 expected)")
