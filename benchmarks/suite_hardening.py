"""Suite ``hardening``: what each isolation layer costs.

Figures (each against a baseline measured in the same run, the two taken in alternating rounds after a
warm-up round, ``BenchContext.interleave``; the two daemons run side by side):

- ``hardening.call_noop_os_layer_off`` / ``hardening.call_noop`` (µs): a query that does nothing, through
  a daemon whose workers run with restricted globals only (``BULKHEAD_SANDBOX_HARDENING=0``), then with
  the full OS layer (rlimits, namespaces, Landlock, a uid of its own, NO_NEW_PRIVS, seccomp).
- ``hardening.call_one_doc_os_layer_off`` / ``hardening.call_one_doc`` (µs): the same for an indexed read
  of one document (one syscall to the coordinator: seccomp and the uid sit on that path).
- ``hardening.clock_shim`` / ``hardening.clock_real`` (ns per call): the language layer's per-use cost,
  ``time.time()`` through the determinism shim inside a query vs the real function in-process.
- ``hardening.setup.<layer>`` (µs): each OS-layer step alone, in a fresh root interpreter
  (``python -m benchmarks.suite_hardening --probe``), in the worker's order.
- ``hardening.worker_start_os_layer_off`` / ``hardening.worker_start`` (ms): spawn a worker, load a
  one-table component, manifest received.
- ``hardening.idle_rss_os_layer_off`` / ``hardening.idle_rss`` (MiB): resident memory of an idle worker.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
import timeit
from pathlib import Path

from benchmarks.harness import BenchContext
from benchmarks.suite_calls import cold_start_worker
from runtime.testing import RunningDaemon

NAME = "hardening"
DESCRIPTION = "cost of each isolation layer: per call, per layer at worker start, worker start time, idle memory"
ORDER = 35

APP = Path(__file__).parent / "apps" / "hardening"
CALLS_APP = Path(__file__).parent / "apps" / "calls"


def _daemon(ctx: BenchContext, hardening: int) -> RunningDaemon:
    d = RunningDaemon(ctx.tmpdir("bh-hard-") / "data", {"BULKHEAD_SANDBOX_HARDENING": str(hardening)}).start()
    ctx.defer(d.stop)
    d.deploy(APP)
    with d.client() as c:
        c.mutation("seed")
    return d


def _probe() -> None:
    """Run in a fresh interpreter: time each OS-layer step of sandbox.hardening, print JSON (µs)."""
    import pyseccomp  # noqa: F401 - loaded before Landlock, as the worker does

    from runtime.limits import Limits
    from sandbox import hardening as h

    out: dict[str, float] = {}
    uid = int(sys.argv[sys.argv.index("--probe") + 1])
    stage = sys.argv[sys.argv.index("--probe") + 2]
    os.chdir(stage)
    steps = [
        ("rlimits", lambda: h.set_rlimits(Limits())),
        ("namespaces", lambda: h.unshare_namespaces(False, mount_ns=os.geteuid() == 0)),
        ("mount_namespace_expose", lambda: h.expose_interpreter(stage) if os.geteuid() == 0 else "skipped"),
        ("landlock", lambda: h.landlock(str(CALLS_APP), False)),
        ("separate_uid", lambda: h.drop_uid(uid) if os.geteuid() == 0 else "skipped"),
        ("no_new_privs", h.no_new_privs),
        ("not_dumpable", h.not_dumpable),
        ("seccomp", lambda: h.seccomp(False)),
    ]
    for name, fn in steps:
        t0 = time.perf_counter()
        state = fn()
        out[name] = (time.perf_counter() - t0) * 1e6
        if not str(state).startswith(("on", "re-exposed", "nothing", "skipped")):
            out[name + "_failed"] = str(state)  # type: ignore[assignment]
    print(json.dumps(out))


def run(ctx: BenchContext) -> None:
    n = ctx.pick(1000, 80)
    reps = ctx.repeats(5, 3)

    nonce = itertools.count(1_000)  # a distinct argument per call: the daemon caches query results
    off, on = _daemon(ctx, 0), _daemon(ctx, 1)
    with off.client() as c0, on.client() as c1:
        got = ctx.interleave({
            "hardening.call_noop_os_layer_off": lambda: ctx.time_calls(lambda: c0.query("noop", nonce=next(nonce)), n),
            "hardening.call_noop": lambda: ctx.time_calls(lambda: c1.query("noop", nonce=next(nonce)), n),
            "hardening.call_one_doc_os_layer_off":
                lambda: ctx.time_calls(lambda: c0.query("get_one", key="k", nonce=next(nonce)), n),
            "hardening.call_one_doc":
                lambda: ctx.time_calls(lambda: c1.query("get_one", key="k", nonce=next(nonce)), n),
        }, reps)
        ctx.record("hardening.call_noop_os_layer_off", "us", got["hardening.call_noop_os_layer_off"],
                   note="restricted globals only; rounds alternating with the hardened daemon's")
        ctx.record("hardening.call_noop", "us", got["hardening.call_noop"], baseline="hardening.call_noop_os_layer_off")
        ctx.record("hardening.call_one_doc_os_layer_off", "us", got["hardening.call_one_doc_os_layer_off"])
        ctx.record("hardening.call_one_doc", "us", got["hardening.call_one_doc"],
                   baseline="hardening.call_one_doc_os_layer_off")

        def shim_round() -> list[float]:
            t0 = time.perf_counter()
            c1.query("noop", nonce=next(nonce))
            t1 = time.perf_counter()
            c1.query("clock_100k", nonce=next(nonce))
            t2 = time.perf_counter()
            return [((t2 - t1) - (t1 - t0)) * 1e9 / 100_000]

        got = ctx.interleave({"hardening.clock_real": lambda: [timeit.timeit(time.time, number=100_000) * 1e4],
                              "hardening.clock_shim": shim_round}, reps)
        ctx.record("hardening.clock_real", "ns", got["hardening.clock_real"], note="time.time() in-process, no sandbox")
        ctx.record("hardening.clock_shim", "ns", got["hardening.clock_shim"], baseline="hardening.clock_real",
                   note="time.time() via the determinism shim in a query (a noop call's time subtracted)")
    off.stop()
    on.stop()

    samples: dict[str, list[float]] = {}
    for i in range(reps):
        stage = ctx.tmpdir("bh-probe-")
        os.chmod(stage, 0o700)
        proc = subprocess.run([sys.executable, "-m", "benchmarks.suite_hardening", "--probe", str(1_699_000_000 + i),
                               str(stage)], capture_output=True, text=True, timeout=60,
                              cwd=str(Path(__file__).resolve().parents[1]))
        if proc.returncode != 0:
            ctx.skip("hardening.setup", f"the probe failed: {proc.stderr[-300:]}")
            break
        for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items():
            if isinstance(v, (int, float)):
                samples.setdefault(k, []).append(float(v))
    for k, v in samples.items():
        ctx.record(f"hardening.setup.{k}", "us", v, note="one OS-layer step in a fresh interpreter")

    run_dir = ctx.tmpdir("bh-hw-")
    rss: dict[int, list[float]] = {0: [], 1: []}

    def start(hardening: int) -> list[float]:
        ms, kib, _layers = asyncio.run(cold_start_worker(run_dir, hardening))
        rss[hardening].append(kib / 1024)
        return [ms]

    got = ctx.interleave({"off": lambda: start(0), "on": lambda: start(1)}, reps)
    starts = {0: got["off"], 1: got["on"]}
    rss = {k: v[1:] for k, v in rss.items()}  # without the warm-up round's
    ctx.record("hardening.worker_start_os_layer_off", "ms", starts[0])
    ctx.record("hardening.worker_start", "ms", starts[1], baseline="hardening.worker_start_os_layer_off",
               note="fresh interpreter, source read into memory, every OS layer, one-table component, manifest")
    ctx.record("hardening.idle_rss_os_layer_off", "MiB", rss[0])
    ctx.record("hardening.idle_rss", "MiB", rss[1], baseline="hardening.idle_rss_os_layer_off")


if __name__ == "__main__" and "--probe" in sys.argv:
    _probe()
