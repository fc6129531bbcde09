"""The action_cache component through a real daemon: a hit beside the raw ipc round trip, a miss, a client call.

The bench app (``benchmarks/apps/action_cache``) caches a trivial action (``n * n``), so what is timed
is the cache's own cost.  Figures, in alternating rounds after a warm-up round:

- ``action_cache.hit`` (µs): one ``fetch`` of a cached key, timed inside an action (one ``run_query``
  of the component's ``get``: action worker → coordinator → the component's worker, whose reads its
  read cache answers).  Baseline ``limit.zmq_rtt_1hop`` (suite ``limits``, when it runs in the same
  run; the ratio is then the hit's cost in raw ipc round trips).
- ``action_cache.miss`` (µs): one ``fetch`` of a new key inside an action (``get``, ``claim``, the
  action, ``put``: a query, two durable commits and a nested action).  Baseline
  ``action_cache.run_action``: calling the same action directly.
- ``action_cache.miss_no_single_flight`` (µs): the same with ``single_flight=False`` (``get``, the
  action, ``put``: one commit fewer).  Baseline ``action_cache.miss``.
- ``action_cache.run_action`` (µs): ``ctx.run_action`` of the trivial action, no cache.
- ``action_cache.client_fetch_hit`` (µs): a client calling an app action that does one hit.  Baseline
  ``action_cache.client_noop``: a client calling an app action that does nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.harness import BenchContext
from runtime.testing import RunningDaemon

NAME = "action_cache"
DESCRIPTION = "action cache: a hit beside the raw ipc round trip, a miss, a client call of an action that hits"
ORDER = 75

APP = Path(__file__).parent / "apps" / "action_cache"


def run(ctx: BenchContext) -> None:
    d = RunningDaemon(ctx.tmpdir("bh-action-cache-") / "data").start()
    ctx.defer(d.stop)
    d.deploy(APP)
    n = ctx.pick(200, 20)
    reps = ctx.repeats(5, 3)
    fresh = itertools.count(1_000_000, n)  # a new range of keys per miss round
    with d.client(timeout=300.0) as c:
        c.action("fetch", n=7)  # the key every hit reads

        def inside(fn: str, **args: object) -> Callable[[], Sequence[float]]:
            return lambda: [float(x) for x in c.action(fn, **args)]

        rounds: dict[str, Callable[[], Sequence[float]]] = {
            "action_cache.hit": inside("loop", start=7, count=n, same=True),
            "action_cache.miss": lambda: [float(x) for x in c.action("loop", start=next(fresh), count=n, same=False)],
            "action_cache.miss_no_single_flight": lambda: [
                float(x) for x in c.action("loop", start=next(fresh), count=n, same=False, which="plain")],
            "action_cache.run_action": lambda: [float(x) for x in c.action("run_direct", start=0, count=n)],
            "action_cache.client_fetch_hit": lambda: ctx.time_calls(lambda: c.action("fetch", n=7), n),
            "action_cache.client_noop": lambda: ctx.time_calls(lambda: c.action("noop"), n),
        }
        got = ctx.interleave(rounds, reps)
    ctx.record("action_cache.hit", "us", got["action_cache.hit"], baseline="limit.zmq_rtt_1hop",
               note="one fetch of a cached key, timed inside an action")
    ctx.record("action_cache.miss", "us", got["action_cache.miss"], baseline="action_cache.run_action",
               note="get + claim + the action + put, timed inside an action")
    ctx.record("action_cache.miss_no_single_flight", "us", got["action_cache.miss_no_single_flight"],
               baseline="action_cache.miss", note="get + the action + put (single_flight=False)")
    ctx.record("action_cache.run_action", "us", got["action_cache.run_action"],
               note="ctx.run_action of the same trivial action, no cache")
    ctx.record("action_cache.client_fetch_hit", "us", got["action_cache.client_fetch_hit"],
               baseline="action_cache.client_noop", note="a client calling an action that does one hit")
    ctx.record("action_cache.client_noop", "us", got["action_cache.client_noop"],
               note="a client calling an action that does nothing")
