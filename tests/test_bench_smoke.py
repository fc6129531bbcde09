"""`bulkhead bench --quick --json` runs and writes the JSON shape DESIGN.md promises (never its speed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_quick_storage_bench_writes_the_contract_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", "bench", "--quick", "--only", "limits", "--only", "storage", "--json", str(out)],
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
                 "limit.inprocess_call", "storage.commit_single", "storage.commit_grouped", "scan.range", "occ.validate"):
        assert name in by_name, f"{name} missing"
        assert by_name[name]["median"] > 0


def test_unknown_suite_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "runtime", "bench", "--only", "nope"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "storage" in (proc.stderr + proc.stdout)
