"""Validation at every boundary, schema checks on writes and deploys, size limits (guarantees 6 and 10).

A real daemon serves ``tests/apps/val`` (an app with a ``people`` table and a
typed child component) for most of the module, with the argument and return
size limits lowered to 200 kB so that oversized values stay cheap to send.
The schema-migration tests each start a fresh daemon and deploy the versions
under ``tests/apps/val/migrate/``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.client import Client
from runtime.errors import BulkheadError, DeployError, LimitExceeded, ValidationError
from runtime.testing import RunningDaemon, start_daemon

APP = Path(__file__).parent / "apps" / "val"
MIGRATE = APP / "migrate"
SIZE_LIMIT = 200_000
ENV = {"BULKHEAD_ARGUMENTS_SIZE_BYTES": str(SIZE_LIMIT), "BULKHEAD_RETURN_SIZE_BYTES": str(SIZE_LIMIT)}


@pytest.fixture(scope="module")
def daemon(module_daemon_for) -> RunningDaemon:
    return module_daemon_for(APP, env=ENV)


@pytest.fixture()
def client(daemon: RunningDaemon) -> Iterator[Client]:
    with daemon.client(timeout=30.0) as c:
        yield c


def name() -> str:
    return "n" + uuid.uuid4().hex[:10]


def raises(exc_type: type[BulkheadError], code: str, fn: Callable[[], Any], *words: str) -> BulkheadError:
    with pytest.raises(BulkheadError) as info:
        fn()
    err = info.value
    assert isinstance(err, exc_type), f"expected {exc_type.__name__}, got {type(err).__name__}: {err.message}"
    assert err.code == code, err.message
    for w in words:
        assert w in err.message, f"{w!r} not in {err.message!r}"
    return err


def settle(d: RunningDaemon, old_pid: int, timeout_s: float = 10.0) -> None:
    """After a call that may have got the app's worker killed: wait until the app is served again
    (a new worker running, or the old one still running 0.5 s later)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        app = next(m for m in d.status()["deployment"]["mounts"] if m["path"] == "")
        if app["running"] and (app["pid"] != old_pid or time.monotonic() - started > 0.5):
            return
        time.sleep(0.02)


def people_named(client: Client, n: str) -> list[dict[str, Any]]:
    return [p for p in client.query("people") if p["name"] == n]


# --- arguments ------------------------------------------------------------------------------------------


def test_wrong_argument_types_are_all_reported_by_name(client: Client) -> None:
    n = name()
    err = raises(ValidationError, "invalid_value", lambda: client.mutation("register", name=5, age="x", tags="no"),
                 "register", "name", "age", "tags")
    issues = err.issues  # type: ignore[attr-defined]
    assert [i.split(":")[0] for i in issues] == ["name", "age", "tags"]
    assert people_named(client, n) == []


def test_argument_types_are_strict(client: Client) -> None:
    raises(ValidationError, "invalid_value", lambda: client.query("greet", name="a", times="2"), "times")
    raises(ValidationError, "invalid_value", lambda: client.query("greet", name="a", times=True), "times")
    raises(ValidationError, "invalid_value", lambda: client.query("greet", name="a", times=2.0), "times")
    assert client.query("greet", name="a", times=2) == "hi a hi a"


def test_bad_element_inside_a_list_is_reported_by_path(client: Client) -> None:
    err = raises(ValidationError, "invalid_value",
                 lambda: client.mutation("register", name=name(), age=1, tags=["ok", 3]), "tags.1")
    assert err.issues == ["tags.1: Input should be a valid string"]  # type: ignore[attr-defined]


def test_unknown_argument_is_refused(client: Client) -> None:
    n = name()
    raises(ValidationError, "invalid_value", lambda: client.mutation("register", name=n, age=1, tags=[], extra=1),
           "extra")
    assert people_named(client, n) == []


def test_missing_argument_is_refused_and_defaults_apply(client: Client) -> None:
    n = name()
    err = raises(ValidationError, "invalid_value", lambda: client.mutation("register", name=n, tags=[]), "age")
    assert "required" in err.message.lower() or "missing" in err.message.lower()
    assert people_named(client, n) == []
    assert client.query("greet", name="b") == "hi b"  # an argument with a default may be left out


@pytest.mark.parametrize("what", ["str", "none", "float", "list", "bool"])
def test_wrong_return_type_is_a_validation_error(client: Client, what: str) -> None:
    raises(ValidationError, "invalid_value", lambda: client.query("bad_return", what=what), "bad_return", "return")


def test_wrong_nested_return_value_is_reported_by_path(client: Client) -> None:
    raises(ValidationError, "invalid_value", lambda: client.query("bad_nested_return"), "return.b")


def test_arguments_are_validated_in_the_callees_namespace(client: Client) -> None:
    assert client.mutation("child_double", n=4) == 8
    err = raises(ValidationError, "invalid_value", lambda: client.mutation("child_bad_arg"), "double", "n", "m")
    assert sorted(i.split(":")[0] for i in err.issues) == ["m", "n"]  # type: ignore[attr-defined]
    raises(ValidationError, "invalid_value", lambda: client.query("child_bad_return"), "liar", "return")


# --- writes against the table's schema ------------------------------------------------------------------


def test_insert_breaking_the_schema_is_refused_and_writes_nothing(client: Client) -> None:
    n = name()
    raises(ValidationError, "invalid_value", lambda: client.mutation("insert_raw", doc={"name": n, "age": "old"}),
           "people", "age")
    raises(ValidationError, "invalid_value", lambda: client.mutation("insert_raw", doc={"name": n}), "age")
    assert people_named(client, n) == []


def test_the_coordinator_validates_writes_too(client: Client) -> None:
    """The worker is untrusted (restricted globals are never the only layer): a write sent past
    ctx.db's own check must still be validated against the table's schema by the coordinator."""
    n = name()
    assert isinstance(client.mutation("insert_unchecked", doc={"name": n, "age": 1, "tags": []}), str)
    m = name()
    with pytest.raises(BulkheadError) as info:
        client.mutation("insert_unchecked", doc={"name": m, "age": "old"})
    assert isinstance(info.value, ValidationError), f"{type(info.value).__name__}: {info.value.message}"
    assert "age" in info.value.message
    assert people_named(client, m) == []


def test_a_bad_write_rolls_back_the_good_writes_of_the_same_mutation(client: Client) -> None:
    n = name()
    raises(ValidationError, "invalid_value", lambda: client.mutation("insert_good_then_bad", name=n), "age")
    assert people_named(client, n) == []


def test_patch_and_replace_breaking_the_schema_change_nothing(client: Client) -> None:
    n = name()
    pid = client.mutation("register", name=n, age=3, tags=["a"])
    before = people_named(client, n)
    raises(ValidationError, "invalid_value", lambda: client.mutation("patch_raw", id=pid, fields={"age": "x"}), "age")
    raises(ValidationError, "invalid_value", lambda: client.mutation("replace_raw", id=pid, doc={"name": n}), "age")
    assert people_named(client, n) == before
    client.mutation("patch_raw", id=pid, fields={"age": 4})  # a valid patch goes through
    assert people_named(client, n)[0]["age"] == 4


def test_stored_documents_hold_only_schema_fields(client: Client) -> None:
    n = name()
    try:
        client.mutation("insert_raw", doc={"name": n, "age": 1, "bogus": 1, "_creation_time": 0.0})
    except ValidationError:
        assert people_named(client, n) == []  # refusing unknown fields is fine too
        return
    [doc] = people_named(client, n)
    assert set(doc) == {"name", "age", "tags", "_id", "_creation_time"}
    assert doc["_creation_time"] > 0.0 and doc["tags"] == []


# --- sizes --------------------------------------------------------------------------------------------------


def test_argument_under_the_size_limit_is_accepted(client: Client) -> None:
    assert client.query("size", blob="x" * (SIZE_LIMIT // 2)) == SIZE_LIMIT // 2


def test_argument_over_the_size_limit_is_refused_naming_the_limit(client: Client) -> None:
    """Above arguments_size_bytes but below the frame cap (limit + envelope room)."""
    with pytest.raises(BulkheadError) as info:
        client.query("size", blob="x" * (SIZE_LIMIT + 50_000))
    err = info.value
    assert isinstance(err, (LimitExceeded, ValidationError)), f"{type(err).__name__}: {err.message}"
    assert "arguments_size_bytes" in err.message


def test_argument_far_over_the_limit_gets_an_error_not_a_timeout(daemon: RunningDaemon) -> None:
    """Above the frame cap: the caller must get a clear error back, not silence until its timeout."""
    with daemon.client(timeout=3.0) as c:
        started = time.monotonic()
        try:
            c.query("size", blob="x" * (5 * SIZE_LIMIT))
        except BulkheadError as err:
            assert err.code in ("limit_exceeded", "invalid_value", "protocol"), err.message
            assert "arguments_size_bytes" in err.message or "bytes" in err.message
        except TimeoutError as exc:
            pytest.fail(f"no reply for an oversized argument, only the client's timeout: {exc}")
        else:
            pytest.fail("an argument 5x over arguments_size_bytes was accepted")
        assert time.monotonic() - started < 2.5
        assert c.query("greet", name="c") == "hi c"


def test_argument_over_the_default_limit_is_refused_quickly(daemon: RunningDaemon) -> None:
    """17 MiB against the default arguments_size_bytes (16 MiB): an error at once, not a silent disconnect."""
    with daemon.client(timeout=5.0) as c:
        started = time.monotonic()
        with pytest.raises(BulkheadError) as info:
            c.query("size", blob="x" * (17 * 1024 * 1024))
        assert isinstance(info.value, LimitExceeded), f"{type(info.value).__name__}: {info.value.message}"
        assert "arguments_size_bytes" in info.value.message
        assert time.monotonic() - started < 4.0
        assert c.query("greet", name="d") == "hi d"


@pytest.mark.parametrize("size", [SIZE_LIMIT + 50_000, 5 * SIZE_LIMIT], ids=["over_limit", "over_frame_cap"])
def test_nested_call_argument_over_the_limit_is_refused_without_killing_the_caller(daemon: RunningDaemon,
                                                                                    client: Client, size: int) -> None:
    app_pid = daemon.worker_pid("")
    assert client.mutation("child_big_arg", n=1000) == 1000
    try:
        with pytest.raises(BulkheadError) as info:
            client.mutation("child_big_arg", n=size)
    finally:
        settle(daemon, app_pid)
    err = info.value
    assert isinstance(err, (LimitExceeded, ValidationError)), f"{type(err).__name__}: {err.message}"
    assert "arguments_size_bytes" in err.message
    assert daemon.worker_pid("") == app_pid, "the caller's worker was killed"


@pytest.mark.parametrize("times", [2, 3], ids=["over_limit", "over_frame_cap"])
def test_return_value_over_the_size_limit_is_refused_naming_the_limit(daemon: RunningDaemon, client: Client,
                                                                       times: int) -> None:
    blob = "y" * (SIZE_LIMIT // 2 + 10_000)  # the argument is under the limit; the value returned is not
    assert len(client.query("repeat", blob=blob, times=1)) == len(blob)
    app_pid = daemon.worker_pid("")
    try:
        with pytest.raises(BulkheadError) as info:
            client.query("repeat", blob=blob, times=times)
    finally:
        settle(daemon, app_pid)
    err = info.value
    assert isinstance(err, (LimitExceeded, ValidationError)), f"{type(err).__name__}: {err.message}"
    assert "return_size_bytes" in err.message
    assert daemon.worker_pid("") == app_pid, "the worker was killed"


# --- deploys against stored data -------------------------------------------------------------------------------


def _seed_v1(d: RunningDaemon) -> tuple[Client, list[dict[str, Any]]]:
    c = d.client(timeout=30.0)
    for n, age in (("ann", 30), ("bob", 20), ("cy", 40)):
        c.mutation("add", name=n, age=age)
    return c, c.query("people")


def _snapshot(d: RunningDaemon) -> tuple[dict[str, Any], dict[str, int], list[dict[str, Any]]]:
    dep = d.status()["deployment"]
    with d.client(admin=True) as a:
        tables = a.admin("data")
    return ({m["path"]: m["pid"] for m in dep["mounts"]}, {t["table"]: t["documents"] for t in tables},
            [t["indexes"] for t in tables])


@pytest.mark.parametrize("version,field", [("v2_bad_type", "age"), ("v2_bad_required", "email")])
def test_deploy_whose_schema_mismatches_stored_data_is_refused_and_changes_nothing(
        tmp_path: Path, version: str, field: str) -> None:
    with start_daemon(tmp_path / "data", app=MIGRATE / "v1") as d:
        c, people = _seed_v1(d)
        with c:
            before = _snapshot(d)
            err = raises(DeployError, "deploy_refused", lambda: d.deploy(MIGRATE / version), "people", field,
                         "nothing was changed")
            assert len(err.issues) == 3  # type: ignore[attr-defined]  # one per stored document
            assert _snapshot(d) == before  # same workers, same tables and indexes (no by_age)
            assert c.query("version") == 1  # the old code still serves
            assert c.query("people") == people  # data intact
            c.mutation("add", name="dee", age=50)  # and still writes with the old schema
            assert len(c.query("people")) == 4


def test_compatible_deploy_succeeds_and_backfills_the_new_index(tmp_path: Path) -> None:
    with start_daemon(tmp_path / "data", app=MIGRATE / "v1") as d:
        c, people = _seed_v1(d)
        with c:
            raises(DeployError, "deploy_refused", lambda: d.deploy(MIGRATE / "v2_bad_type"))
            out = d.deploy(MIGRATE / "v2_good")
            assert out["deployed"] is True
            assert c.query("version") == 2
            # the new index is usable at once and holds the documents written before it existed
            assert c.query("names_by_age", min_age=25) == ["ann", "cy"]
            assert c.query("names_by_age", min_age=0) == ["bob", "ann", "cy"]
            assert c.query("people") == people  # stored documents untouched
            c.mutation("add", name="dee", age=50, email="d@example.org")
            assert c.query("names_by_age", min_age=45) == ["dee"]
            with d.client(admin=True) as a:
                [table] = a.admin("data")
            assert table["indexes"]["by_age"] == ["age"]


def test_a_write_landing_during_the_deploy_check_cannot_slip_past_it(tmp_path: Path) -> None:
    """The check of stored documents must cover every document the new code will serve.

    Version 2's validator holds the check open for 2.5 s (the first time it
    runs); meanwhile version 1, still serving, stores a value version 2 forbids.
    Either the deploy is refused, or it is accepted and no such document exists.
    """
    with start_daemon(tmp_path / "data", app=MIGRATE / "race_v1") as d, d.client(timeout=30.0) as c:
        c.mutation("fill", n=3)
        outcome: dict[str, Any] = {}

        def deploy() -> None:
            try:
                outcome["ok"] = d.deploy(MIGRATE / "race_v2")["deployed"]
            except BulkheadError as exc:
                outcome["error"] = exc

        th = threading.Thread(target=deploy)
        th.start()
        time.sleep(1.0)  # the new worker has loaded (~0.3 s) and the check is under way
        landed_during_check = th.is_alive() and c.mutation("put_str", s="late") == 1
        th.join(60.0)
        assert not th.is_alive()
        if "error" in outcome:
            err = outcome["error"]
            assert isinstance(err, DeployError) and "items" in err.message, err.message
            assert c.query("str_values") == (["late"] if landed_during_check else [])  # old code serves
            return
        assert landed_during_check, "the deploy finished before the racing write: the test proves nothing"
        stored = c.query("str_values")
        assert stored == [], f"deploy accepted while the table holds {stored!r}, which its schema forbids"


@pytest.mark.parametrize("op,args,field", [
    ("data", {"limit": "ten"}, "limit"),
    ("logs", {"after": -1}, "after"),
    ("clock", {"advance": "soon"}, "advance"),
    ("deploy", {"app": {"module": "x"}}, "app"),
    ("status", {"verbose": True}, "verbose"),
])
def test_admin_ops_refuse_malformed_arguments_naming_the_field(daemon: RunningDaemon, op: str,
                                                              args: dict[str, Any], field: str) -> None:
    before = daemon.status()["deployment"]
    with daemon.client(admin=True) as a, pytest.raises(ValidationError, match=f"admin op '{op}'.*{field}"):
        a.admin(op, **args)
    assert daemon.status()["deployment"] == before  # nothing changed (a deploy was not attempted)
