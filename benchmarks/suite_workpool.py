"""The workpool component through a real daemon: jobs per second at parallelism 10 and 100, enqueue to start.

The bench app (``benchmarks/apps/workpool``) mounts two pools, ``p10`` (``max_parallelism=10``) and
``p100`` (100).  One round of a throughput figure is one client mutation enqueueing ``N`` jobs with
the batch form (one transaction, one kick), then polling ``unfinished`` (``status_batch`` of the
round's jobs, every 10 ms) until every job finished: the sample is ``N`` / seconds from the enqueue
call to the poll that saw none left.  Figures, in alternating rounds after a warm-up round:

- ``workpool.jobs_per_s_10`` (jobs/s): no-op actions through ``p10``.  Baseline ``peer.dbos_queue``.
- ``workpool.jobs_per_s_100`` (jobs/s): the same through ``p100``.  Baseline ``workpool.jobs_per_s_10``.
- ``workpool.mutation_jobs_per_s_10`` (jobs/s): mutations inserting one document each, through ``p10``.
- ``peer.dbos_queue`` (jobs/s): DBOS Transact over SQLite doing the same (``N`` no-op workflows enqueued
  on a queue of worker concurrency 10, every result awaited), in a child process (``_dbos_peer.py``).
  Without DBOS (``pip install 'bulkhead[bench]'``, or ``$BULKHEAD_BENCH_DBOS_PYTHON`` naming an
  interpreter that has it) it is listed as skipped, and its target row says "baseline not installed";
  ``BULKHEAD_BENCH_DBOS=0`` skips it too.
- ``workpool.enqueue_to_start_p50`` (ms): one no-op action (``stamp``, which returns ``time.time()``
  when it starts) enqueued alone through ``p10``, from the client's clock before the enqueue call to
  the job's start; one job at a time, the median of the samples (``p99`` their tail).
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.harness import BenchContext, PeerProcess
from runtime.client import Client
from runtime.testing import RunningDaemon

NAME = "workpool"
DESCRIPTION = "workpool: no-op and one-write jobs per second at parallelism 10 and 100, enqueue to start; DBOS peer"
ORDER = 77

APP = Path(__file__).parent / "apps" / "workpool"
DBOS_PEER = Path(__file__).parent / "_dbos_peer.py"
DBOS_ENV, DBOS_PYTHON_ENV = "BULKHEAD_BENCH_DBOS", "BULKHEAD_BENCH_DBOS_PYTHON"
DBOS_TIMEOUT_S = 120.0
POLL_S = 0.01


class DbosPeer(PeerProcess):
    """DBOS Transact over SQLite in a fresh child (``_dbos_peer.py``), timed round by round (as ``RayPeer``)."""

    LABEL = "DBOS"
    TIMEOUT_S = DBOS_TIMEOUT_S

    def __init__(self, proc: subprocess.Popen[bytes], errlog: Path) -> None:
        super().__init__(proc, errlog)
        self.start_ms: list[float] = []

    @classmethod
    def start(cls, ctx: BenchContext) -> DbosPeer | None:
        """Spawn the peer, or record ``peer.dbos_queue`` as skipped (and return None) without DBOS."""
        if os.environ.get(DBOS_ENV) == "0":
            ctx.skip("peer.dbos_queue", f"{DBOS_ENV}=0: the DBOS peer was not started")
            return None
        python = os.environ.get(DBOS_PYTHON_ENV) or sys.executable
        if not os.environ.get(DBOS_PYTHON_ENV) and importlib.util.find_spec("dbos") is None:
            ctx.skip("peer.dbos_queue", "baseline not installed: DBOS Transact is missing "
                     f"(pip install 'bulkhead[bench]', or {DBOS_PYTHON_ENV}=an interpreter that has it)",
                     not_installed=True)
            return None
        tmp = ctx.tmpdir("bhdbos-")
        errlog = tmp / "stderr.log"
        with errlog.open("wb") as err:
            proc = subprocess.Popen([python, str(DBOS_PEER), str(tmp)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err, cwd=tmp, close_fds=True)
        peer = cls(proc, errlog)
        ctx.defer(peer.close)
        return peer

    def round(self, jobs: int) -> list[float]:
        """One sample: jobs per second of ``jobs`` no-op workflows through the queue."""
        got = self.ask(jobs)
        self.start_ms.extend(float(v) for v in got["start_ms"])
        return [float(got["jobs_per_s"])]


def _wait_finished(c: Client, parallelism: int, ids: list[str], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while c.query("unfinished", parallelism=parallelism, ids=ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(ids)} jobs of pool p{parallelism} not finished within {timeout:.0f} s")
        time.sleep(POLL_S)


def _round(c: Client, parallelism: int, kind: str, n: int, fresh: itertools.count[int]) -> Callable[[], list[float]]:
    def one() -> list[float]:
        t0 = time.perf_counter()
        ids = c.mutation("enqueue", parallelism=parallelism, kind=kind, start=next(fresh), count=n)
        _wait_finished(c, parallelism, ids)
        return [n / (time.perf_counter() - t0)]
    return one


def _start_latency(c: Client, samples: int) -> list[float]:
    out: list[float] = []
    for _ in range(samples):
        t0 = time.time()
        wid = c.mutation("enqueue_stamp", parallelism=10)
        while (st := c.query("status", parallelism=10, id=wid))["state"] != "finished":
            time.sleep(POLL_S)
        if st["result"]["kind"] != "success":
            raise RuntimeError(f"the stamp job failed: {st['result']}")
        out.append((float(st["result"]["return_value"]) - t0) * 1000.0)
    return out


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    return s[len(s) // 2] if s else float("nan")


def run(ctx: BenchContext) -> None:
    dbos = DbosPeer.start(ctx)  # DBOS takes seconds to launch: start the daemon meanwhile
    d = RunningDaemon(ctx.tmpdir("bh-workpool-") / "data").start()
    ctx.defer(d.stop)
    d.deploy(APP)
    n = ctx.pick(200, 20)
    reps = ctx.repeats(5, 3)
    fresh = itertools.count(0, n)
    with d.client(timeout=300.0) as c:
        rounds: dict[str, Callable[[], Sequence[float]]] = {
            "workpool.jobs_per_s_10": _round(c, 10, "action", n, fresh),
            "workpool.jobs_per_s_100": _round(c, 100, "action", n, fresh),
            "workpool.mutation_jobs_per_s_10": _round(c, 10, "mutation", n, fresh),
        }
        if dbos is not None:
            try:
                info = dbos.ready()
            except (OSError, RuntimeError, TimeoutError) as exc:  # a broken peer is a visible skip, not a failure
                ctx.skip("peer.dbos_queue", f"the DBOS peer did not start: {exc}")
                dbos.close()
                dbos = None
            else:
                peer = dbos
                rounds["peer.dbos_queue"] = lambda: peer.round(n)
        got = ctx.interleave(rounds, reps)
        if dbos is not None:
            dbos.close()
        latency = _start_latency(c, ctx.pick(50, 10))
    how = f"{n} jobs per round enqueued by one batch mutation, until the client's poll (every 10 ms) saw all finished"
    ctx.record("workpool.jobs_per_s_10", "jobs/s", got["workpool.jobs_per_s_10"], better="higher",
               baseline="peer.dbos_queue",
               note=f"no-op actions, max_parallelism 10; {how}")
    ctx.record("workpool.jobs_per_s_100", "jobs/s", got["workpool.jobs_per_s_100"], better="higher",
               baseline="workpool.jobs_per_s_10", note=f"no-op actions, max_parallelism 100; {how}")
    ctx.record("workpool.mutation_jobs_per_s_10", "jobs/s", got["workpool.mutation_jobs_per_s_10"], better="higher",
               baseline="workpool.jobs_per_s_10", note=f"mutations inserting one document, max_parallelism 10; {how}")
    if dbos is not None:
        ctx.record("peer.dbos_queue", "jobs/s", got["peer.dbos_queue"], better="higher",
                   note=f"DBOS {info['dbos']} over SQLite, a queue of worker concurrency 10 polled every 10 ms, "
                        f"{n} no-op workflows enqueued then awaited, rounds alternating with the workpool's; "
                        f"enqueue to start under that load p50 {_median(dbos.start_ms):.1f} ms; "
                        f"launch took {info['init_s']:.1f} s")
    ctx.record("workpool.enqueue_to_start_p50", "ms", latency,
               note="one no-op action at a time through p10: client clock before the enqueue mutation "
                    "to time.time() at the job's start")
