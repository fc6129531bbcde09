"""Reading a run: the issue's targets, and the markdown report (``--markdown FILE``).

Everything here works on the JSON document the runner writes (``machine``,
``parameters``, ``results``, ``skipped``, ``failures``), so a report can be
made from a saved run as well as from the run that just finished::

    python -m benchmarks.runner --from-json run.json --markdown docs/benchmarks.md

When the markdown file already holds the markers ``<!-- bench:begin -->`` and
``<!-- bench:end -->``, only the text between them is replaced (so a
hand-written preface above them survives); between ``<!-- bench:targets:begin -->``
and ``<!-- bench:targets:end -->`` goes the targets table alone (a README's
"which targets are met"); a file with neither is written whole.

Every row of :data:`TARGETS` compares a figure with a baseline measured in the
same run (in alternating rounds, see ``BenchContext.interleave``), or with an
absolute bound; failed-call counts are figures of their own (``*.failed``) that
must be 0.  A baseline that is an optional peer whose package is missing makes
the row say "baseline not installed".
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
TARGETS_BEGIN, TARGETS_END = "<!-- bench:targets:begin -->", "<!-- bench:targets:end -->"


@dataclass(frozen=True)
class Target:
    """A goal of issue 12: ``figure``'s median against ``baseline``'s median (or alone), compared with ``bound``.

    With a ``baseline`` the compared value is the ratio ``figure / baseline``;
    without one it is the figure's own median (an absolute bound, e.g. ms).
    """

    goal: str
    figure: str
    baseline: str | None
    op: str
    """``"<="`` (latency: at most ``bound`` times) or ``">="`` (throughput: at least)."""
    bound: float
    zero: tuple[str, ...] = ()
    """Figures whose every sample must be 0 (e.g. failed calls) for the target to be met."""
    also: tuple[tuple[str, str, float], ...] = ()
    """More absolute bounds on other figures, ``(figure, op, bound)``, all to be met (e.g. idle RSS)."""


TARGETS: tuple[Target, ...] = (
    Target("query reading one document, uncached, ≤ 4 × a raw ipc round trip", "query.one_doc",
           "baseline.zmq_rtt_1hop", "<=", 4.0),
    Target("cached query ≤ 1.5 × a raw ipc round trip", "query.cached", "baseline.zmq_rtt_1hop", "<=", 1.5),
    Target("mutation of one document ≤ 2 × one raw durable LMDB commit", "mutation.one_doc",
           "baseline.lmdb_commit_single", "<=", 2.0),
    Target("app → component call ≤ half a Ray actor call", "call.app_to_component", "peer.ray_actor_call",
           "<=", 0.5),
    Target("8 clients on disjoint rows ≥ the same in-process (no isolation)", "throughput.disjoint_8",
           "peer.inprocess_8", ">=", 1.0, zero=("throughput.disjoint_8.failed",)),
    Target("8 clients on 2 hot rows ≥ SQLite doing the same", "throughput.conflicting_8", "peer.sqlite_8",
           ">=", 1.0),
    Target("no failed calls: 8 clients on 2 hot rows", "throughput.conflicting_8.failed", None, "<=", 0.0,
           zero=("throughput.conflicting_8.failed",)),
    Target("no failed calls: 8 clients doing two-account transfers", "throughput.transfer_8.failed", None,
           "<=", 0.0, zero=("throughput.transfer_8.failed",)),
    Target("sharded counter ≥ 5 × single-document counter, 0 failed calls", "counter.sharded_8",
           "counter.single_doc_8", ">=", 5.0, zero=("counter.sharded_8.failed", "counter.single_doc_8.failed")),
    Target("bulk insert ≥ half the same in-process", "bulk.insert_100k", "peer.inprocess_bulk_insert", ">=", 0.5,
           zero=("bulk.insert_100k.failed",)),
    Target("hardened worker cold start ≤ 25 ms, idle RSS ≤ 40 MiB", "worker.cold_start", None, "<=", 25.0,
           also=(("worker.idle_rss", "<=", 40.0),)),
    Target("workpool no-op jobs at parallelism 10 ≥ 10 × DBOS Transact's queue (SQLite)", "workpool.jobs_per_s_10",
           "peer.dbos_queue", ">=", 10.0),
    Target("workpool enqueue to start of a no-op job ≤ 5 ms (p50)", "workpool.enqueue_to_start_p50", None, "<=", 5.0),
)

_OPS = {"<=": operator.le, ">=": operator.ge}
MET, NOT_MET, NOT_MEASURED, NOT_INSTALLED = "met", "not met", "not measured", "baseline not installed"


@dataclass(frozen=True)
class Verdict:
    """One target evaluated on one run."""

    target: Target
    figure: float | None
    """The figure's median (``None`` when it was not measured)."""
    baseline: float | None
    """The baseline's median (``None`` without a baseline, or when it was not measured)."""
    ratio: float | None
    """``figure / baseline``, or ``None``."""
    status: str
    """``"met"``, ``"not met"``, ``"not measured"`` or ``"baseline not installed"``."""
    detail: str

    @property
    def value(self) -> float | None:
        """What was compared with the bound: the ratio, or the figure itself for an absolute target."""
        return self.ratio if self.target.baseline is not None else self.figure


def _worst(rec: Mapping[str, Any]) -> float:
    """The largest sample of a figure (its spread's max, else its median)."""
    return float((rec.get("spread") or {}).get("max", rec["median"]))


def evaluate(results: Sequence[Mapping[str, Any]], targets: Sequence[Target] = TARGETS,
             skipped: Sequence[Mapping[str, Any]] = ()) -> list[Verdict]:
    """Each target's figures, ratio and status in ``results`` (the JSON ``results`` and ``skipped`` lists)."""
    by_name = {r["name"]: r for r in results}
    skips = {s["name"]: s for s in skipped}
    out = []
    for t in targets:
        needed = [t.figure, *([t.baseline] if t.baseline else []), *t.zero, *(a[0] for a in t.also)]
        missing = [n for n in dict.fromkeys(needed) if n not in by_name]
        fig = by_name.get(t.figure)
        base = by_name.get(t.baseline) if t.baseline else None
        fig_v = fig["median"] if fig else None
        base_v = base["median"] if base else None
        if missing or (t.baseline and not base_v):
            reasons = [f"{n}: {skips[n]['reason']}" if n in skips else f"{n} not in this run" for n in missing]
            not_installed = any(skips.get(n, {}).get("not_installed") for n in missing)
            out.append(Verdict(t, fig_v, base_v, None, NOT_INSTALLED if not_installed else NOT_MEASURED,
                               "; ".join(reasons) or f"{t.baseline} is 0"))
            continue
        assert fig is not None and fig_v is not None
        if t.baseline:
            assert base_v
            quotient = fig_v / base_v
            ratio: float | None = quotient
            ok = _OPS[t.op](quotient, t.bound)
            detail = f"{fmt(fig_v)} / {fmt(base_v)} {fig['unit']}"
        else:
            ratio = None
            ok = _OPS[t.op](fig_v, t.bound)
            detail = f"{fmt(fig_v)} {fig['unit']}"
        for name, op, bound in t.also:
            rec = by_name[name]
            ok = ok and _OPS[op](rec["median"], bound)
            detail += f"; {name} {fmt(rec['median'])} {rec['unit']} ({op} {bound:g})"
        for z in t.zero:
            worst = _worst(by_name[z])
            if z != t.figure or t.baseline:
                detail += f"; {z} max {fmt(worst)}"
            ok = ok and worst == 0
        out.append(Verdict(t, fig_v, base_v, ratio, MET if ok else NOT_MET, detail))
    return out


def targets_markdown(doc: Mapping[str, Any]) -> list[str]:
    """The targets table of a run: figure, baseline, ratio, target and met / not met, one row per target."""
    lines = ["| target | figure | baseline | ratio | bound | status |",
             "| --- | --- | --- | ---: | ---: | --- |"]
    for v in evaluate(doc.get("results", []), skipped=doc.get("skipped", [])):
        t = v.target
        unit = _unit(doc, t.figure)
        figure = f"`{t.figure}` {fmt(v.figure)} {unit}".rstrip()
        if t.baseline:
            baseline = f"`{t.baseline}` {fmt(v.baseline)} {_unit(doc, t.baseline)}".rstrip()
            ratio = f"{v.ratio:.3g}×" if v.ratio is not None else "–"
            bound = f"{t.op} {t.bound:g}×"
        else:
            baseline, ratio, bound = "–", "–", f"{t.op} {t.bound:g} {unit}".rstrip()
        extra = [f"{n} {op} {b:g} {_unit(doc, n)}".rstrip() for n, op, b in t.also]
        extra += [f"`{z}` = 0" for z in t.zero if z != t.figure]
        if extra:
            bound += "; " + ", ".join(extra)
        status = f"**{v.status}**" if v.status in (MET, NOT_MET) else f"*{v.status}*"
        if v.status != MET:
            status += f" ({_cell(v.detail)})" if v.status != NOT_MET else ""
        lines.append(f"| {_cell(t.goal)} | {figure} | {baseline} | {ratio} | {_cell(bound)} | {status} |")
    verdicts = evaluate(doc.get("results", []), skipped=doc.get("skipped", []))
    met = sum(v.status == MET for v in verdicts)
    lines += ["", f"{met} of {len(verdicts)} targets met in this run."]
    return lines


def _unit(doc: Mapping[str, Any], name: str) -> str:
    return next((str(r["unit"]) for r in doc.get("results", []) if r["name"] == name), "")


def fmt(value: float | None) -> str:
    """Compact human number: 3 significant figures, thousands separated."""
    if value is None:
        return "–"
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) >= 0.001 else f"{value:.2e}"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _ratio(r: Mapping[str, Any]) -> str:
    if r.get("ratio") is not None:
        return f"{r['ratio']:.3g}×"
    return "not measured" if r.get("baseline") else "–"


def markdown(doc: Mapping[str, Any], source: str | None = None) -> str:
    """The generated block: when and where, the targets, every figure, skips and failures."""
    m, p = doc.get("machine", {}), doc.get("parameters", {})
    commit = p.get("commit") or {}
    lines = [BEGIN,
             f"<!-- generated by `python -m benchmarks.runner --markdown`{' from ' + source if source else ''}; "
             "do not edit by hand -->", ""]
    sha = commit.get("sha") or "unknown"
    changed = commit.get("changed") or []
    dirty = ""
    if commit.get("dirty"):
        shown = ", ".join(f"`{c}`" for c in changed[:12]) + (", …" if len(changed) > 12 else "")
        dirty = f" (with uncommitted changes to {shown})" if changed else " (with uncommitted changes in the tree)"
    load = m.get("loadavg_at_start")
    lines += [
        f"Measured {m.get('date', '?')} in {'quick' if p.get('quick') else 'full'} mode at commit `{sha}`{dirty}, "
        f"on {m.get('cpu_model') or 'an unknown CPU'} ({m.get('cpu_count')} vCPUs), Python {m.get('python')}, "
        f"{m.get('platform')}; temp dirs on {m.get('tmp_dir_fs') or '?'}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in load) if load else '?'}.",
        "",
    ]
    suites = p.get("suites") or []
    if suites:
        lines.append("Suites: " + ", ".join(
            f"{s['name']} ({s['seconds']:.1f} s{'' if s.get('ok') else ', FAILED'})" for s in suites) + ".")
        lines.append("")
    lines += ["### Targets (issue 12)", "",
              "Each figure and its baseline are measured in the same run, in alternating rounds after a warm-up "
              "(`BenchContext.interleave`); ratio = figure median / baseline median.", ""]
    lines += targets_markdown(doc)
    lines += ["", "### Figures", "",
              "p99 is the bad tail (99th percentile of a latency, 1st percentile of a throughput); "
              "ratio = median / baseline median, both from this run.", "",
              "| figure | unit | median | p99 | IQR | baseline | ratio | note |",
              "| --- | --- | ---: | ---: | ---: | --- | ---: | --- |"]
    for r in doc.get("results", []):
        sp = r.get("spread") or {}
        iqr = f"{fmt(sp.get('q1'))}–{fmt(sp.get('q3'))}" if sp else "–"
        lines.append(f"| `{r['name']}` | {r['unit']} | {fmt(r['median'])} | {fmt(r['p99'])} | {iqr} | "
                     f"{'`' + r['baseline'] + '`' if r.get('baseline') else '–'} | {_ratio(r)} | "
                     f"{_cell(r.get('note') or '')} |")
    skipped = doc.get("skipped") or []
    if skipped:
        lines += ["", "### Not measured in this run", ""]
        lines += [f"- `{s['name']}` ({s['suite']}): {_cell(s['reason'])}" for s in skipped]
    failures = doc.get("failures") or []
    if failures:
        lines += ["", "### Failed suites", ""]
        lines += [f"- {f['suite']}: {_cell(f['error'])}" for f in failures]
    lines += ["", END]
    return "\n".join(lines) + "\n"


def _replace_between(text: str, begin: str, end: str, block: str) -> str | None:
    """``text`` with what lies between ``begin`` and ``end`` (markers included) replaced by ``block``."""
    if begin not in text or end not in text or text.index(begin) > text.index(end):
        return None
    head, rest = text.split(begin, 1)
    return head + block.rstrip("\n") + rest.split(end, 1)[1]


def targets_block(doc: Mapping[str, Any]) -> str:
    """The targets table alone, between :data:`TARGETS_BEGIN` and :data:`TARGETS_END` (for a README)."""
    m, p = doc.get("machine", {}), doc.get("parameters", {})
    sha = (p.get("commit") or {}).get("sha") or "unknown"
    lines = [TARGETS_BEGIN, "<!-- generated by `bulkhead bench --markdown`; do not edit by hand -->", "",
             f"Targets in the {'quick' if p.get('quick') else 'full'} run of {m.get('date', '?')} at commit "
             f"`{sha}` (every figure: `docs/benchmarks.md`):", ""]
    return "\n".join([*lines, *targets_markdown(doc), "", TARGETS_END]) + "\n"


def write_markdown(path: str | Path, doc: Mapping[str, Any], source: str | None = None) -> None:
    """Write the report to ``path``: between the markers the file holds, else the whole file.

    ``<!-- bench:begin -->`` / ``<!-- bench:end -->`` receive the whole report;
    ``<!-- bench:targets:begin -->`` / ``<!-- bench:targets:end -->`` the
    targets table alone (so a README can show which targets are met).  A file
    with neither pair is overwritten with the whole report.
    """
    target = Path(path)
    old = target.read_text() if target.exists() else ""
    new, hit = old, False
    for begin, end, block in ((BEGIN, END, markdown(doc, source)), (TARGETS_BEGIN, TARGETS_END, targets_block(doc))):
        replaced = _replace_between(new, begin, end, block)
        if replaced is not None:
            new, hit = replaced, True
    target.write_text(new if hit else markdown(doc, source))
