"""Noisy neighbours through a real daemon: one mount's tail latency while a sibling mount misbehaves.

The app (``benchmarks/apps/neighbour``) mounts two components side by side,
``steady`` and ``noisy``; each runs in its own worker process.  The measured
call is ``steady:read`` (an indexed read of one document, called directly with
the admin key, a new argument each call so the query cache never answers and
the worker runs every call).  The load comes from a separate process
(``_noise.py``), so its client threads never share this interpreter.

- ``neighbour.quiet`` (µs): the p99 of each repeat of ``steady:read`` calls (one
  started every 4 ms, a steady rate rather than back to back) with nothing else
  running — one sample per repeat, so the median is "the typical
  p99".
- ``neighbour.noisy`` (µs): the same p99 while ``noisy:spin`` runs back to back —
  a pure-Python CPU loop calibrated (at the start of the suite) to last about
  0.4 s alone (under load it stretches towards the 1 s limit; a spin that
  passes it is killed with its worker, which the note counts), so the noisy
  worker keeps one of the machine's vCPUs busy.  Baseline ``neighbour.quiet``.
- ``neighbour.flood`` (µs): the same p99 while 8 threads call ``noisy:busy`` (one
  indexed read, never cached) back to back — a flood of cheap calls through the
  same coordinator.  Baseline ``neighbour.quiet``.
- ``neighbour.<phase>.calls`` (µs): every ``steady:read`` call of that phase
  pooled (median and per-call p99).

A failed ``steady:read`` fails the suite: a misbehaving neighbour must never
make another mount's calls fail.  The notes give how much noise there was
(spins or flood calls per second, errors the noisy mount saw, restarts).
"""

from __future__ import annotations

import itertools
import json
import select
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import BenchContext, percentile, stop_process
from runtime.client import Client
from runtime.testing import RunningDaemon

NAME = "neighbour"
DESCRIPTION = "one mount's query p99 while a sibling mount spins near its deadline or floods the coordinator"
ORDER = 70

APP = Path(__file__).parent / "apps" / "neighbour" / "app.py"
NOISE = Path(__file__).parent / "_noise.py"
KEYS = [f"k{i}" for i in range(16)]
SPIN_TARGET_S = 0.4
"""How long one noisy spin runs on an idle machine: under load it stretches towards the 1 s query limit."""
FLOOD_THREADS = 8
PERIOD_S = 0.004
"""One victim call starts every 4 ms (250 calls/s): a steady rate, well below what one client can do."""
READY_TIMEOUT_S = 60.0


def _restarts(d: RunningDaemon, mount: str) -> int:
    for m in d.status()["deployment"]["mounts"]:
        if m["path"] == mount:
            return int(m.get("restarts", 0))
    raise KeyError(mount)


def _calibrate(c: Client) -> tuple[int, float]:
    """Loops of ``noisy:spin`` that take about :data:`SPIN_TARGET_S`, and the seconds per loop measured."""
    probe = 2_000_000
    best = float("inf")
    for salt in range(3):
        t0 = time.perf_counter()
        c.call("noisy:spin", {"loops": probe, "salt": -1 - salt}, kind="query")
        best = min(best, time.perf_counter() - t0)
    per_loop = best / probe
    return int(SPIN_TARGET_S / per_loop), per_loop


def _victim(c: Client, n: int, reps: int, salts: itertools.count[int]) -> tuple[list[float], list[float]]:
    """(the p99 of each repeat, every call pooled) of ``n`` paced ``steady:read`` calls per repeat.

    One call starts every :data:`PERIOD_S` (a steady request rate, not back to
    back), so each phase lasts long enough to overlap several noisy spins and
    the victim itself never saturates the machine.
    """
    keys = itertools.cycle(KEYS)
    clock = time.perf_counter_ns
    for _ in range(5):  # warm-up
        c.call("steady:read", {"key": next(keys), "salt": next(salts)}, kind="query")
    p99s: list[float] = []
    pooled: list[float] = []
    for _ in range(reps):
        lat: list[float] = []
        next_at = time.perf_counter()
        for _ in range(n):
            t0 = clock()
            c.call("steady:read", {"key": next(keys), "salt": next(salts)}, kind="query")
            lat.append((clock() - t0) / 1000.0)
            next_at += PERIOD_S
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            else:
                next_at = time.perf_counter()
        p99s.append(percentile(sorted(lat), 99.0))
        pooled += lat
    return p99s, pooled


def _readline(proc: subprocess.Popen[bytes], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise RuntimeError(f"the noise process said nothing within {timeout:.0f} s")
    return proc.stdout.readline().decode(errors="replace").strip()


def _with_noise(ctx: BenchContext, d: RunningDaemon, args: list[str],
                measure: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """Run ``measure()`` while ``_noise.py args...`` loads the noisy mount; (its result, the noise's stats)."""
    proc = ctx.spawn_python([str(NOISE), args[0], str(d.data_dir), *args[1:]],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        line = _readline(proc, READY_TIMEOUT_S)
        if line != "ready":
            raise RuntimeError(f"the noise process did not start (said {line!r}, exit code {proc.poll()})")
        result = measure()
        assert proc.stdin is not None
        proc.stdin.close()
        stats = json.loads(_readline(proc, READY_TIMEOUT_S))
        proc.wait(timeout=READY_TIMEOUT_S)
        return result, stats
    finally:
        stop_process(proc)


def _median(values: list[float]) -> float:
    return percentile(sorted(values), 50.0)


def run(ctx: BenchContext) -> None:
    n = ctx.pick(1500, 200)
    reps = ctx.repeats(5, 3)
    d = RunningDaemon(ctx.tmpdir("bh-neighbour-") / "data").start()
    ctx.defer(d.stop)
    d.deploy(APP)
    salts = itertools.count(1)
    with d.client(admin=True) as c:
        c.call("steady:seed", {"keys": KEYS}, kind="mutation")
        loops, per_loop = _calibrate(c)

        quiet, quiet_calls = _victim(c, n, reps, salts)
        quiet_med = _median(quiet_calls)
        ctx.record("neighbour.quiet", "us", quiet,
                   note=f"p99 per repeat of {n} steady:read calls (indexed read, never cached, one every "
                        f"{PERIOD_S * 1000:.0f} ms), no load; "
                        f"per-call median {quiet_med:.0f} us")
        ctx.record("neighbour.quiet.calls", "us", quiet_calls, note="every neighbour.quiet call pooled")

        restarts0 = _restarts(d, "noisy")
        (noisy, noisy_calls), spin = _with_noise(ctx, d, ["spin", "1", str(loops)],
                                                 lambda: _victim(c, n, reps, salts))
        restarts = _restarts(d, "noisy") - restarts0
        spin_s = spin["mean_call_s"] or 0.0
        ctx.record("neighbour.noisy", "us", noisy, baseline="neighbour.quiet",
                   note=f"the same while noisy:spin runs back to back ({loops:,} loops, calibrated "
                        f"{loops * per_loop:.2f} s alone, {spin_s:.2f} s each under load; {spin['calls']} spins during the phase, "
                        f"errors {spin['errors'] or 'none'}, {restarts} noisy worker restarts); "
                        f"per-call median {_median(noisy_calls):.0f} us (quiet {quiet_med:.0f})")
        ctx.record("neighbour.noisy.calls", "us", noisy_calls, baseline="neighbour.quiet.calls",
                   note="every neighbour.noisy call pooled")

        restarts0 = _restarts(d, "noisy")
        (flood, flood_calls), fl = _with_noise(ctx, d, ["flood", str(FLOOD_THREADS)],
                                               lambda: _victim(c, n, reps, salts))
        restarts = _restarts(d, "noisy") - restarts0
        ctx.record("neighbour.flood", "us", flood, baseline="neighbour.quiet",
                   note=f"the same while {FLOOD_THREADS} threads of another process call noisy:busy back to back "
                        f"({fl['calls'] / fl['seconds']:.0f} calls/s, {fl['ok']} ok; errors {fl['errors'] or 'none'}, "
                        f"{restarts} noisy worker restarts); per-call median {_median(flood_calls):.0f} us "
                        f"(quiet {quiet_med:.0f})")
        ctx.record("neighbour.flood.calls", "us", flood_calls, baseline="neighbour.quiet.calls",
                   note="every neighbour.flood call pooled")
    d.stop()
