"""Environment values set at deployment (issue 17 item 3, issue 13 item 1): ``bulkhead env``.

A component declares what it reads (``runtime.EnvVar``: description, required or default); values are
set per mount with ``bulkhead env set`` (or the ``env`` admin op), kept by the coordinator across
restarts, given only to that mount's workers, masked by ``list``; a deploy lacking a required value is
refused naming it; changing a value restarts only that mount's worker.  Everything runs through a real
daemon; the CLI is the real ``bulkhead`` in a subprocess.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime.app import Component, EnvVar
from runtime.errors import BulkheadError, DeployError, LimitExceeded, NotFoundError, ValidationError
from runtime.testing import RunningDaemon

APP = Path(__file__).parent / "apps" / "envapp"
_EXE = shutil.which("bulkhead")
BULKHEAD = [_EXE] if _EXE else [sys.executable, "-m", "runtime"]
KEY_HEAD, KEY_TAIL = "sk-live-", "4f1c9a7e2b"  # the secret, never built whole in this test's daemon calls


def cli(d: RunningDaemon, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BULKHEAD, "env", *args, "--data", str(d.data_dir)], capture_output=True, text=True,
                          input=stdin if stdin is not None else "", timeout=120)


def env_op(d: RunningDaemon, **args: Any) -> Any:
    with d.client(admin=True) as c:
        return c.admin("env", **args)


def call(d: RunningDaemon, fn: str, **args: Any) -> Any:
    with d.client(admin=True) as c:
        return c.call(fn, args)


def test_envvar_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="required or has a default"):
        EnvVar("x", required=True, default="y")
    with pytest.raises(TypeError, match="default must be a str"):
        EnvVar("x", default=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a variable name"):
        Component("c", env={"1BAD": EnvVar("x")})
    c = Component("c", env={"A": EnvVar("a", default="1"), "B": EnvVar("b", required=True), "C": "3"})
    assert c.env == {"A": "1", "C": "3"}
    assert c.manifest()["env_vars"] == {"A": {"description": "a", "required": False, "default": "1"},
                                        "B": {"description": "b", "required": True, "default": None}}


def test_a_deploy_without_a_required_value_is_refused_naming_each(daemon_for) -> None:
    d = daemon_for()
    with pytest.raises(DeployError) as err:
        d.deploy(APP)
    message = err.value.message
    assert "mailer needs API_KEY (the mail provider's key)" in message
    assert "backup needs API_KEY" in message and "bulkhead env set mailer API_KEY VALUE" in message
    assert d.status()["deployment"]["deployed"] is False


def test_values_reach_only_their_mount_and_survive_a_restart(daemon_for) -> None:
    d = daemon_for()
    assert cli(d, "set", "mailer", "API_KEY", KEY_HEAD + KEY_TAIL).returncode == 0
    proc = cli(d, "set", "backup", "API_KEY", "-", stdin="backup-key-123\n")
    assert proc.returncode == 0, proc.stderr
    d.deploy(APP)
    assert call(d, "mailer:settings") == {"API_KEY": KEY_HEAD + KEY_TAIL, "SENDER": "noreply@example.com",
                                          "LEVEL": "info"}
    assert call(d, "backup:settings") == {"API_KEY": "backup-key-123", "SENDER": "backup@example.com",
                                          "LEVEL": "info"}
    assert call(d, "env") == {}
    # an escaped neighbour holds its own code (the scan works) but not the secret
    own = call(d, "spy:scan", head="Escapes the language ", tail="layer and searches")
    assert own["found"] is True and own["pid"] == d.worker_pid("spy")
    hunt = call(d, "spy:scan", head=KEY_HEAD, tail=KEY_TAIL)
    assert hunt == {"pid": d.worker_pid("spy"), "found": False, "env": {}}
    # values are kept by the coordinator, across a restart of the daemon
    d.stop()
    d.start()
    d.deploy(APP)
    assert call(d, "mailer:settings")["API_KEY"] == KEY_HEAD + KEY_TAIL


def test_list_masks_get_prints_and_sources_are_named(daemon_for) -> None:
    d = daemon_for()
    env_op(d, action="set", mount="mailer", name="API_KEY", value=KEY_HEAD + KEY_TAIL)
    env_op(d, action="set", mount="backup", name="API_KEY", value="short")
    d.deploy(APP)
    proc = cli(d, "list")
    assert proc.returncode == 0, proc.stderr
    assert KEY_TAIL not in proc.stdout and "short" not in proc.stdout
    listed = json.loads(proc.stdout)["mounts"]
    assert listed["mailer"]["API_KEY"] == {"source": "deployment", "value": "sk… (18 chars)", "required": True,
                                           "description": "the mail provider's key"}
    assert listed["mailer"]["SENDER"]["source"] == "default"
    assert listed["backup"]["SENDER"] == {"source": "parent", "value": "ba… (18 chars)", "required": False,
                                          "description": "the From address"}
    assert listed["backup"]["API_KEY"]["value"] == "… (5 chars)"
    assert "spy" not in listed
    got = cli(d, "get", "mailer", "API_KEY")
    assert got.returncode == 0 and got.stdout == KEY_HEAD + KEY_TAIL + "\n"
    missing = cli(d, "get", "mailer", "NOPE")
    assert missing.returncode != 0 and "'NOPE' is not set for mount 'mailer'" in missing.stderr


def test_a_change_restarts_only_that_mounts_worker(daemon_for) -> None:
    d = daemon_for()
    env_op(d, action="set", mount="mailer", name="API_KEY", value="one")
    env_op(d, action="set", mount="backup", name="API_KEY", value="two")
    d.deploy(APP)
    before = {m: d.worker_pid(m) for m in ("", "mailer", "backup", "spy")}
    out = env_op(d, action="set", mount="backup", name="SENDER", value="ops@example.com")
    assert out == {"mount": "backup", "name": "SENDER", "changed": True, "restarted": True}
    assert call(d, "backup:settings")["SENDER"] == "ops@example.com"  # the deployment wins over the parent
    after = {m: d.worker_pid(m) for m in before}
    assert after["backup"] != before["backup"]
    assert {m: p for m, p in after.items() if m != "backup"} == {m: p for m, p in before.items() if m != "backup"}
    # the same value again changes nothing and restarts nothing
    assert env_op(d, action="set", mount="backup", name="SENDER", value="ops@example.com")["restarted"] is False
    assert d.worker_pid("backup") == after["backup"]
    # unset: back to what the parent passes
    assert env_op(d, action="unset", mount="backup", name="SENDER")["restarted"] is True
    assert call(d, "backup:settings")["SENDER"] == "backup@example.com"


def test_refusals_name_what_was_wrong(daemon_for) -> None:
    d = daemon_for()
    env_op(d, action="set", mount="mailer", name="API_KEY", value="one")
    env_op(d, action="set", mount="backup", name="API_KEY", value="two")
    d.deploy(APP)
    with pytest.raises(ValidationError, match="'API_KEY' is required by mount 'mailer'"):
        env_op(d, action="unset", mount="mailer", name="API_KEY")
    assert call(d, "mailer:settings")["API_KEY"] == "one"
    with pytest.raises(ValidationError, match="not a variable name"):
        env_op(d, action="set", mount="mailer", name="BAD-NAME", value="x")
    with pytest.raises(LimitExceeded, match="ENV_VALUE_BYTES_MAX"):
        env_op(d, action="set", mount="mailer", name="BIG", value="x" * (64 * 1024 + 1))
    with pytest.raises(NotFoundError, match="'NEVER' is not set"):
        env_op(d, action="unset", mount="mailer", name="NEVER")
    with pytest.raises(NotFoundError, match="no mount 'nosuch'"):
        env_op(d, action="list", mount="nosuch")
    with pytest.raises(BulkheadError, match="needs the admin key"), d.client() as c:
        c.admin("env", action="list")
    usage = cli(d, "set", "ONLY_NAME")
    assert usage.returncode == 2 and "usage: bulkhead env set [MOUNT] NAME VALUE" in usage.stderr
