"""The ``bulkhead`` command line, driven as a user drives it: real processes, real daemons in temp dirs.

Every daemon started here is stopped in a fixture finalizer with ``bulkhead
daemon stop`` (and, should that fail, SIGKILL of the pid it wrote in its own
``daemon.json``): never by name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "examples" / "shop"
_EXE = shutil.which("bulkhead")
BULKHEAD = [_EXE] if _EXE else [sys.executable, "-m", "runtime"]


def bulkhead(*args: str, cwd: Path, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BULKHEAD, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def ok(proc: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a successful command printed on stdout."""
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return json.loads(proc.stdout)


def failed(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON error a failed command printed on stderr."""
    assert proc.returncode != 0, f"expected a failure, got exit 0 with {proc.stdout!r}"
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines, "no error on stderr"
    err = json.loads(lines[-1])
    assert {"type", "code", "message"} <= set(err), err
    return err


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _stop(data: Path, cwd: Path) -> None:
    """Stop whatever daemon serves ``data``: the CLI first, then SIGKILL of the pid it recorded."""
    info_path = data / "daemon.json"
    pid = None
    if info_path.exists():
        try:
            pid = int(json.loads(info_path.read_text())["pid"])
        except (ValueError, KeyError):
            pid = None
    try:
        bulkhead("daemon", "stop", "--data", str(data), cwd=cwd, timeout=60.0)
    except subprocess.TimeoutExpired:
        pass
    if pid is not None and not _wait_gone(pid, 5.0):
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 5.0)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A daemon started with ``bulkhead daemon start``, with examples/shop deployed by ``bulkhead deploy``."""
    cwd = tmp_path_factory.mktemp("cli")
    data = cwd / "data"
    try:
        started = ok(bulkhead("daemon", "start", "--data", str(data), cwd=cwd))
        deployed = ok(bulkhead("deploy", str(SHOP), "--data", str(data), cwd=cwd))
        yield {"cwd": cwd, "data": data, "started": started, "deployed": deployed}
    finally:
        _stop(data, cwd)


def run(shop: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return bulkhead(*args, "--data", str(shop["data"]), cwd=shop["cwd"])


# --- daemon lifecycle -----------------------------------------------------------------------------------


def test_daemon_start_status_stop(tmp_path: Path) -> None:
    data = tmp_path / "data"
    try:
        t0 = time.monotonic()
        out = ok(bulkhead("daemon", "start", "--data", str(data), cwd=tmp_path))
        assert time.monotonic() - t0 < 30.0  # it returned: it detached
        info_path = data / "daemon.json"
        assert stat.S_IMODE(info_path.stat().st_mode) == 0o600
        info = json.loads(info_path.read_text())
        assert info["pid"] == out["pid"] and _alive(info["pid"])
        assert info["client"].startswith("tcp://") and info["client"] == out["client"]
        assert info["admin_key"]
        assert stat.S_IMODE(data.stat().st_mode) & 0o077 == 0  # the data dir is private

        again = ok(bulkhead("daemon", "start", "--data", str(data), cwd=tmp_path))
        assert again.get("already_running") is True and again["pid"] == info["pid"]

        status = ok(bulkhead("daemon", "status", "--data", str(data), cwd=tmp_path))
        assert status["pid"] == info["pid"]

        stopped = ok(bulkhead("daemon", "stop", "--data", str(data), cwd=tmp_path))
        assert stopped["stopped"] is True and stopped["pid"] == info["pid"]
        assert _wait_gone(info["pid"]), "the daemon still runs after `daemon stop`"
        assert not info_path.exists()
        err = failed(bulkhead("daemon", "status", "--data", str(data), cwd=tmp_path))
        assert "daemon" in err["message"]
        assert ok(bulkhead("daemon", "stop", "--data", str(data), cwd=tmp_path))["stopped"] is False
    finally:
        _stop(data, tmp_path)


def test_started_daemon_and_deploy_output(shop: dict[str, Any]) -> None:
    assert shop["started"]["client"].startswith("tcp://")
    assert _alive(shop["started"]["pid"])
    mounts = {m["path"] for m in shop["deployed"]["mounts"]}
    assert mounts == {"", "likes", "views", "bank", "bank/transfers"}
    status = ok(run(shop, "daemon", "status"))
    assert status["pid"] == shop["started"]["pid"]


# --- run -----------------------------------------------------------------------------------------------------


def test_run_prints_the_json_result(shop: dict[str, Any]) -> None:
    first = ok(run(shop, "run", "like", '{"post":"p"}'))
    assert isinstance(first, int) and first >= 1
    assert ok(run(shop, "run", "like", '{"post":"p"}')) == first + 1
    assert ok(run(shop, "run", "stats", '{"post":"p"}')) == {"likes": first + 1, "views": 0}


def test_run_with_a_wrong_argument_type_fails_naming_the_argument(shop: dict[str, Any]) -> None:
    proc = run(shop, "run", "like", '{"post": 5}')
    err = failed(proc)
    assert err["type"] == "ValidationError" and err["code"] == "invalid_value"
    assert "post" in err["message"]
    assert proc.stdout.strip() == ""


def test_run_with_an_unknown_function_or_bad_json_fails(shop: dict[str, Any]) -> None:
    err = failed(run(shop, "run", "no_such_function", "{}"))
    assert err["code"] == "not_found" and "no_such_function" in err["message"]
    bad = run(shop, "run", "like", "{not json")
    assert bad.returncode != 0 and "JSON" in bad.stderr
    not_object = run(shop, "run", "like", '["p"]')
    assert not_object.returncode != 0 and "object" in not_object.stderr


def test_run_component_function_needs_admin(shop: dict[str, Any]) -> None:
    ok(run(shop, "run", "open_account", '{"owner": "ann", "balance": 7}'))
    assert ok(run(shop, "run", "bank:total", "--admin")) == 7
    err = failed(run(shop, "run", "bank:total"))
    assert err["type"] == "IsolationError" and err["code"] == "isolation"
    assert "admin" in err["message"]


def test_component_error_data_reaches_the_cli(shop: dict[str, Any]) -> None:
    err = failed(run(shop, "run", "bank:balance", '{"owner": "nobody"}', "--admin"))
    assert err["type"] == "ComponentError"
    assert err["data"] == {"code": "no_account", "owner": "nobody"}


# --- data, logs, components ------------------------------------------------------------------------------


def test_data_lists_tables(shop: dict[str, Any]) -> None:
    ok(run(shop, "run", "like", '{"post":"p"}'))
    tables = ok(run(shop, "data"))
    by_key = {(t["mount"], t["table"]): t for t in tables}
    assert {("", "failures"), ("likes", "counts"), ("views", "counts"), ("bank", "accounts"),
            ("bank/transfers", "counts")} <= set(by_key)
    assert by_key[("likes", "counts")]["documents"] >= 1
    likes = ok(run(shop, "data", "likes"))
    assert [t["table"] for t in likes] == ["counts"]
    rows = ok(run(shop, "data", "likes", "counts"))
    assert any(r["name"] == "p" and r["value"] >= 1 for r in rows)


def test_logs_show_printed_lines(shop: dict[str, Any]) -> None:
    ok(run(shop, "run", "like", '{"post":"p"}'))
    out = run(shop, "logs")
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if "like p" in line]
    assert lines, out.stdout[-2000:]
    assert any("like" in line.split("like p")[0] for line in lines)  # tagged with the function's name
    as_json = run(shop, "logs", "--json")
    entries = [json.loads(line) for line in as_json.stdout.splitlines() if line.strip()]
    assert any(e["line"] == "like p" and e["mount"] == "" and e["function"] == "like" for e in entries)


def test_components_prints_json(tmp_path: Path) -> None:
    out = ok(bulkhead("components", cwd=tmp_path))
    assert isinstance(out, list)
    for entry in out:
        assert {"name", "use", "source"} <= set(entry)


# --- dev --------------------------------------------------------------------------------------------------------


def test_dev_once_deploys_and_exits(tmp_path: Path) -> None:
    data = tmp_path / "devdata"
    try:
        proc = bulkhead("dev", str(SHOP), "--once", "--data", str(data), cwd=tmp_path)
        out = ok(proc)
        assert out["deployed"] is True
        assert {m["path"] for m in out["mounts"]} == {"", "likes", "views", "bank", "bank/transfers"}
        # the daemon it started for the occasion does not outlive it
        assert not (data / "daemon.json").exists()
    finally:
        _stop(data, tmp_path)


def test_dev_once_reuses_a_running_daemon(shop: dict[str, Any]) -> None:
    out = ok(run(shop, "dev", str(SHOP), "--once"))
    assert out["deployed"] is True
    status = ok(run(shop, "daemon", "status"))
    assert status["pid"] == shop["started"]["pid"]  # still the same daemon, still serving
    assert ok(run(shop, "run", "stats", '{"post":"never"}')) == {"likes": 0, "views": 0}
