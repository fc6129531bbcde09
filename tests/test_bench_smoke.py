"""`bulkhead bench --quick --json` runs and writes the JSON shape DESIGN.md promises (never its speed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_quick_storage_bench_writes_the_contract_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", "bench", "--quick", "--only", "limits", "--only", "storage",
         "--json", str(out)],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert isinstance(data["machine"], dict) and data["machine"]
    by_name = {r["name"]: r for r in data["results"]}
    for rec in data["results"]:
        assert set(rec) >= {"name", "unit", "median", "p99", "better", "baseline", "ratio"}
        assert rec["better"] in ("lower", "higher")
        if rec["baseline"] is not None and rec["baseline"] in by_name:
            assert rec["ratio"] == pytest.approx(rec["median"] / by_name[rec["baseline"]]["median"])
    for name in ("limit.zmq_rtt_1hop", "limit.zmq_rtt_2hop", "limit.lmdb_commit_single", "limit.lmdb_commit_grouped",
                 "limit.inprocess_call", "storage.commit_single", "storage.commit_grouped", "scan.range",
                 "occ.validate"):
        assert name in by_name, f"{name} missing"
        assert by_name[name]["median"] > 0


def test_unknown_suite_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "runtime", "bench", "--only", "nope"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "storage" in (proc.stderr + proc.stdout)


def _check_shape(data: dict) -> dict:  # type: ignore[type-arg]
    assert isinstance(data["machine"], dict) and data["machine"]
    by_name = {r["name"]: r for r in data["results"]}
    assert len(by_name) == len(data["results"]), "a figure name appears twice"
    for rec in data["results"]:
        assert set(rec) >= {"name", "unit", "median", "p99", "better", "baseline", "ratio"}
        assert rec["better"] in ("lower", "higher")
        if rec["baseline"] is not None and rec["baseline"] in by_name:
            assert rec["ratio"] == pytest.approx(rec["median"] / by_name[rec["baseline"]]["median"])
    return by_name


def test_quick_peers_neighbour_bulk_write_json_markdown_and_targets(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.runner", "--quick", "--only", "peers", "--only", "neighbour",
         "--only", "bulk", "--json", str(out), "--markdown", str(md)],
        capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    data = json.loads(out.read_text())
    assert data["failures"] == []
    by_name = _check_shape(data)
    for name in ("peer.sqlite_transfer_8", "throughput.transfer_8", "neighbour.quiet",
                 "neighbour.noisy", "neighbour.flood", "bulk.insert_100k", "peer.inprocess_bulk_insert",
                 "bulk.insert_gathered"):
        assert name in by_name, f"{name} missing"
        assert by_name[name]["median"] > 0
    # failed calls are figures of their own, beside the throughput they belong to
    for name in ("throughput.transfer_8.failed", "bulk.insert_100k.failed"):
        assert by_name[name]["unit"] == "calls" and by_name[name]["median"] >= 0
    assert by_name["neighbour.noisy"]["baseline"] == "neighbour.quiet"
    assert by_name["bulk.insert_100k"]["ratio"] is not None  # its in-process baseline ran in the same run
    assert by_name["throughput.transfer_8"]["ratio"] is not None
    # the markdown report: every figure, the targets table (a row for each, met or not computed from this run)
    text = md.read_text()
    for name in by_name:
        assert f"`{name}`" in text
    targets = text.split("### Targets")[1].split("### Figures")[0]
    bulk_row = next(line for line in targets.splitlines() if "`bulk.insert_100k`" in line)
    assert "**met**" in bulk_row or "**not met**" in bulk_row
    assert "not measured" in next(line for line in targets.splitlines() if "`query.one_doc`" in line)
    md.write_text("# preface kept\n\n" + text + "\ntrailer kept\n")
    regen = subprocess.run([sys.executable, "-m", "benchmarks.runner", "--from-json", str(out), "--markdown", str(md)],
                           capture_output=True, text=True, timeout=60)
    assert regen.returncode == 0, regen.stderr
    again = md.read_text()
    assert again.startswith("# preface kept\n") and again.rstrip().endswith("trailer kept")
    assert again.count("<!-- bench:begin -->") == 1 and "`bulk.insert_100k`" in again
