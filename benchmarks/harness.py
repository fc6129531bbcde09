"""What a suite measures with: :class:`BenchContext`, statistics, raw baselines.

A suite's ``run(ctx)`` takes samples with the ``ctx`` helpers (or its own code)
and hands them to :meth:`BenchContext.record`, which keeps a summary:

- ``median`` of the samples;
- ``p99``: the tail on the *bad* side — the 99th percentile when lower is
  better (latencies), the 1st percentile when higher is better (throughputs),
  so ``p99`` is always "as bad as it gets, bar 1 %";
- ``spread``: the inter-quartile range (``q1``..``q3``) plus ``min`` and ``max``.

Latencies are in ``"us"`` (microseconds), throughputs in ``"ops/s"`` or a more
telling rate (``"commits/s"``, ``"puts/s"``, ``"rows/s"``).

:func:`raw_lmdb_grouped` is the raw-LMDB write baseline, shared by the limits
suite and the storage suite so both write exactly the same bytes.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Better = Literal["lower", "higher"]

MIN_REPEATS_FULL = 5
MIN_REPEATS_QUICK = 3
TMPDIR_ENV = "BULKHEAD_BENCH_TMPDIR"
"""Environment variable naming the directory temp dirs go under (default: the system's)."""


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already-sorted values, linearly interpolated."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


@dataclass(frozen=True)
class Record:
    """One figure: its samples' summary and how to read it."""

    name: str
    unit: str
    median: float
    p99: float
    better: Better
    baseline: str | None
    note: str | None
    suite: str
    samples: int
    q1: float
    q3: float
    min: float
    max: float
    ratio: float | None = None

    @classmethod
    def from_samples(
        cls,
        name: str,
        unit: str,
        samples: Sequence[float],
        better: Better,
        baseline: str | None,
        note: str | None,
        suite: str,
    ) -> Record:
        """Summarise ``samples`` (see the module docstring for what p99 means)."""
        values = sorted(float(s) for s in samples)
        if not values:
            raise ValueError(f"{name}: no samples")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{name}: non-finite sample")
        tail = 99.0 if better == "lower" else 1.0
        return cls(
            name=name, unit=unit, median=percentile(values, 50.0), p99=percentile(values, tail),
            better=better, baseline=baseline, note=note, suite=suite, samples=len(values),
            q1=percentile(values, 25.0), q3=percentile(values, 75.0), min=values[0], max=values[-1],
        )

    def to_json(self) -> dict[str, Any]:
        """The DESIGN.md result object, plus ``suite``, ``samples``, ``spread``, ``note``."""
        return {
            "name": self.name, "unit": self.unit, "median": self.median, "p99": self.p99,
            "better": self.better, "baseline": self.baseline, "ratio": self.ratio,
            "suite": self.suite, "samples": self.samples, "note": self.note,
            "spread": {"kind": "iqr", "q1": self.q1, "q3": self.q3, "min": self.min, "max": self.max},
        }


@dataclass(frozen=True)
class Skip:
    """A figure a suite could not measure in this run, and why (shown in the table and the JSON)."""

    name: str
    suite: str
    reason: str
    not_installed: bool = False
    """The figure is an optional peer whose package is not installed (the targets table says so)."""

    def to_json(self) -> dict[str, Any]:
        """``{"name", "suite", "reason", "not_installed"}``."""
        return {"name": self.name, "suite": self.suite, "reason": self.reason, "not_installed": self.not_installed}


@dataclass
class BenchContext:
    """Handed to each suite's ``run``: settings, recording, timing helpers, cleanup.

    ``records`` (and ``skipped``) are shared between the contexts of one run (the
    runner passes the same lists), so names are unique across suites and a
    suite can read figures an earlier suite recorded (:meth:`find`).
    """

    quick: bool
    suite: str = "adhoc"
    records: list[Record] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    status: Callable[[str], None] = lambda _msg: None
    _cleanup: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    # --- settings -------------------------------------------------------------
    def pick(self, full: int, quick: int) -> int:
        """``quick`` in quick mode, else ``full``."""
        return quick if self.quick else full

    def repeats(self, full: int = 7, quick: int = 3) -> int:
        """How many times to repeat a measurement (never below 5 full / 3 quick)."""
        return max(self.pick(full, quick), MIN_REPEATS_QUICK if self.quick else MIN_REPEATS_FULL)

    # --- recording ------------------------------------------------------------
    def record(
        self,
        name: str,
        unit: str,
        samples: Sequence[float],
        better: Better = "lower",
        baseline: str | None = None,
        note: str | None = None,
    ) -> Record:
        """Summarise ``samples`` as figure ``name``; ``baseline`` names another figure."""
        if better not in ("lower", "higher"):
            raise ValueError(f"{name}: better must be 'lower' or 'higher', not {better!r}")
        if any(r.name == name for r in self.records):
            raise ValueError(f"figure {name!r} recorded twice")
        rec = Record.from_samples(name, unit, samples, better, baseline, note, self.suite)
        self.records.append(rec)
        self.status(f"{self.suite}: {name} = {rec.median:.4g} {unit}")
        return rec

    def skip(self, name: str, reason: str, not_installed: bool = False) -> Skip:
        """Say that figure ``name`` was not measured in this run and why (never silent).

        ``not_installed``: an optional peer's package is missing (the targets
        table then says "baseline not installed").
        """
        if any(r.name == name for r in self.records) or any(k.name == name for k in self.skipped):
            raise ValueError(f"figure {name!r} recorded twice")
        entry = Skip(name, self.suite, reason, not_installed)
        self.skipped.append(entry)
        self.status(f"{self.suite}: {name} skipped ({reason})")
        return entry

    def find(self, name: str) -> Record | None:
        """The figure ``name`` recorded earlier in this run (by any suite), if any."""
        return next((r for r in self.records if r.name == name), None)

    # --- timing -----------------------------------------------------------------
    def time_samples(
        self,
        fn: Callable[[], object] | str,
        repeats: int | None = None,
        inner: int = 10_000,
        globals: dict[str, Any] | None = None,
    ) -> list[float]:
        """Mean µs per call of ``fn``, one sample per repeat of ``inner`` calls.

        ``fn`` may be a zero-argument callable or a statement string evaluated in
        ``globals`` (no wrapper call: the right way to time nanosecond work).
        Uses :mod:`timeit` (garbage collection off while timing); the loop's own
        cost (a few ns) is included.
        """
        reps = repeats if repeats is not None else self.repeats()
        timer = timeit.Timer(fn, globals=globals)
        timer.timeit(max(1, inner // 10))  # warm-up
        return [t / inner * 1e6 for t in timer.repeat(reps, inner)]

    def measure_latency(
        self, fn: Callable[[], object], n: int, repeats: int | None = None, warmup: int | None = None
    ) -> list[float]:
        """µs of each single call of ``fn``: ``n`` calls per repeat, all calls pooled.

        Each call is timed on its own (``perf_counter_ns``, ~0.1 µs of overhead), so
        the pooled samples give a real per-call p99; use :meth:`time_samples` for
        work far below a microsecond.
        """
        reps = repeats if repeats is not None else self.repeats()
        for _ in range(warmup if warmup is not None else max(10, n // 10)):
            fn()
        clock = time.perf_counter_ns
        out: list[float] = []
        with _gc_paused():
            for _ in range(reps):
                for _ in range(n):
                    t0 = clock()
                    fn()
                    out.append((clock() - t0) / 1000.0)
        return out

    def time_calls(self, fn: Callable[[], object], n: int) -> list[float]:
        """µs of each of ``n`` calls of ``fn``, no warm-up, garbage collection paused: one round."""
        clock = time.perf_counter_ns
        out: list[float] = []
        with _gc_paused():
            for _ in range(n):
                t0 = clock()
                fn()
                out.append((clock() - t0) / 1000.0)
        return out

    def interleave(
        self,
        rounds: Mapping[str, Callable[[], Sequence[float]]],
        repeats: int | None = None,
        warmup: int = 1,
    ) -> dict[str, list[float]]:
        """Samples of several figures taken in alternating rounds, after ``warmup`` discarded rounds of each.

        ``rounds[name]()`` measures one round of figure ``name`` and returns its
        samples (per-call µs from :meth:`time_calls`, or one rate).  Round ``r``
        runs every figure once, the order rotated by ``r`` so that none is
        always first; the samples of each figure's rounds are pooled.  A burst
        of machine noise then lands on a figure and its baseline alike, and
        the medians compare like with like.

        Examples:
            >>> ctx = BenchContext(quick=True)
            >>> got = ctx.interleave({"a": lambda: [1.0], "b": lambda: [2.0]}, repeats=3)
            >>> got == {"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}
            True
        """
        reps = repeats if repeats is not None else self.repeats()
        names = list(rounds)
        for _ in range(warmup):
            for name in names:
                rounds[name]()
        out: dict[str, list[float]] = {name: [] for name in names}
        for r in range(reps):
            shift = r % len(names) if names else 0
            for name in names[shift:] + names[:shift]:
                out[name].extend(float(v) for v in rounds[name]())
        return out

    def measure_throughput(
        self,
        fn_batch: Callable[[], int | None],
        ops: int | None = None,
        repeats: int | None = None,
        warmup: int = 1,
    ) -> list[float]:
        """Operations per second of ``fn_batch``, one sample per repeat.

        ``fn_batch`` performs a batch of operations and returns how many, or
        returns ``None`` and ``ops`` says how many.
        """
        reps = repeats if repeats is not None else self.repeats()
        for _ in range(warmup):
            fn_batch()
        out: list[float] = []
        for _ in range(reps):
            t0 = time.perf_counter()
            done = fn_batch()
            elapsed = time.perf_counter() - t0
            count = done if done is not None else ops
            if count is None:
                raise ValueError("measure_throughput: fn_batch returned None and ops is not set")
            out.append(count / elapsed)
        return out

    # --- resources ----------------------------------------------------------------
    def tmpdir(self, prefix: str = "bulkhead-bench-") -> Path:
        """A fresh 0700 directory, removed when the suite ends."""
        base = os.environ.get(TMPDIR_ENV) or None
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
        self._cleanup.callback(shutil.rmtree, path, ignore_errors=True)
        return path

    def spawn_python(self, args: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start ``sys.executable *args`` fresh (no fork of this process); ended by pid at suite end."""
        proc = spawn_python(args, **popen)
        self._cleanup.callback(stop_process, proc)
        return proc

    def defer(self, fn: Callable[..., object], *args: Any) -> None:
        """Call ``fn(*args)`` when the suite ends (last registered, first called)."""
        self._cleanup.callback(fn, *args)

    def close(self) -> None:
        """Run the deferred clean-ups: stop children, remove temp dirs."""
        self._cleanup.close()


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def timed_threads(n: int, run: Callable[[int, threading.Barrier], None]) -> float:
    """Run ``run(i, start)`` on ``n`` threads; each calls ``start.wait()`` once ready.

    Seconds from then to the last join.
    """
    start = threading.Barrier(n + 1)
    threads = [threading.Thread(target=run, args=(i, start)) for i in range(n)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def spawn_python(args: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start a fresh interpreter (``sys.executable``), stdin closed, descriptors closed."""
    popen.setdefault("stdin", subprocess.DEVNULL)
    popen.setdefault("close_fds", True)
    return subprocess.Popen([sys.executable, *args], **popen)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 3.0) -> None:
    """End one child by its pid: terminate, wait, then kill if it lingers; close its pipes."""
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
    finally:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


class PeerProcess:
    """A baseline in a child process that answers each line sent on its stdin with one JSON line (``_ray_peer.py``,
    ``_dbos_peer.py``): the first line says it is ready, each later one is a round's result.  Subclasses set
    :attr:`LABEL` and :attr:`TIMEOUT_S` and turn :meth:`ask` into their figure."""

    LABEL = "peer"
    TIMEOUT_S = 120.0

    def __init__(self, proc: subprocess.Popen[bytes], errlog: Path) -> None:
        self.proc, self.errlog = proc, errlog
        self.info: dict[str, Any] = {}

    def _line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        if not select.select([self.proc.stdout.fileno()], [], [], timeout)[0]:
            raise TimeoutError(f"the {self.LABEL} peer said nothing within {timeout:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            tail = self.errlog.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"the {self.LABEL} peer exited with {self.proc.wait(10)}\n{tail}")
        result: dict[str, Any] = json.loads(line)
        if "error" in result:
            raise RuntimeError(f"the {self.LABEL} peer failed: {result['error']}")
        return result

    def ready(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait until the peer is up: its first line (``{"init_s", ...}``)."""
        self.info = self._line(self.TIMEOUT_S if timeout is None else timeout)
        return self.info

    def ask(self, n: int) -> dict[str, Any]:
        """One round of ``n`` operations: the peer's answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{n}\n".encode())
        self.proc.stdin.flush()
        return self._line(self.TIMEOUT_S)

    def close(self) -> None:
        """Close its stdin (it shuts its baseline down and exits), then end it by pid if it lingers."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        stop_process(self.proc)


def raw_lmdb_grouped(
    path: str | os.PathLike[str],
    items: Sequence[tuple[bytes, bytes]],
    per_commit: int,
    map_size: int | None = None,
) -> float:
    """Puts per second writing ``items`` to a raw LMDB env at ``path``.

    Exactly the given keys and values go into the main database, ``per_commit``
    puts per write transaction, each commit durable (LMDB's default ``sync``:
    fdatasync before the commit returns).  Opening and closing the environment
    are not timed.  ``per_commit=1`` gives durable commits per second.
    """
    import lmdb  # imported here: the runner must start even without it

    if per_commit < 1:
        raise ValueError("per_commit must be >= 1")
    payload = sum(len(k) + len(v) for k, v in items)
    size = map_size if map_size is not None else max(1 << 30, payload * 4)
    env = lmdb.open(os.fspath(path), map_size=size, sync=True, metasync=True, mode=0o600)
    try:
        t0 = time.perf_counter()
        for start in range(0, len(items), per_commit):
            with env.begin(write=True) as txn:
                for key, value in items[start:start + per_commit]:
                    txn.put(key, value)
        elapsed = time.perf_counter() - t0
    finally:
        env.close()
    return len(items) / elapsed if elapsed > 0 else float("inf")
