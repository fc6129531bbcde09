"""The bench tool's reading of a run: the targets table, met / not met, failed-call figures, interleaved rounds.

Fast and independent of the machine's speed: every figure here is made up.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from benchmarks import report, suite_peers
from benchmarks.harness import BenchContext
from benchmarks.report import MET, NOT_INSTALLED, NOT_MEASURED, NOT_MET, TARGETS, Target, evaluate


def _fig(name: str, median: float, unit: str = "us", samples: list[float] | None = None) -> dict[str, Any]:
    values = samples if samples is not None else [median]
    return {"name": name, "unit": unit, "median": median, "spread": {"min": min(values), "max": max(values)}}


def test_every_row_of_the_issue_has_a_target_with_a_baseline_from_the_same_run() -> None:
    rows = {(t.figure, t.baseline) for t in TARGETS}
    assert rows >= {
        ("query.one_doc", "baseline.zmq_rtt_1hop"), ("query.cached", "baseline.zmq_rtt_1hop"),
        ("mutation.one_doc", "baseline.lmdb_commit_single"), ("call.app_to_component", "peer.ray_actor_call"),
        ("throughput.disjoint_8", "peer.inprocess_8"), ("throughput.conflicting_8", "peer.sqlite_8"),
        ("counter.sharded_8", "counter.single_doc_8"), ("bulk.insert_100k", "peer.inprocess_bulk_insert"),
        ("worker.cold_start", None),
    }
    zeros = {z for t in TARGETS for z in t.zero}
    assert zeros >= {"throughput.conflicting_8.failed", "throughput.transfer_8.failed", "counter.sharded_8.failed"}
    assert all(z.endswith(".failed") for z in zeros)


def test_met_and_not_met_follow_the_ratio_and_the_direction() -> None:
    lat = Target("latency", "a", "b", "<=", 2.0)
    thr = Target("throughput", "c", "d", ">=", 1.0)
    results = [_fig("a", 3.0), _fig("b", 2.0), _fig("c", 5.0, "ops/s"), _fig("d", 4.0, "ops/s")]
    v_lat, v_thr = evaluate(results, [lat, thr])
    assert (v_lat.ratio, v_lat.status) == (1.5, MET)
    assert (v_thr.ratio, v_thr.status) == (1.25, MET)
    v_lat, v_thr = evaluate([_fig("a", 5.0), _fig("b", 2.0), _fig("c", 3.0), _fig("d", 4.0)], [lat, thr])
    assert (v_lat.ratio, v_lat.status) == (2.5, NOT_MET)
    assert (v_thr.ratio, v_thr.status) == (0.75, NOT_MET)


def test_a_failed_call_in_any_round_fails_the_target_however_fast() -> None:
    t = Target("fast and no failures", "c", "d", ">=", 1.0, zero=("c.failed",))
    ok = evaluate([_fig("c", 9.0), _fig("d", 1.0), _fig("c.failed", 0.0, "calls", [0.0, 0.0, 0.0])], [t])[0]
    bad = evaluate([_fig("c", 9.0), _fig("d", 1.0), _fig("c.failed", 0.0, "calls", [0.0, 2.0, 0.0])], [t])[0]
    assert ok.status == MET
    assert bad.status == NOT_MET and "c.failed max 2" in bad.detail
    missing = evaluate([_fig("c", 9.0), _fig("d", 1.0)], [t])[0]
    assert missing.status == NOT_MEASURED and "c.failed" in missing.detail


def test_absolute_targets_and_their_extra_bounds() -> None:
    t = Target("start", "w", None, "<=", 25.0, also=(("rss", "<=", 40.0),))
    assert evaluate([_fig("w", 20.0, "ms"), _fig("rss", 39.0, "MiB")], [t])[0].status == MET
    v = evaluate([_fig("w", 20.0, "ms"), _fig("rss", 41.0, "MiB")], [t])[0]
    assert v.status == NOT_MET and v.ratio is None and v.value == 20.0


def test_a_missing_optional_peer_says_baseline_not_installed() -> None:
    t = Target("ray", "call", "peer.ray_actor_call", "<=", 0.5)
    skipped = [{"name": "peer.ray_actor_call", "suite": "calls", "reason": "baseline not installed: no Ray",
                "not_installed": True}]
    v = evaluate([_fig("call", 1.0)], [t], skipped)[0]
    assert v.status == NOT_INSTALLED and "no Ray" in v.detail
    v = evaluate([_fig("call", 1.0)], [t], [{**skipped[0], "not_installed": False}])[0]
    assert v.status == NOT_MEASURED


def test_the_targets_table_has_a_row_per_target_with_figure_baseline_ratio_bound_status() -> None:
    doc = {"results": [_fig("query.one_doc", 300.0), _fig("baseline.zmq_rtt_1hop", 100.0),
                       _fig("query.cached", 200.0)],
           "skipped": [{"name": "peer.ray_actor_call", "suite": "calls", "reason": "baseline not installed: x",
                        "not_installed": True}]}
    lines = report.targets_markdown(doc)
    rows = [ln for ln in lines[2:] if ln.startswith("| ")]
    assert len(rows) == len(TARGETS)
    one_doc = next(r for r in rows if "`query.one_doc`" in r)
    assert "300" in one_doc and "`baseline.zmq_rtt_1hop` 100" in one_doc and "3×" in one_doc
    assert "**met**" in one_doc
    assert "**not met**" in next(r for r in rows if "`query.cached`" in r)
    assert "baseline not installed" in next(r for r in rows if "`peer.ray_actor_call`" in r)
    assert "1 of" in lines[-1]


def test_markdown_fills_the_targets_markers_of_a_readme_and_keeps_the_rest(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Project\n\n{report.TARGETS_BEGIN}\nstale table\n{report.TARGETS_END}\n\nmore text\n")
    doc = {"machine": {"date": "2026-12-02"}, "parameters": {"quick": True}, "results": [], "skipped": []}
    report.write_markdown(readme, doc)
    text = readme.read_text()
    assert text.startswith("# Project\n") and text.rstrip().endswith("more text")
    assert "stale table" not in text and "| target | figure | baseline | ratio | bound | status |" in text
    assert "### Figures" not in text  # the targets alone, not the whole report
    whole = tmp_path / "bench.md"
    report.write_markdown(whole, doc)
    assert "### Targets" in whole.read_text() and "### Figures" in whole.read_text()


def test_interleave_warms_up_then_alternates_rounds_and_pools_them() -> None:
    calls: list[str] = []

    def round_of(name: str, value: float) -> Any:
        def one() -> list[float]:
            calls.append(name)
            return [value, value]
        return one

    ctx = BenchContext(quick=True)
    got = ctx.interleave({"a": round_of("a", 1.0), "b": round_of("b", 2.0), "c": round_of("c", 3.0)}, repeats=3)
    assert calls == ["a", "b", "c",  # the warm-up round, discarded
                     "a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert got == {"a": [1.0] * 6, "b": [2.0] * 6, "c": [3.0] * 6}


def test_the_ray_peer_is_skipped_visibly(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = BenchContext(quick=True, suite="calls")
    monkeypatch.setenv(suite_peers.RAY_ENV, "0")
    assert suite_peers.RayPeer.start(ctx) is None
    monkeypatch.delenv(suite_peers.RAY_ENV)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    other = BenchContext(quick=True, suite="calls")
    assert suite_peers.RayPeer.start(other) is None
    (off,), (missing,) = ctx.skipped, other.skipped
    assert off.name == missing.name == "peer.ray_actor_call"
    assert not off.not_installed and missing.not_installed and "not installed" in missing.reason
    assert evaluate([_fig("call.app_to_component", 1.0)], [t for t in TARGETS if t.baseline == off.name],
                    [missing.to_json()])[0].status == NOT_INSTALLED
