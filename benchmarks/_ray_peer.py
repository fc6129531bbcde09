"""The Ray peer, run as a script: ``python _ray_peer.py TMPDIR``, then driven round by round on stdin.

Started fresh with ``sys.executable`` by ``benchmarks.suite_peers.RayPeer`` so
Ray's threads, signal handlers and child processes never live in the bench
process.  It starts a local Ray instance on loopback (``127.0.0.1``, 2 CPUs,
the smallest object store Ray accepts, no dashboard, usage stats off) with its
session files under ``TMPDIR``, creates one actor holding a dict of counters,
and prints one JSON line: ``{"ready": true, "init_s": ..., "ray": VERSION}``
(or ``{"error": "..."}``).

Then each line ``N`` on stdin is one round: ``N`` timed calls of
``ray.get(actor.bump.remote(key))`` — the actor-call shape of
``call.app_to_component`` (call a method of another process's object that
reads and updates one entry) — answered with ``{"samples_us": [...]}``.  So
the parent can take Ray's rounds alternately with the runtime's.  End of
stdin (or SIGTERM, which raises ``SystemExit``) ends it; ``ray.shutdown()``
still stops every process Ray started.
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


def _say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    """Start Ray, then serve rounds until stdin closes; exit code 0, or 1 after an ``{"error"}`` line."""
    tmp = argv[0]
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
        _say({"ready": True, "init_s": time.perf_counter() - t0, "ray": ray.__version__})
        clock = time.perf_counter_ns
        calls = 0
        for line in sys.stdin:
            n = int(line)
            samples: list[float] = []
            for _ in range(n):
                start = clock()
                ray.get(actor.bump.remote("k7"))
                samples.append((clock() - start) / 1000.0)
            calls += n
            _say({"samples_us": samples})
        got = ray.get(actor.bump.remote("k7")) - 1
        if got != calls:
            raise RuntimeError(f"actor counted {got} calls, expected {calls}")
        return 0
    except Exception as exc:  # reported to the parent as the figure's failure
        _say({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
