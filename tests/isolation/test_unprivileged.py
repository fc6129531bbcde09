"""The daemon as an ordinary user (uid 65534): it deploys, serves, keeps the OS layers the machine
allows an unprivileged process, and says loudly which ones degraded.

The interpreter lives under ``/root`` (mode 0700) here, which ``nobody`` cannot traverse, so the test
starts the daemon in a private mount namespace (``unshare --mount``) where the interpreter's prefix (and
a virtualenv's, if the tests run in one) is bind-mounted at a path outside ``/root``; nothing else is
changed, and the mounts vanish with the namespace.  The code is copied into a temp dir ``nobody`` can
read (the checkout may live anywhere), and the data dir belongs to ``nobody`` there too.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from runtime.cli import launch
from runtime.testing import RunningDaemon

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534


@pytest.fixture()
def unprivileged_daemon():
    if os.geteuid() != 0:
        pytest.fail("this test starts the daemon as uid 65534 and needs root to do so (CI runs as root)")
    if not shutil.which("unshare") or not shutil.which("setpriv"):
        pytest.fail("util-linux unshare and setpriv are needed")
    top = Path(tempfile.mkdtemp(prefix="bh-unpriv-"))
    os.chmod(top, 0o755)
    prefix = top / "py"
    prefix.mkdir()
    venv = top / "venv"
    venv.mkdir()
    # the code, where nobody can read it wherever the checkout lives (and the test process sees it too)
    repo = top / "repo"
    for part in ("runtime", "sandbox", "components", "tests/isolation/app"):
        shutil.copytree(REPO / part, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
    for dirpath, _dirnames, filenames in os.walk(top):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)
    data = top / "data"
    data.mkdir(mode=0o700)  # nobody's own data dir: the daemon makes everything inside it
    os.chown(data, NOBODY, NOBODY)
    python = prefix / Path(sys.executable).resolve().relative_to(sys.base_prefix)
    in_venv = sys.prefix != sys.base_prefix
    packages = []
    for p in sys.path:
        if not p.endswith("site-packages"):
            continue
        if in_venv and p.startswith(sys.prefix):
            packages.append(str(venv / Path(p).relative_to(sys.prefix)))
        elif p.startswith(sys.base_prefix):
            packages.append(str(prefix / Path(p).relative_to(sys.base_prefix)))
    binds = f"mount --bind {sys.base_prefix} {prefix}" + (f" && mount --bind {sys.prefix} {venv}" if in_venv else "")
    script = (f"{binds} && exec setpriv --reuid={NOBODY} --regid={NOBODY} "
              f"--clear-groups {python} -m runtime.coordinator --data {data}")
    log = top / "daemon.log"
    env = {"PYTHONPATH": os.pathsep.join([str(repo), *packages]), "PATH": "/usr/bin:/bin", "TMPDIR": str(top)}
    proc = launch.spawn(data, argv=["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                        env=env, cwd=top, log_path=log)
    d = RunningDaemon(data)
    d.proc = proc
    d.app = repo / "tests" / "isolation" / "app"  # type: ignore[attr-defined]
    try:
        d.info = launch.wait_until_serving(proc, data, timeout_s=60, log_path=log, tail_lines=40, sep="\n")
        yield d
    finally:
        d.stop()
        shutil.rmtree(top, ignore_errors=True)


def test_an_unprivileged_daemon_deploys_serves_and_reports_what_degraded(unprivileged_daemon: RunningDaemon) -> None:
    d = unprivileged_daemon
    assert Path(f"/proc/{d.pid}/status").read_text().count(f"\t{NOBODY}\t") >= 1  # it really runs as nobody
    d.deploy(d.app)  # type: ignore[attr-defined]
    with d.client() as c:
        c.mutation("remember", text="as nobody")
        assert c.query("facts") == ["as nobody"]
    iso = d.status()["isolation"]
    assert iso["separate_uids"].startswith("off:") and f"uid {NOBODY}" in iso["separate_uids"], iso
    for layer in ("process_per_mount", "restricted_imports", "rlimits", "namespaces", "no_new_privs",
                  "not_dumpable", "landlock", "seccomp"):
        assert iso[layer] == "on", (layer, iso[layer])
    mounts = {m["path"]: m for m in d.status()["deployment"]["mounts"]}
    assert "user" in mounts["evil"]["isolation"]["namespaces"]  # a user namespace stands in for root
    assert mounts["evil"]["isolation"]["private_dirs"].startswith("on: empty /tmp"), mounts["evil"]["isolation"]
    with d.client(admin=True) as c:
        out = c.call("evil:kill_neighbour", {"arg": str(mounts["good"]["pid"])})
        assert out["outcome"].startswith("blocked:"), out  # same uid, so signal scoping must hold
        out = c.call("evil:read_lmdb", {"arg": str(d.data_dir / "db" / "lmdb" / "data.mdb")})
        assert out["outcome"].startswith("blocked:"), out
    with d.client() as c:
        assert c.query("facts") == ["as nobody"]
    _a_shared_uid_cannot_change_modes_owners_times_xattrs_or_priorities(d, mounts)


def _a_shared_uid_cannot_change_modes_owners_times_xattrs_or_priorities(d: RunningDaemon,
                                                                       mounts: dict[str, Any]) -> None:
    """Every worker runs as the daemon's uid here: Landlock has no right for these calls, seccomp refuses them."""
    files = [d.data_dir, d.data_dir / "db" / "lmdb" / "data.mdb", d.data_dir / "daemon.json"]
    modes = {f: os.stat(f).st_mode for f in files if f.exists()}
    assert len(modes) == 3, modes
    with d.client(admin=True) as c:
        for fn in ("chmod_path", "chown_path", "utime_path", "setxattr_path"):
            for f in modes:
                out = c.call(f"evil:{fn}", {"arg": str(f)})
                assert out["pid"] == mounts["evil"]["pid"], out  # the escape reached the worker's real os
                assert out["outcome"].startswith("blocked: PermissionError"), (fn, f, out)
        for fn in ("renice_own_uid", "renice_coordinator", "sched_setaffinity_coordinator", "starve_coordinator"):
            out = c.call(f"evil:{fn}", {})
            assert out["outcome"].startswith("blocked: PermissionError"), (fn, out)
    assert {f: os.stat(f).st_mode for f in modes} == modes
    assert os.getpriority(os.PRIO_PROCESS, d.pid) == 0 and os.sched_getscheduler(d.pid) == os.SCHED_OTHER
    with d.client() as c:
        assert c.query("facts") == ["as nobody"]  # the neighbour still serves
