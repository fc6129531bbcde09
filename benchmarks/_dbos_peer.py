"""The DBOS peer, run as a script: ``python _dbos_peer.py TMPDIR``, then driven round by round on stdin.

Started fresh by ``benchmarks.suite_workpool.DbosPeer`` with an interpreter that has DBOS Transact (the
bench's own, or ``$BULKHEAD_BENCH_DBOS_PYTHON``), so DBOS's threads and its SQLite system database never
live in the bench process.  It launches DBOS over SQLite (a file in ``TMPDIR``) with one queue of
concurrency ``PARALLELISM`` (10, the workpool figure it is compared with) polled every
``POLL_S``, and prints one JSON line ``{"ready": true, "init_s": ..., "dbos": VERSION}`` (or ``{"error"}``).

Then each line ``N`` on stdin is one round: ``N`` no-op workflows enqueued on the queue at once, then
every result awaited, answered with ``{"jobs_per_s": N / seconds, "start_ms": [...]}`` (``start_ms``:
enqueue to the workflow's first line, per job).  End of stdin (or SIGTERM) ends it; ``DBOS.destroy()``
stops its threads.  Imports nothing of bulkhead: it runs in a venv of its own.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any, NoReturn

PARALLELISM = 10
POLL_S = 0.01
"""DBOS's queue poll, notification poll and result poll (1 s each by default, which would cap a round of
jobs at a second or more): tuned down for it, to the workpool client's own poll."""


def _terminated(_signum: int, _frame: Any) -> NoReturn:
    raise SystemExit(143)


def _say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _result(handle: Any) -> Any:
    """The workflow's result, polled every ``POLL_S`` (DBOS polls every second by default) where DBOS allows it."""
    try:
        return handle.get_result(polling_interval_sec=POLL_S)
    except TypeError:  # DBOS before the polling_interval_sec argument
        return handle.get_result()


def main(argv: list[str]) -> int:
    """Launch DBOS, then serve rounds until stdin closes; exit code 0, or 1 after an ``{"error"}`` line."""
    tmp = argv[0]
    signal.signal(signal.SIGTERM, _terminated)
    os.environ.setdefault("DBOS__DISABLE_TELEMETRY", "1")
    t0 = time.perf_counter()
    from importlib.metadata import version

    from dbos import DBOS  # type: ignore[import-not-found,unused-ignore]

    started: dict[int, float] = {}

    @DBOS.workflow()  # type: ignore[untyped-decorator,unused-ignore]
    def noop_job(i: int) -> int:
        started[i] = time.time()
        return i

    DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{tmp}/dbos.sqlite", "log_level": "WARNING",
          "notification_listener_polling_interval_sec": POLL_S})
    try:
        queue: Any
        if hasattr(DBOS, "register_queue"):  # DBOS 3: queues are registered (persisted) after launch
            DBOS.launch()
            queue = DBOS.register_queue("bench", worker_concurrency=PARALLELISM, polling_interval_sec=POLL_S)
        else:
            from dbos import Queue  # type: ignore[import-not-found,unused-ignore]

            queue = Queue("bench", worker_concurrency=PARALLELISM, polling_interval_sec=POLL_S)
            DBOS.launch()
        queue.enqueue(noop_job, -1).get_result()
        _say({"ready": True, "init_s": time.perf_counter() - t0, "dbos": version("dbos")})
        base = 0
        for line in sys.stdin:
            n = int(line)
            started.clear()
            t_start, wall = time.perf_counter(), time.time()
            enqueued: dict[int, float] = {}
            handles = []
            for i in range(base, base + n):
                enqueued[i] = time.time()
                handles.append(queue.enqueue(noop_job, i))
            got = [_result(h) for h in handles]
            elapsed = time.perf_counter() - t_start
            if got != list(range(base, base + n)):
                raise RuntimeError(f"results out of order or missing: {got[:5]}...")
            base += n
            _say({"jobs_per_s": n / elapsed, "start_ms": [(started[i] - enqueued[i]) * 1000 for i in enqueued],
                  "wall": wall})
        return 0
    except Exception as exc:  # reported to the parent as the figure's failure
        _say({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
