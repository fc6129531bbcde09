"""The Ray peer, run as a script: ``python _ray_peer.py CALLS REPEATS TMPDIR``.

Started fresh with ``sys.executable`` by ``suite_peers`` so Ray's threads,
signal handlers and child processes never live in the bench process.  It
starts a local Ray instance on loopback (``127.0.0.1``, 2 CPUs, the smallest
object store Ray accepts, no dashboard, usage stats off) with its session files
under ``TMPDIR``, creates one actor holding a dict of counters, and times
``ray.get(actor.bump.remote(key))`` — the actor-call shape of
``call.app_to_component`` (call a method of another process's object that
reads and updates one entry) — ``CALLS`` times per repeat after a warm-up.

It prints one JSON line on stdout: ``{"samples_us": [...], "init_s": ...,
"ray": VERSION}``, or ``{"error": "..."}``.  SIGTERM (the parent ending it by
pid) raises ``SystemExit``, so ``ray.shutdown()`` still stops every process Ray
started.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any, NoReturn

OBJECT_STORE_BYTES = 80 * 1024 * 1024
"""Ray refuses object stores below 75 MiB; the calls move a few bytes."""


def _terminated(_signum: int, _frame: Any) -> NoReturn:
    raise SystemExit(143)


def main(argv: list[str]) -> int:
    """Measure and print the JSON line; exit code 0, or 1 with ``{"error"}``."""
    calls, repeats, tmp = int(argv[0]), int(argv[1]), argv[2]
    signal.signal(signal.SIGTERM, _terminated)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    t0 = time.perf_counter()
    import ray

    ray.init(num_cpus=2, object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False,
             _node_ip_address="127.0.0.1", log_to_driver=False, _temp_dir=tmp)
    try:
        @ray.remote
        class Accounts:
            def __init__(self) -> None:
                self.rows: dict[str, int] = {}

            def bump(self, key: str) -> int:
                self.rows[key] = self.rows.get(key, 0) + 1
                return self.rows[key]

        actor = Accounts.remote()  # type: ignore[attr-defined]
        ray.get(actor.bump.remote("warm"))
        init_s = time.perf_counter() - t0
        for _ in range(max(10, calls // 10)):
            ray.get(actor.bump.remote("k7"))
        clock = time.perf_counter_ns
        samples: list[float] = []
        for _ in range(repeats):
            for _ in range(calls):
                start = clock()
                ray.get(actor.bump.remote("k7"))
                samples.append((clock() - start) / 1000.0)
        expected = max(10, calls // 10) + calls * repeats
        got = ray.get(actor.bump.remote("k7")) - 1
        if got != expected:
            raise RuntimeError(f"actor counted {got} calls, expected {expected}")
        print(json.dumps({"samples_us": samples, "init_s": init_s, "ray": ray.__version__}), flush=True)
        return 0
    except Exception as exc:  # reported to the parent as the figure's failure
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
