"""The HTTP API from the command line: ``daemon start --http`` and ``dev --http`` choose its address,
``daemon start``, ``daemon status`` and ``dev`` say where it is.  Real CLI in subprocesses, real daemons."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "examples" / "shop"
_EXE = shutil.which("bulkhead")
BULKHEAD = [_EXE] if _EXE else [sys.executable, "-m", "runtime"]


def bulkhead(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BULKHEAD, *args], capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_daemon_start_and_status_name_the_http_api(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    port = _free_port()
    started = bulkhead("daemon", "start", "--data", data, "--http", f"127.0.0.1:{port}")
    try:
        assert started.returncode == 0, started.stderr
        api = json.loads(started.stdout)["api"]
        assert api == f"http://127.0.0.1:{port}"
        status = bulkhead("daemon", "status", "--data", data)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["api"] == api
        with urllib.request.urlopen(f"{api}/api/openapi.json", timeout=60) as reply:
            assert reply.status == 200 and json.loads(reply.read())["openapi"].startswith("3.")
    finally:
        bulkhead("daemon", "stop", "--data", data)


def test_dev_prints_where_the_http_api_is(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    port = _free_port()
    try:
        proc = bulkhead("dev", str(SHOP), "--data", data, "--once", "--http", f"127.0.0.1:{port}")
        assert proc.returncode == 0, proc.stderr
        assert f"HTTP API: http://127.0.0.1:{port} " in proc.stderr  # its own daemon stops with it (--once)
        assert bulkhead("daemon", "start", "--data", data).returncode == 0  # a daemon dev did not start...
        proc = bulkhead("dev", str(SHOP), "--data", data, "--once")
        assert proc.returncode == 0, proc.stderr
        api = next(x for x in proc.stderr.splitlines() if x.startswith("HTTP API: ")).split()[2]
        with urllib.request.urlopen(f"{api}/api/openapi.json", timeout=60) as reply:  # ...keeps serving
            assert "stats" in json.dumps(json.loads(reply.read()))
    finally:
        bulkhead("daemon", "stop", "--data", data)
