"""``bulkhead bench``: discover the suites, run them in order, print a table, write JSON.

A suite is a module ``benchmarks/suite_<name>.py`` exposing ``NAME``,
``DESCRIPTION``, ``ORDER`` (lower runs first; the limits suite is 0) and
``run(ctx)``.  The suite's name is ``<name>`` (from the file name).  A suite
that fails to import or raises is reported as failed — its figures recorded so
far are kept — and :func:`run` returns 1.  Ratios are computed at the end, from
baselines measured in the same run.

``python -m benchmarks.runner`` is the same command with one more option,
``--markdown FILE`` (the latest figures and the issue's targets as markdown,
see :mod:`benchmarks.report`), and ``--from-json RUN.json`` to make that
report from a saved run without measuring again.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import json
import os
import pkgutil
import platform
import subprocess
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.table import Table

import benchmarks
from benchmarks.harness import TMPDIR_ENV, BenchContext, Record, Skip
from benchmarks.report import MET, NOT_MEASURED, NOT_MET, evaluate, write_markdown
from benchmarks.report import fmt as fmt

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PREFIX = "suite_"


@dataclass
class Suite:
    """A discovered suite module (or the error that kept it from importing)."""

    name: str
    module: ModuleType | None
    error: str | None = None

    @property
    def order(self) -> int:
        """Sort key: the module's ``ORDER`` (suites that failed to import go last)."""
        return int(getattr(self.module, "ORDER", 1000)) if self.module else 10_000

    @property
    def description(self) -> str:
        """The module's ``DESCRIPTION``."""
        return str(getattr(self.module, "DESCRIPTION", "")) if self.module else ""


@dataclass
class Failure:
    """A suite that did not finish."""

    suite: str
    error: str
    traceback: str

    def to_json(self) -> dict[str, str]:
        """``{"suite", "error", "traceback"}``."""
        return {"suite": self.suite, "error": self.error, "traceback": self.traceback}


def suite_names() -> list[str]:
    """Names of every ``benchmarks/suite_*.py``, without importing them."""
    return sorted(m.name[len(PREFIX):] for m in pkgutil.iter_modules(benchmarks.__path__)
                  if m.name.startswith(PREFIX))


def load(name: str) -> Suite:
    """Import ``benchmarks.suite_<name>``, keeping an import error as the suite's failure."""
    try:
        module = importlib.import_module(f"benchmarks.{PREFIX}{name}")
    except Exception as exc:  # reported as a failed suite
        return Suite(name, None, f"import failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    if not callable(getattr(module, "run", None)):
        return Suite(name, None, f"benchmarks.{PREFIX}{name} has no run(ctx) function")
    return Suite(name, module)


def machine_facts() -> dict[str, Any]:
    """Facts that explain the figures; deliberately no hostname."""
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    facts: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "lmdb": version("lmdb"), "pyzmq": version("pyzmq"), "msgpack": version("msgpack"),
        "libzmq": _libzmq_version(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "tmp_dir_fs": _fs_type(os.environ.get(TMPDIR_ENV) or "/tmp"),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    return facts


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _libzmq_version() -> str | None:
    try:
        import zmq
        return str(zmq.zmq_version())
    except ImportError:
        return None


def _fs_type(path: str) -> str | None:
    """Filesystem type of the mount holding ``path`` (from /proc/mounts), if known."""
    try:
        real = os.path.realpath(path)
        best, fs = "", None
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if (len(parts) >= 3 and (real == parts[1] or real.startswith(parts[1].rstrip("/") + "/"))
                    and len(parts[1]) > len(best)):
                best, fs = parts[1], parts[2]
        return fs
    except OSError:
        return None


def with_ratios(records: Sequence[Record]) -> list[Record]:
    """Each record with ``ratio = median / baseline median`` (None if the baseline is missing or 0)."""
    medians = {r.name: r.median for r in records}
    out = []
    for r in records:
        base = medians.get(r.baseline) if r.baseline else None
        out.append(replace(r, ratio=(r.median / base) if base else None))
    return out


def commit_facts() -> dict[str, Any]:
    """The git commit the benchmarks ran from: ``sha``, ``dirty`` and the ``changed`` tracked paths."""
    root = Path(benchmarks.__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None, "changed": []}
    changed = sorted(line[3:] for line in status.splitlines() if len(line) > 3)
    return {"sha": sha, "dirty": bool(changed), "changed": changed}


def render(console: Console, records: Sequence[Record], failures: Sequence[Failure],
           skipped: Sequence[Skip] = ()) -> None:
    """Print the results table (and the skips, failures and targets, if any)."""
    table = Table(title="bulkhead bench", title_justify="left", header_style="bold")
    for col, justify in (("name", "left"), ("unit", "left"), ("median", "right"), ("p99", "right"),
                         ("spread (IQR)", "right"), ("better", "left"), ("baseline", "left"),
                         ("ratio", "right")):
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for r in records:
        ratio = f"{r.ratio:.3g}×" if r.ratio is not None else ("not measured" if r.baseline else "–")
        table.add_row(r.name, r.unit, fmt(r.median), fmt(r.p99), f"{fmt(r.q1)}–{fmt(r.q3)}",
                      r.better, r.baseline or "–", ratio)
    for k in skipped:
        table.add_row(f"[yellow]{k.name}[/yellow]", "", "[yellow]skipped[/yellow]", "", "", "", "", "")
    for f in failures:
        table.add_row(f"[red]{f.suite} FAILED[/red]", "", "", "", "", "", "", "")
    console.print(table)
    console.print("[dim]p99 is the bad tail: 99th percentile for lower-is-better, "
                  "1st percentile for higher-is-better. ratio = median / baseline median.[/dim]")
    for k in skipped:
        console.print(f"[yellow]{k.name} not measured[/yellow] ({k.suite}): {k.reason}", highlight=False)
    for f in failures:
        console.print(f"[red]suite {f.suite} failed:[/red] {f.error}")
    verdicts = evaluate([r.to_json() for r in records], skipped=[k.to_json() for k in skipped])
    if any(v.status != NOT_MEASURED for v in verdicts):
        targets = Table(title="targets (issue 12)", title_justify="left", header_style="bold")
        for col, justify in (("target", "left"), ("figure", "right"), ("baseline", "right"), ("ratio", "right"),
                             ("bound", "right"), ("status", "left")):
            targets.add_column(col, justify=justify)  # type: ignore[arg-type]
        for v in verdicts:
            t = v.target
            colour = {MET: "green", NOT_MET: "red"}.get(v.status, "yellow")
            targets.add_row(t.goal, f"{t.figure} {fmt(v.figure)}", f"{t.baseline} {fmt(v.baseline)}" if t.baseline
                            else "–", f"{v.ratio:.3g}×" if v.ratio is not None else "–",
                            f"{t.op} {t.bound:g}{'×' if t.baseline else ''}", f"[{colour}]{v.status}[/{colour}]")
        console.print(targets)
        console.print(f"{sum(v.status == MET for v in verdicts)} of {len(verdicts)} targets met", highlight=False)


def _run_suite(suite: Suite, quick: bool, records: list[Record], err: Console, label: str,
               skipped: list[Skip] | None = None) -> Failure | None:
    """Run one suite under a status line; its failure (import, run or clean-up), if any."""
    if suite.module is None:
        return Failure(suite.name, (suite.error or "").splitlines()[0], suite.error or "")
    failure = None
    mode = "quick" if quick else "full"
    with err.status(f"{label}: {suite.description} ({mode})") as status:
        def show(msg: str) -> None:
            status.update(f"{label} — {msg}")

        ctx = BenchContext(quick=quick, suite=suite.name, records=records, status=show,
                           skipped=skipped if skipped is not None else [])
        try:
            suite.module.run(ctx)
        except Exception as exc:  # any suite failure is reported, not fatal
            failure = Failure(suite.name, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        finally:
            try:
                ctx.close()
            except Exception as exc:
                failure = failure or Failure(suite.name, f"clean-up failed: {type(exc).__name__}: {exc}",
                                             traceback.format_exc())
    return failure


def run(quick: bool = False, only: Sequence[str] = (), json_path: str | None = None,
        markdown_path: str | Sequence[str] | None = None) -> int:
    """Run the selected suites (all if ``only`` is empty); return the process exit code.

    ``json_path`` receives the JSON document, ``markdown_path`` (one path or
    several) the markdown report (:func:`benchmarks.report.write_markdown`).
    """
    out, err = Console(), Console(stderr=True)
    if not out.is_terminal:
        out = Console(width=160)  # a pipe or file: do not squeeze the table into 80 columns
    names = suite_names()
    unknown = [n for n in only if n not in names]
    if unknown:
        err.print(f"[red]unknown suite(s): {', '.join(unknown)}[/red]; "
                  f"available: {', '.join(names) or '(none)'}", highlight=False)
        return EXIT_USAGE
    selected = [n for n in names if not only or n in only]
    suites = sorted((load(n) for n in selected), key=lambda s: (s.order, s.name))

    records: list[Record] = []
    skipped: list[Skip] = []
    failures: list[Failure] = []
    timings: list[dict[str, Any]] = []
    machine = machine_facts()
    for i, suite in enumerate(suites, 1):
        label = f"[{i}/{len(suites)}] {suite.name}"
        t0 = time.perf_counter()
        before = len(records)
        failure = _run_suite(suite, quick, records, err, label, skipped)
        if failure is not None:
            failures.append(failure)
        ok = failure is None
        seconds = time.perf_counter() - t0
        timings.append({"name": suite.name, "description": suite.description, "ok": ok,
                        "seconds": round(seconds, 3), "figures": len(records) - before})
        mark = "[green]ok[/green]" if ok else "[red]FAILED[/red]"
        err.print(f"{label} {mark}  {len(records) - before} figures in {seconds:.1f} s")

    records = with_ratios(records)
    render(out, records, failures, skipped)
    doc = {
        "machine": machine,
        "parameters": {"quick": quick, "only": list(only), "suites": timings, "commit": commit_facts()},
        "results": [r.to_json() for r in records],
        "skipped": [k.to_json() for k in skipped],
        "failures": [f.to_json() for f in failures],
    }
    for md_path in [markdown_path] if isinstance(markdown_path, str) else (markdown_path or []):
        try:
            write_markdown(md_path, doc)
        except OSError as exc:
            err.print(f"[red]cannot write {md_path}: {exc}[/red]")
            return EXIT_FAILED
        err.print(f"wrote {md_path}")
    if json_path:
        try:
            Path(json_path).write_text(json.dumps(doc, indent=2) + "\n")
        except OSError as exc:
            err.print(f"[red]cannot write {json_path}: {exc}[/red]")
            return EXIT_FAILED
        err.print(f"wrote {json_path}")
    return EXIT_FAILED if failures else EXIT_OK



def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.runner``: ``bulkhead bench``'s options plus ``--markdown`` and ``--from-json``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runner", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, safe for CI")
    parser.add_argument("--only", action="append", default=[], help="run only this suite (repeatable)")
    parser.add_argument("--json", dest="json_path", help="write every figure as JSON here")
    parser.add_argument("--markdown", dest="markdown_path", action="append", default=[],
                        help="write the figures and targets as markdown here (repeatable: a file with "
                             "bench:targets markers gets the targets table alone)")
    parser.add_argument("--from-json", dest="from_json", metavar="RUN_JSON",
                        help="measure nothing: make the --markdown report from this saved run")
    args = parser.parse_args(argv)
    if args.from_json:
        if not args.markdown_path:
            parser.error("--from-json needs --markdown FILE")
        doc = json.loads(Path(args.from_json).read_text())
        for md_path in args.markdown_path:
            write_markdown(md_path, doc, source=Path(args.from_json).name)
        return EXIT_OK
    return run(quick=args.quick, only=args.only, json_path=args.json_path, markdown_path=args.markdown_path)


if __name__ == "__main__":
    raise SystemExit(main())
