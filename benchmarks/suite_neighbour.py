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


def _phases(ctx: BenchContext, d: RunningDaemon, c: Client, n: int, reps: int, loops: int) -> dict[str, Any]:
    """Run the three phases interleaved, one repeat of each per round, so drift hits them alike."""
    salts = itertools.count(1)
    out: dict[str, Any] = {p: {"p99": [], "calls": [], "noise": [], "restarts": 0} for p in ("quiet", "noisy", "flood")}
    noise_args = {"noisy": ["spin", "1", str(loops)], "flood": ["flood", str(FLOOD_THREADS)]}
    for _ in range(reps):
        for phase in ("quiet", "noisy", "flood"):
            if phase == "quiet":
                (p99s, calls), stats = _victim(c, n, 1, salts), None
            else:
                restarts0 = _restarts(d, "noisy")
                (p99s, calls), stats = _with_noise(ctx, d, noise_args[phase], lambda: _victim(c, n, 1, salts))
                out[phase]["restarts"] += _restarts(d, "noisy") - restarts0
                out[phase]["noise"].append(stats)
            out[phase]["p99"] += p99s
            out[phase]["calls"] += calls
    return out


def _noise_summary(stats: list[dict[str, Any]]) -> tuple[int, int, float, dict[str, int], float]:
    """(calls, ok calls, seconds, errors by type, mean ok call seconds) over the rounds of one phase."""
    calls = sum(s["calls"] for s in stats)
    ok = sum(s["ok"] for s in stats)
    seconds = sum(s["seconds"] for s in stats)
    errors: dict[str, int] = {}
    for s in stats:
        for k, v in s["errors"].items():
            errors[k] = errors.get(k, 0) + v
    means = [s["mean_call_s"] * s["ok"] for s in stats if s["mean_call_s"]]
    return calls, ok, seconds, errors, (sum(means) / ok if ok else 0.0)


def run(ctx: BenchContext) -> None:
    n = ctx.pick(1500, 150)
    reps = ctx.repeats(5, 3)
    d = RunningDaemon(ctx.tmpdir("bh-neighbour-") / "data").start()
    ctx.defer(d.stop)
    d.deploy(APP)
    with d.client(admin=True) as c:
        c.call("steady:seed", {"keys": KEYS}, kind="mutation")
        loops, per_loop = _calibrate(c)
        res = _phases(ctx, d, c, n, reps, loops)

    quiet_med = _median(res["quiet"]["calls"])
    ctx.record("neighbour.quiet", "us", res["quiet"]["p99"],
               note=f"p99 per repeat of {n} steady:read calls (indexed read, never cached, one every "
                    f"{PERIOD_S * 1000:.0f} ms), no load; per-call median {quiet_med:.0f} us; "
                    f"repeats interleaved with the noisy and flood ones")
    ctx.record("neighbour.quiet.calls", "us", res["quiet"]["calls"], note="every neighbour.quiet call pooled")

    calls, ok, _, errors, spin_s = _noise_summary(res["noisy"]["noise"])
    ctx.record("neighbour.noisy", "us", res["noisy"]["p99"], baseline="neighbour.quiet",
               note=f"the same while noisy:spin runs back to back ({loops:,} loops, calibrated "
                    f"{loops * per_loop:.2f} s alone, {spin_s:.2f} s each under load; {calls} spins during the "
                    f"phases, errors {errors or 'none'}, {res['noisy']['restarts']} noisy worker restarts); "
                    f"per-call median {_median(res['noisy']['calls']):.0f} us (quiet {quiet_med:.0f})")
    ctx.record("neighbour.noisy.calls", "us", res["noisy"]["calls"], baseline="neighbour.quiet.calls",
               note="every neighbour.noisy call pooled")

    calls, ok, seconds, errors, _ = _noise_summary(res["flood"]["noise"])
    ctx.record("neighbour.flood", "us", res["flood"]["p99"], baseline="neighbour.quiet",
               note=f"the same while {FLOOD_THREADS} threads of another process call noisy:busy back to back "
                    f"({calls / seconds:.0f} calls/s, {ok} ok; errors {errors or 'none'}, "
                    f"{res['flood']['restarts']} noisy worker restarts); per-call median "
                    f"{_median(res['flood']['calls']):.0f} us (quiet {quiet_med:.0f})")
    ctx.record("neighbour.flood.calls", "us", res["flood"]["calls"], baseline="neighbour.quiet.calls",
               note="every neighbour.flood call pooled")
    d.stop()
