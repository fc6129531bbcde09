"""The noisy neighbour's load, run as a script: ``python _noise.py MODE DATA_DIR THREADS [LOOPS]``.

Started fresh with ``sys.executable`` by ``suite_neighbour``, so the load's
client threads never share the measuring process's interpreter (and GIL).  It
connects to the daemon whose data directory is ``DATA_DIR`` with the admin key
(read from ``DATA_DIR/daemon.json``, never from argv) and calls the ``noisy``
mount directly:

- ``spin``: ``THREADS`` threads call ``noisy:spin(loops=LOOPS)`` back to back —
  a CPU loop the suite calibrated to run for most of the 1 s limit;
- ``flood``: ``THREADS`` threads call ``noisy:busy`` (one index read, a new
  argument each call so the cache never answers) back to back.

It prints ``ready`` once every thread's first call returned, keeps going until
its stdin closes, then prints one JSON line ``{"calls", "ok", "errors",
"seconds", "mean_call_s"}`` about the calls started after ``ready`` (``errors``
counts each exception type over the whole run, e.g. ``LimitExceeded`` when a
call ran past its deadline and its worker was killed).
"""

from __future__ import annotations

import collections
import itertools
import json
import sys
import threading
import time

from runtime.client import Client
from runtime.errors import BulkheadError


def main(argv: list[str]) -> int:
    """Run the load until stdin closes; print the JSON line."""
    mode, data_dir, threads = argv[0], argv[1], int(argv[2])
    loops = int(argv[3]) if len(argv) > 3 else 0
    if mode not in ("spin", "flood"):
        raise SystemExit(f"unknown noise mode {mode!r} (spin or flood)")
    stop = threading.Event()
    salts = itertools.count(1)
    done: list[list[tuple[float, float, bool]]] = [[] for _ in range(threads)]
    errors: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    first = threading.Barrier(threads + 1)

    def one(c: Client) -> None:
        if mode == "spin":
            c.call("noisy:spin", {"loops": loops, "salt": next(salts)}, kind="query")
        else:
            c.call("noisy:busy", {"salt": next(salts)}, kind="query")

    def run(i: int) -> None:
        with Client.connect(data_dir, admin=True, timeout=30.0) as c:
            started = False
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    one(c)
                    ok = True
                except BulkheadError as exc:
                    ok = False
                    with lock:
                        errors[type(exc).__name__] += 1
                done[i].append((t0, time.perf_counter() - t0, ok))
                if not started:
                    started = True
                    first.wait()

    workers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    first.wait()
    t0 = time.perf_counter()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.read()  # until the parent closes our stdin
    stop.set()
    seconds = time.perf_counter() - t0
    for w in workers:
        w.join(timeout=30)
    during = [(d, ok) for per in done for start, d, ok in per if start >= t0]
    ok_durations = [d for d, ok in during if ok]
    mean_s = sum(ok_durations) / len(ok_durations) if ok_durations else None
    print(json.dumps({"calls": len(during), "ok": len(ok_durations), "errors": dict(errors),
                      "seconds": seconds, "mean_call_s": mean_s}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
