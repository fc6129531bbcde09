"""Isolation between mounts and call rules, through a real daemon (guarantees 3 and 4).

One real daemon serves the app of ``tests/apps/iso`` for the whole module:

    (app)                 table notes
    store   ./store       table notes, secrets; env {"K": "v"}; mounts store/inner (./inner, table notes)
    other   ./store       the same component again, env {"K": "w", "ONLY_OTHER": "1"}; mounts other/inner

Every check goes through real worker processes and real sockets; errors come
back as the typed exceptions of ``runtime.errors`` and are asserted on their
``code`` and the key words of their message.
"""

from __future__ import annotations

import base64
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from runtime.client import Client
from runtime.errors import (
    BulkheadError,
    CallRuleError,
    DeployError,
    IsolationError,
    LimitExceeded,
    NotFoundError,
    UserCodeError,
    ValidationError,
)
from runtime.testing import RunningDaemon

APP = Path(__file__).parent / "apps" / "iso"
SECRET_VAR = "ISO_DAEMON_SECRET"
SECRET_VALUE = "s3cret-of-the-daemon"


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:
    return module_daemon_for(APP, env={SECRET_VAR: SECRET_VALUE})


@pytest.fixture()
def client(daemon: RunningDaemon) -> Iterator[Client]:
    with daemon.client(timeout=60.0) as c:
        yield c


@pytest.fixture()
def admin(daemon: RunningDaemon) -> Iterator[Client]:
    with daemon.client(admin=True, timeout=60.0) as c:
        yield c


def tag() -> str:
    return "t" + uuid.uuid4().hex[:10]


def refused(exc_type: type[BulkheadError], code: str, fn: Callable[[], Any], *words: str) -> BulkheadError:
    """Run ``fn``; it must raise ``exc_type`` with ``code`` and every word of ``words`` in its message."""
    with pytest.raises(BulkheadError) as info:
        fn()
    err = info.value
    assert isinstance(err, exc_type), f"expected {exc_type.__name__}, got {type(err).__name__}: {err.message}"
    assert err.code == code, err.message
    for w in words:
        assert w in err.message, f"{w!r} not in {err.message!r}"
    return err


# --- the same table name in two mounts names two tables ------------------------------------------------


def test_same_table_name_in_app_and_components_are_different_tables(client: Client, admin: Client) -> None:
    a, s, o = tag(), tag(), tag()
    app_id = client.mutation("add_note", text=a)
    store_id = client.mutation("store_put", text=s)
    other_id = client.mutation("store_put", text=o, where="other")
    assert len({app_id, store_id, other_id}) == 3

    app_notes = client.query("notes")
    store_notes = client.query("store_texts")
    other_notes = client.query("store_texts", where="other")
    assert a in app_notes and s not in app_notes and o not in app_notes
    assert s in store_notes and a not in store_notes and o not in store_notes
    assert o in other_notes and a not in other_notes and s not in other_notes

    tables = {(t["mount"], t["table"]) for t in admin.admin("data")}
    assert {("", "notes"), ("store", "notes"), ("other", "notes"), ("store/inner", "notes"),
            ("other/inner", "notes")} <= tables
    # the admin view of each table holds only what was written through that mount
    assert [d["text"] for d in admin.admin("data", mount="store", table="notes") if d["text"] in (a, s, o)] == [s]
    assert [d["text"] for d in admin.admin("data", mount="", table="notes") if d["text"] in (a, s, o)] == [a]


# --- foreign Ids ------------------------------------------------------------------------------------------


def test_app_id_handed_to_a_component_is_refused(client: Client) -> None:
    app_id = client.mutation("add_note", text=tag())
    assert client.query("app_get", id=app_id)["_id"] == app_id  # the Id is good in its own mount
    refused(IsolationError, "isolation", lambda: client.query("store_get", id=app_id), "another mount")
    refused(IsolationError, "isolation", lambda: client.mutation("store_delete", id=app_id), "another mount")
    assert client.query("app_get", id=app_id) is not None  # still there


def test_component_id_is_refused_by_the_app(client: Client) -> None:
    t = tag()
    store_id = client.mutation("store_put", text=t)
    assert client.query("store_get", id=store_id)["text"] == t  # good inside its mount
    refused(IsolationError, "isolation", lambda: client.query("app_get", id=store_id), "another mount")
    refused(IsolationError, "isolation", lambda: client.mutation("app_patch", id=store_id, text="x"), "another mount")
    refused(IsolationError, "isolation", lambda: client.mutation("app_delete", id=store_id), "another mount")
    assert t in client.query("store_texts") and "x" not in client.query("store_texts")


def test_id_of_one_instance_is_refused_by_another_instance_of_the_same_component(client: Client) -> None:
    store_id = client.mutation("store_put", text=tag())
    refused(IsolationError, "isolation", lambda: client.query("store_get", id=store_id, where="other"),
            "another mount")


def test_malformed_id_is_a_validation_error(client: Client) -> None:
    store_id = client.mutation("store_put", text=tag())
    refused(ValidationError, "invalid_value", lambda: client.query("app_get", id="not-an-id"), "not a document Id")
    flipped = store_id[:-3] + ("a" if store_id[-3] != "a" else "b") + store_id[-2:]
    refused(ValidationError, "invalid_value", lambda: client.query("app_get", id=flipped), "not a document Id")


def test_a_mount_cannot_name_another_mounts_table_even_past_the_ctx_api(client: Client) -> None:
    client.mutation("store_put", text=tag())
    refused(NotFoundError, "not_found", lambda: client.query("raw_scan", table="secrets"), "secrets")
    # the same syscall on its own table name reads the app's table, never the store's
    assert sorted(d["text"] for d in client.query("raw_scan", table="notes")) == client.query("notes")


# --- calling the app back: only through a handle ------------------------------------------------------------


@pytest.mark.parametrize("path,name", [("", "record"), ("other", "put"), ("..", "record"), ("store", "put")])
def test_component_cannot_call_what_it_was_not_handed(client: Client, path: str, name: str) -> None:
    t = tag()
    err = refused(NotFoundError, "not_found", lambda: client.mutation("store_call_ref", path=path, name=name, tag=t))
    assert "store" in err.message
    assert t not in client.query("notes")
    assert f"before {t}" not in client.query("store_texts")


@pytest.mark.parametrize("path,name", [("", "record"), ("inner", "put")])
def test_component_cannot_mint_a_handle_for_a_function_it_does_not_own(client: Client, path: str, name: str) -> None:
    refused(NotFoundError, "not_found", lambda: client.mutation("store_mint_handle", path=path, name=name),
            "of its own")


def test_component_calls_the_app_with_a_handle_it_was_given(client: Client) -> None:
    t = tag()
    assert client.mutation("give_handle", tag=t) == f"app recorded {t}"
    assert t in client.query("notes")  # written by the app's function, in the app's table
    assert f"before {t}" in client.query("store_texts")
    assert t not in client.query("store_texts")


def test_a_handle_may_name_an_internal_function_of_its_owner(client: Client) -> None:
    t = tag()
    assert client.mutation("give_handle", tag=t, internal=True) == f"app recorded internally {t}"
    assert t in client.query("notes")


def test_handle_string_passed_through_a_client_works(client: Client) -> None:
    h = client.mutation("make_handle")
    assert isinstance(h, str) and h
    t = tag()
    assert client.mutation("pass_handle", handle=h, tag=t) == f"app recorded {t}"
    assert t in client.query("notes")


def _forgeries(h: str) -> list[tuple[str, str, type[BulkheadError], str]]:
    """Altered versions of a genuine handle: (label, handle, expected type, expected code)."""
    assert h.startswith("function://") and "." in h
    body, _, sig = h[len("function://"):].rpartition(".")
    flipped_sig = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    other_body = base64.urlsafe_b64encode(msgpack.packb(["", "app_internal"])).decode().rstrip("=")
    store_body = base64.urlsafe_b64encode(msgpack.packb(["store", "secret"])).decode().rstrip("=")
    return [
        ("signature flipped", f"function://{body}.{flipped_sig}", IsolationError, "isolation"),
        ("body swapped to an internal app function", f"function://{other_body}.{sig}", IsolationError, "isolation"),
        ("body swapped to a component's internal function", f"function://{store_body}.{sig}", IsolationError,
         "isolation"),
        ("signature removed", f"function://{body}", ValidationError, "invalid_value"),
        ("not a handle", "record", ValidationError, "invalid_value"),
    ]


def test_forged_or_altered_handles_are_refused(client: Client) -> None:
    genuine = client.mutation("make_handle")
    for label, forged, exc_type, code in _forgeries(genuine):
        t = tag()
        with pytest.raises(BulkheadError) as info:
            client.mutation("pass_handle", handle=forged, tag=t)
        err = info.value
        assert isinstance(err, exc_type) and err.code == code, f"{label}: {type(err).__name__} {err.message}"
        assert "handle" in err.message, f"{label}: {err.message}"
        assert t not in client.query("notes"), label
        assert f"before {t}" not in client.query("store_texts"), label  # the whole mutation rolled back
        assert t not in client.query("secret_texts"), label


# --- clients and the admin key -------------------------------------------------------------------------------


def test_component_functions_need_the_admin_key(client: Client, admin: Client) -> None:
    t = tag()
    refused(IsolationError, "isolation", lambda: client.call("store:put", {"text": t}), "admin")
    refused(IsolationError, "isolation", lambda: client.call("store/inner:put", {"text": t}), "admin")
    refused(IsolationError, "isolation", lambda: client.call("store:secret", {"tag": t}), "admin")
    assert t not in client.query("store_texts")

    store_id = admin.call("store:put", {"text": t})
    assert isinstance(store_id, str)
    assert t in client.query("store_texts")
    assert admin.call("store:texts", {}) == client.query("store_texts")
    assert isinstance(admin.call("store/inner:put", {"text": t}), str)
    assert t in [d["text"] for d in admin.admin("data", mount="store/inner", table="notes")]


def test_internal_app_functions_need_the_admin_key(client: Client, admin: Client) -> None:
    t = tag()
    refused(IsolationError, "isolation", lambda: client.call("app_internal", {"tag": t}), "internal")
    refused(IsolationError, "isolation", lambda: client.mutation("record_internal", tag=t), "internal")
    assert t not in client.query("notes")
    assert admin.call("app_internal", {"tag": t}) == f"internal {t}"
    assert t in client.query("notes")


def test_a_plain_client_cannot_use_admin_operations(client: Client) -> None:
    for op in ("status", "data", "logs"):
        refused(IsolationError, "isolation", lambda op=op: client.admin(op), "admin key")
    wrong = Client(client.url, "not-the-admin-key", 30.0)
    with wrong:
        refused(IsolationError, "isolation", lambda: wrong.call("store:put", {"text": "x"}), "admin")
        refused(IsolationError, "isolation", lambda: wrong.admin("status"), "admin key")


def test_parent_cannot_call_a_childs_internal_function(client: Client, admin: Client) -> None:
    t = tag()
    err = refused(NotFoundError, "not_found", lambda: client.mutation("call_child_internal", tag=t), "secret")
    assert "public" in err.message
    assert t not in client.query("secret_texts")
    # the admin key may (and the function works): the refusal above was the call rule, not a broken function
    assert admin.call("store:secret", {"tag": t}) == f"secret {t}"
    assert t in client.query("secret_texts")


def test_parent_cannot_call_a_grandchild(client: Client) -> None:
    t = tag()
    refused(NotFoundError, "not_found", lambda: client.mutation("call_grandchild", tag=t), "store/inner")


# --- call rules --------------------------------------------------------------------------------------------


def test_query_calling_a_mutation_is_a_call_rule_error(client: Client) -> None:
    """The ctx of a query has no run_mutation: the attempt must still be a clear call-rule error."""
    t = tag()
    refused(CallRuleError, "call_rule", lambda: client.query("query_runs_mutation", tag=t), "mutation")
    assert t not in client.query("notes")


def test_query_sending_a_mutation_call_is_refused_by_the_coordinator(client: Client) -> None:
    t = tag()
    refused(CallRuleError, "call_rule", lambda: client.query("query_sends_mutation_call", tag=t),
            "mutation", "query")
    assert t not in client.query("notes")


def test_query_calling_a_mutation_handle_is_refused(client: Client) -> None:
    h = client.mutation("make_handle")
    t = tag()
    refused(CallRuleError, "call_rule", lambda: client.query("query_calls_mutation_handle", handle=h, tag=t),
            "mutation")
    assert t not in client.query("notes")


def test_run_query_on_a_mutation_and_run_mutation_on_a_query_fail(client: Client) -> None:
    t = tag()
    refused(CallRuleError, "call_rule", lambda: client.mutation("run_query_on_mutation", tag=t),
            "is a mutation", "run_mutation")
    assert t not in client.query("notes")
    refused(CallRuleError, "call_rule", lambda: client.mutation("run_mutation_on_query"), "is a query", "run_query")


def test_client_calling_with_the_wrong_kind_is_refused(client: Client) -> None:
    t = tag()
    refused(CallRuleError, "call_rule", lambda: client.query("record", tag=t), "mutation")
    refused(CallRuleError, "call_rule", lambda: client.mutation("notes"), "query")
    assert t not in client.query("notes")


def test_nested_depth_limit(client: Client) -> None:
    t = tag()
    assert client.mutation("recurse", n=7, tag=t) == 7  # depth 8: allowed
    assert sum(1 for n in client.query("notes") if n.startswith(f"{t}:")) == 8
    t2 = tag()
    refused(CallRuleError, "call_rule", lambda: client.mutation("recurse", n=8, tag=t2), "depth", "8")
    assert not any(n.startswith(f"{t2}:") for n in client.query("notes"))  # nothing of the chain committed
    assert client.query("recurse_query", n=7) == 7
    refused(CallRuleError, "call_rule", lambda: client.query("recurse_query", n=8), "depth")


# --- env, module globals, tokens, worker environment -------------------------------------------------------


def test_each_mount_sees_only_its_own_env(client: Client) -> None:
    envs = client.query("envs")
    assert envs == {
        "app": {},
        "store": {"K": "v"},
        "store/inner": {"INNER": "1"},
        "other": {"K": "w", "ONLY_OTHER": "1"},
        "other/inner": {"INNER": "1"},
    }


def test_workers_do_not_inherit_the_daemons_environment(daemon: RunningDaemon) -> None:
    mounts = daemon.status()["deployment"]["mounts"]
    assert {m["path"] for m in mounts} == {"", "store", "other", "store/inner", "other/inner"}

    def environ(pid: int) -> dict[str, str]:
        raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        return dict(kv.split("=", 1) for kv in raw.split("\0") if "=" in kv)

    daemon_env = environ(daemon.pid)
    assert daemon_env.get(SECRET_VAR) == SECRET_VALUE  # the daemon does have it
    for m in mounts:
        try:
            env = environ(int(m["pid"]))
        except PermissionError:  # a non-dumpable worker hides its environ: even better
            continue
        assert SECRET_VAR not in env, f"worker of {m['path']!r} inherited the daemon's environment"
        leaked = {k for k in env if k in daemon_env and not k.startswith("PYTHON")}
        assert not leaked, f"worker of {m['path']!r} inherited {sorted(leaked)}"


def test_module_globals_are_per_mount(admin: Client) -> None:
    o1 = admin.call("other:bump", {})
    s1 = admin.call("store:bump", {})
    for _ in range(3):
        admin.call("store:bump", {})
    assert admin.call("store:bump", {}) == s1 + 4
    assert admin.call("other:bump", {}) == o1 + 1  # other's copy of the module never saw store's bumps


def test_capability_token_is_revoked_when_the_invocation_ends(admin: Client) -> None:
    assert admin.call("store:stash_token", {}) is True
    refused(IsolationError, "isolation", lambda: admin.call("store:use_stashed_token", {}), "token")


# --- a hung worker ------------------------------------------------------------------------------------------


def _store(status: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in status["deployment"]["mounts"] if m["path"] == "store")


def test_a_hung_component_worker_is_killed_and_the_others_keep_serving(daemon: RunningDaemon, client: Client,
                                                                         admin: Client) -> None:
    t = tag()
    client.mutation("store_put", text=t)
    pids = {m["path"]: m["pid"] for m in daemon.status()["deployment"]["mounts"]}
    err = refused(LimitExceeded, "limit_exceeded", lambda: admin.call("store:spin", {}), "spin", "store")
    assert "query_mutation_timeout_s" in err.message
    # the app and the other mounts serve at once, from the same workers
    assert t not in client.query("notes") and isinstance(client.mutation("add_note", text=t), str)
    assert isinstance(client.mutation("store_put", text=tag(), where="other"), str)
    after = {m["path"]: m["pid"] for m in daemon.status()["deployment"]["mounts"]}
    assert {k: v for k, v in after.items() if k != "store"} == {k: v for k, v in pids.items() if k != "store"}
    # the hung mount comes back in a new worker, its data intact
    assert t in client.query("store_texts")
    assert daemon.worker_pid("store") != pids["store"]


def test_daemon_stops_promptly_while_a_worker_restarts(tmp_path: Path) -> None:
    """SIGTERM during the restart of a killed worker: the daemon must still exit (not hang until SIGKILL)."""
    d = RunningDaemon(tmp_path / "data").start()
    try:
        d.deploy(APP)
        with d.client(admin=True, timeout=30.0) as a:
            refused(LimitExceeded, "limit_exceeded", lambda: a.call("store:spin", {}), "spin")
            deadline = time.monotonic() + 5.0
            while _store(a.admin("status"))["running"] and time.monotonic() < deadline:
                time.sleep(0.002)
            restarting = not _store(a.admin("status"))["running"]
        assert d.proc is not None
        started = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        try:
            d.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the daemon ignored SIGTERM for 5 s (a worker restart in progress: {restarting})")
        assert time.monotonic() - started < 5.0
    finally:
        d.kill()


# --- restricted imports ----------------------------------------------------------------------------------


@pytest.mark.parametrize("function,module", [
    ("import_os", "os"),
    ("import_subprocess", "subprocess"),
    ("import_storage", "runtime.storage"),
    ("import_storage_from_runtime", "runtime.storage"),
    ("import_dunder", "socket"),
])
def test_import_inside_a_function_fails_that_call(admin: Client, function: str, module: str) -> None:
    err = refused(UserCodeError, "user_error", lambda: admin.call(f"store:{function}", {}),
                  f"'{module}'", "not allowed")
    assert getattr(err, "exc_type", None) == "RestrictedImportError"
    assert admin.call("store:texts", {}) is not None  # the worker still serves


@pytest.mark.parametrize("which,module", [("os", "'os'"), ("subprocess", "'subprocess'"),
                                          ("storage", "'runtime.storage'")])
def test_import_at_module_top_refuses_the_deploy_and_changes_nothing(daemon: RunningDaemon, client: Client,
                                                                      which: str, module: str) -> None:
    before = daemon.status()["deployment"]
    t = tag()
    client.mutation("add_note", text=t)
    try:
        with pytest.raises(BulkheadError) as info:
            daemon.deploy(APP / "refused" / f"{which}_app.py")
        err = info.value
        assert isinstance(err, DeployError) and err.code == "deploy_refused", f"{type(err).__name__}: {err.message}"
        assert module in err.message and "not allowed" in err.message
        assert "evil" in err.message  # names the mount
        after = daemon.status()["deployment"]
        assert after["app"] == before["app"]
        assert {m["path"]: m["pid"] for m in after["mounts"]} == {m["path"]: m["pid"] for m in before["mounts"]}
        assert "evil" not in {m["path"] for m in after["mounts"]}
        assert t in client.query("notes")  # the old code still serves, data intact
        with pytest.raises(NotFoundError):
            client.query("hello")
    finally:
        if daemon.status()["deployment"].get("app") != before["app"]:
            daemon.deploy(APP)  # a wrongly accepted deploy must not break the other tests
