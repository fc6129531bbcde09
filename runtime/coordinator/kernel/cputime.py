"""The CPU time a worker process has used, read from ``/proc`` by the coordinator.

A query's or mutation's time limit counts the time its own code runs, not the
time it waits for the coordinator's answers or for a CPU on a loaded machine
(Convex: "1 s of user code; DB operations don't count").  The one clock that
measures exactly that, and that a hostile worker cannot falsify, is the
kernel's: ``utime + stime`` of the worker's process in ``/proc/<pid>/stat``.
It advances only while one of the worker's threads runs on a CPU: not while the
worker is blocked waiting for a reply, nor while it is runnable but waiting
for a CPU.  It counts every thread of the process (threads a hostile worker
started included, and the exited ones), and reading it needs nothing from the
worker.

Rejected, and why:

* the worker reporting its own time: it could lie (it may also run code that
  never yields, so it could not report at all);
* ``/proc/<pid>/task/<tid>/stat`` of the loop thread only: precise per thread,
  but blind to threads the worker started;
* ``/proc/<pid>/schedstat`` (nanoseconds): the thread-group leader only, same
  blindness;
* wall time minus the coordinator's answer times: the time a syscall frame
  waits before the coordinator's loop reads it (the very time a busy
  coordinator adds) is invisible to the coordinator.

The resolution is the kernel's clock tick (``SC_CLK_TCK``, usually 10 ms):
plenty for a limit of a second.  A read costs about 9 us (open, read, close).
"""

from __future__ import annotations

import os
import time

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
_CACHE_MAX = 1024


class CpuMeter:
    """Reads workers' process CPU time; a recent reading may be reused where reusing it overcharges only."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[float, float]] = {}
        """pid -> (monotonic time of the reading, CPU seconds read)."""

    def read(self, pid: int | None, max_age_s: float = 0.0) -> float | None:
        """CPU seconds used by process ``pid`` so far (``None``: no ``/proc`` here, or no such process).

        With ``max_age_s``, a reading at most that old is returned instead of a new one.  It is at most
        the current value, so callers use it only where an older value charges *more* (the start of a
        span that is charged), never where it would charge less (the end of one).
        """
        if pid is None:
            return None
        now = time.monotonic()
        if max_age_s > 0.0:
            last = self._last.get(pid)
            if last is not None and now - last[0] <= max_age_s:
                return last[1]
        cpu = process_cpu_s(pid)
        if cpu is not None:
            if len(self._last) >= _CACHE_MAX:
                self._last.clear()  # pids of dead workers: cheaper to forget all than to track deaths
            self._last[pid] = (now, cpu)
        return cpu


def process_cpu_s(pid: int) -> float | None:
    """``utime + stime`` of process ``pid`` (all its threads), in seconds; ``None`` if it cannot be read."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")"
    fields = data[data.rfind(b")") + 2:].split()
    try:
        return (int(fields[11]) + int(fields[12])) * _TICK_S  # fields 14 and 15 of proc(5): utime, stime
    except (IndexError, ValueError):
        return None
