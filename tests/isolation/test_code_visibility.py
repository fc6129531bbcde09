"""Each worker holds only its own mount's code and secrets (issue 13, item 1).

``hunter`` escapes the language layer (it holds the real ``os`` and ``gc``, proven by the pid it
returns) and hunts beside ``vault``, a neighbour with a secret in its env and a marker in its source,
in an app that also mounts the first-party sharded counter.  A worker reads only the static import
closure of its entry module (:mod:`sandbox.closure`) and Landlock opens only those files, so the
hunter finds none of the others' source or secrets in its heap, cannot read their files, and cannot
import a module of its own package that its code never imports by name.  (Directory listings
under the repository and the app directory stay allowed: the import system needs them, and Landlock
grants listing for a whole tree; names are visible, contents are not.)  Its own marker is found (the scan
works) and its own files are readable (the read works), so a refusal cannot pass by accident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runtime.errors import BulkheadError
from runtime.testing import RunningDaemon

APP = Path(__file__).parent / "visibility_app"
REPO = Path(__file__).resolve().parents[2]

OWN = ["HUNTEROWN-", "31b0"]
FOREIGN = {
    "the app module's source": ["APPSOURCE-", "c41d"],
    "a value the app passes to vault": ["APPPASSED-", "9e27"],
    "vault's source": ["VAULTSOURCE-", "5b8e"],
    "vault's env secret": ["VAULTKEY-", "d7c2"],
    "an unimported module of the hunter's own package": ["HUNTERUNUSED-", "0a6f"],
    "the sharded counter's implementation": ["The sharded counter's implementation: ", "runs only in its own"],
}


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:
    return module_daemon_for(APP)


def _hunt(d: RunningDaemon, fn: str, **args: Any) -> Any:
    with d.client(admin=True) as c:
        out = c.call(f"hunter:{fn}", args)
    if isinstance(out, dict) and "pid" in out:
        assert out["pid"] == d.worker_pid("hunter"), "the escape did not reach the real os of the hunter's worker"
    return out


def test_the_vault_works_and_holds_its_secrets(daemon: RunningDaemon) -> None:
    with daemon.client(admin=True) as c:
        assert c.call("vault:secrets", {}) == {"VAULT_KEY": "VAULTKEY-d7c2", "VAULT_PASSED": "APPPASSED-9e27"}
        assert c.call("hunter:env", {}) == {}


def test_an_escaped_mount_finds_its_own_source_in_memory(daemon: RunningDaemon) -> None:
    assert _hunt(daemon, "scan", needles=[OWN])["found"] == {OWN[0]: True}


@pytest.mark.parametrize("what", sorted(FOREIGN))
def test_an_escaped_mount_finds_nothing_else_in_memory(daemon: RunningDaemon, what: str) -> None:
    needle = FOREIGN[what]
    assert _hunt(daemon, "scan", needles=[needle])["found"] == {needle[0]: False}, f"the hunter's heap holds {what}"


def test_an_escaped_mount_reads_its_own_files(daemon: RunningDaemon) -> None:
    out = _hunt(daemon, "read", path=str(APP / "hunter" / "hunting.py"))["outcome"]
    assert out.startswith("allowed: ") and "HUNTEROWN" in out


@pytest.mark.parametrize("path", [APP / "app.py", APP / "vault" / "component.py", APP / "hunter" / "unused.py",
                                  REPO / "components" / "sharded_counter" / "component.py",
                                  REPO / "components" / "sharded_counter" / "client.py"],
                         ids=["app", "vault", "unused", "counter-impl", "counter-client"])
def test_an_escaped_mount_cannot_read_other_code(daemon: RunningDaemon, path: Path) -> None:
    assert path.is_file()
    out = _hunt(daemon, "read", path=str(path))["outcome"]
    assert out.startswith("blocked: PermissionError"), out


def test_importing_a_module_outside_the_closure_says_why(daemon: RunningDaemon) -> None:
    with daemon.client(admin=True) as c, pytest.raises(BulkheadError) as err:
        c.call("hunter:import_unused", {"name": "unused"})
    assert "outside this mount's own code" in err.value.message
    assert "unused" in err.value.message


def test_the_neighbour_is_unchanged_after_the_hunt(daemon: RunningDaemon) -> None:
    pid = daemon.worker_pid("vault")
    _hunt(daemon, "scan", needles=list(FOREIGN.values()))
    with daemon.client(admin=True) as c:
        assert c.call("vault:secrets", {})["VAULT_KEY"] == "VAULTKEY-d7c2"
    assert daemon.worker_pid("vault") == pid
