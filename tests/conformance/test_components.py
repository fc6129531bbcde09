"""Conformance: every component package registered in the ``bulkhead.components`` entry-point group passes these.

The tests are parametrized over ``importlib.metadata.entry_points(group="bulkhead.components")``,
so a newly registered package (in ``pyproject.toml``, then ``pip install -e .``) is picked up
without editing this file.  For each package:

1. **Mounted twice, separate data.**  A generated app (``packages.APP_TEMPLATE``) mounts it as
   ``a`` and ``b``; it deploys, both mounts list the same functions, a write through ``a`` leaves
   documents in ``a``'s tables and none in ``b``'s (admin op ``data``), reads through ``b`` still
   see a fresh component, and the same write then works through ``b`` without touching ``a``.
   Which function writes and which reads it back is the package's entry of
   ``packages.CONFORMANCE_CALLS``; a registered package without one fails, asking for it.
2. **Foreign Ids are refused.**  The Id of a document of ``a`` handed to the app's ``ctx.db``
   (``get`` in a query; ``get``, ``patch``, ``replace``, ``delete`` in a mutation that first
   writes to the app's own table) raises IsolationError and nothing is written — the app's
   table and that document are unchanged.  Functions of the package that take an Id are listed
   in ``foreign_id_calls`` and are called on ``b`` with ``a``'s Id, with the same expectation.
3. **Its README example runs.**  The README convention (``components/<name>/README.md``, or
   README.md next to the package's ``__init__.py``):

   * The **example app** is the first fenced ```python block that contains ``app.use(``.  It is
     a whole app module as a user would save it as ``app.py``: imports included, ``app = App(...)``
     at top level, every table it uses declared.  The suite writes it as ``app.py`` of a temporary
     app directory and deploys it; it must mount this package (by registered name or import path).
   * The **example calls** are the first ```python block whose first line is ``# example calls``.
     The suite runs it in the test process against the deployed example app.  Each public
     function of the example app is bound to its own name and takes its arguments as keywords
     (``like(post="p1")`` runs mutation ``like`` as a client would), and ``c`` is a client
     (``c.mutation("like", post="p1")``, ``c.query(...)``, ``c.action(...)``).  The block should
     ``assert`` what the calls return; it must call every public function the example app defines.
   * A README without either block, or whose example app does not deploy, fails naming the
     README and what is missing.  Other python blocks (fragments) are not run.

One daemon per package serves checks 1 and 2; check 3 starts one of its own.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runtime.client import Client
from runtime.errors import BulkheadError, IsolationError
from runtime.testing import RunningDaemon, start_daemon

from .packages import Conformance, IdOf, Package, conformance_of, registered, write_app
from .readme import ExampleClient, example_of, run_calls

PACKAGES = registered()
FIRST_PARTY = {"sharded_counter", "rate_limiter", "aggregate"}
ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ROOT / "components"


def test_registered_packages_are_found() -> None:
    """The suite runs on the installed entry points: they must be the ones pyproject.toml declares."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["bulkhead.components"]
    installed = {p.name: p.module for p in PACKAGES}
    assert installed == declared, "the installed bulkhead.components differ from pyproject.toml: pip install -e ."
    assert set(installed) >= FIRST_PARTY
    for p in PACKAGES:
        assert p.directory.is_dir(), f"{p.name}: {p.module} does not import as a package"


def test_every_first_party_package_is_registered() -> None:
    """A package in components/ that is not in the entry-point group would escape this suite."""
    modules = {p.module for p in PACKAGES}
    for d in sorted(COMPONENTS.iterdir()):
        if (d / "__init__.py").is_file():
            assert f"components.{d.name}" in modules, (
                f"components/{d.name} is not registered: add `{d.name} = \"components.{d.name}\"` to "
                "[project.entry-points.\"bulkhead.components\"] in pyproject.toml and reinstall (pip install -e .)")


@pytest.fixture(scope="module", params=PACKAGES, ids=lambda p: p.name)
def pkg(request: pytest.FixtureRequest) -> Package:
    return request.param  # type: ignore[no-any-return]


# --- 1 and 2: the package mounted twice ------------------------------------------------------------------------


@dataclass
class Mounted:
    pkg: Package
    daemon: RunningDaemon
    mounts: dict[str, dict[str, Any]]
    """Each mount of the deployment by path, as ``status()["deployment"]["mounts"]`` lists it."""
    written: set[str] = field(default_factory=set)
    """Mounts the conformance ``write`` has run on."""


@pytest.fixture(scope="module")
def mounted(pkg: Package, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mounted]:
    """A daemon with the two-mount conformance app of ``pkg`` (stopped before the next package's starts)."""
    base = tmp_path_factory.mktemp(f"conformance_{pkg.name}")
    with start_daemon(base / "data", app=write_app(pkg, base / "app")) as d:
        mounts = {m["path"]: m for m in d.status()["deployment"]["mounts"]}
        yield Mounted(pkg, d, mounts)


def _functions(m: Mounted, path: str) -> dict[str, tuple[str, str]]:
    return {n: (f["kind"], f["visibility"]) for n, f in m.mounts[path]["functions"].items()}


def _checked_spec(m: Mounted) -> Conformance:
    """The package's CONFORMANCE_CALLS entry, its functions checked against the deployed manifest."""
    spec = conformance_of(m.pkg)
    fns = _functions(m, "a")
    for role, (fn, _args), kind in (("write", spec.write, "mutation"), ("read", spec.read, "query")):
        assert fn in fns, f"CONFORMANCE_CALLS[{m.pkg.name!r}].{role} names {fn!r}, which the component does not export"
        assert fns[fn][0] == kind, f"CONFORMANCE_CALLS[{m.pkg.name!r}].{role}: {fn!r} is a {fns[fn][0]}, not a {kind}"
    for fn, _args in spec.foreign_id_calls:
        assert fn in fns, f"CONFORMANCE_CALLS[{m.pkg.name!r}].foreign_id_calls names {fn!r}, which it does not export"
    return spec


def _read(admin: Client, mount: str, spec: Conformance) -> Any:
    fn, args = spec.read
    return admin.query(f"{mount}:{fn}", **args)


def _write(m: Mounted, admin: Client, mount: str, spec: Conformance) -> None:
    """Run the conformance write on ``mount`` (once per mount: writes need not be repeatable)."""
    if mount not in m.written:
        fn, args = spec.write
        admin.mutation(f"{mount}:{fn}", **args)
        m.written.add(mount)


def _documents(admin: Client, mount: str) -> dict[str, int]:
    """The mount's user tables (system tables left out) with their document counts."""
    return {t["table"]: t["documents"] for t in admin.admin("data", mount=mount) if not t["table"].startswith("_")}


def test_mounted_twice_with_separate_data(mounted: Mounted) -> None:
    m = mounted
    assert {"a", "b"} <= set(m.mounts), f"the deployment has mounts {sorted(m.mounts)}, not a and b"
    assert m.mounts["a"]["component"] == m.mounts["b"]["component"] == m.pkg.name
    assert m.mounts["a"]["path"] != m.mounts["b"]["path"] and m.mounts["a"]["pid"] != m.mounts["b"]["pid"]
    assert _functions(m, "a") == _functions(m, "b") != {}
    spec = _checked_spec(m)
    with m.daemon.client(admin=True) as admin:
        assert _read(admin, "b", spec) == spec.fresh, "CONFORMANCE_CALLS: `fresh` is not what a new mount reads"
        _write(m, admin, "a", spec)
        docs_a, docs_b = _documents(admin, "a"), _documents(admin, "b")
        assert docs_a, f"{m.pkg.name} declares no tables: nothing shows that its two mounts keep separate data"
        assert set(docs_a) == set(docs_b), "the two mounts of one component have different tables"
        assert sum(docs_a.values()) > 0, f"the write through a left no document in a's tables: {docs_a}"
        assert not any(docs_b.values()), f"a write through a left documents in b's tables: {docs_b}"
        assert _read(admin, "a", spec) == spec.written
        assert _read(admin, "b", spec) == spec.fresh, "b sees the write made through a"

        _write(m, admin, "b", spec)  # the component works through the second mount too, on its own data
        assert _read(admin, "b", spec) == spec.written
        assert _read(admin, "a", spec) == spec.written, "a write through b changed what a reads"
        assert _documents(admin, "a") == docs_a, "a write through b changed a's tables"
        assert sum(_documents(admin, "b").values()) > 0


def _a_document(admin: Client, table: str | None = None) -> tuple[str, dict[str, Any]]:
    """A document of mount ``a`` (of ``table``, else of its first table holding one): ``(table, doc)``."""
    for name, count in _documents(admin, "a").items():
        if count and table in (None, name):
            return name, admin.admin("data", mount="a", table=name, limit=1)[0]
    raise AssertionError(f"mount a has no document in {table or 'any table'} after the conformance write")


def _doc(admin: Client, mount: str, table: str, doc_id: str) -> dict[str, Any] | None:
    docs = admin.admin("data", mount=mount, table=table, limit=100_000)
    return next((d for d in docs if d["_id"] == doc_id), None)


def _with_id(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, IdOf):
        return ids[value.table]
    if isinstance(value, dict):
        return {k: _with_id(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_id(v, ids) for v in value]
    return value


def test_ids_of_another_mount_are_refused_and_nothing_is_written(mounted: Mounted) -> None:
    m = mounted
    spec = _checked_spec(m)
    with m.daemon.client(admin=True) as admin, m.daemon.client() as c:
        _write(m, admin, "a", spec)
        table, doc = _a_document(admin)
        foreign = doc["_id"]

        own = c.mutation("mark", note="own")  # the app's functions work with the app's own Ids
        c.mutation("use_doc", id=own, op="patch")
        assert c.query("get_doc", id=own)["note"] == "patched"
        marks = _documents(admin, "")

        with pytest.raises(IsolationError):
            c.query("get_doc", id=foreign)
        for op in ("get", "patch", "replace", "delete"):
            with pytest.raises(IsolationError):
                c.mutation("use_doc", id=foreign, op=op)
        assert _documents(admin, "") == marks, "a refused mutation kept its write to the app's table"
        assert _doc(admin, "a", table, foreign) == doc, f"a refused mutation changed a's document {foreign}"

        for fn, args in spec.foreign_id_calls:
            tables = {a.table for a in args.values() if isinstance(a, IdOf)}
            ids = {t: _a_document(admin, t)[1]["_id"] for t in tables}
            before = _documents(admin, "b")
            with pytest.raises(IsolationError):
                admin.call(f"b:{fn}", _with_id(args, ids))
            assert _documents(admin, "b") == before, f"b:{fn} refused a's Id but wrote to b's tables"


# --- 3: the README example ----------------------------------------------------------------------------------------


def test_readme_example_runs(pkg: Package, tmp_path: Path, daemon_for: Callable[..., RunningDaemon]) -> None:
    try:
        example = example_of(pkg.readme)
    except AssertionError as exc:  # the README does not follow the convention: say what is missing, no traceback
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    app_dir = tmp_path / "example"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(example.app.code)
    d = daemon_for()  # stopped when the test ends
    try:
        d.deploy(app_dir)
    except BulkheadError as exc:
        raise pytest.fail.Exception(f"{example.where(example.app)}: the README's example app does not deploy: "
                                    f"{type(exc).__name__}: {exc}", pytrace=False) from None
    mounts = d.status()["deployment"]["mounts"]
    assert any(mt["component"] in (pkg.name, pkg.module) for mt in mounts), (
        f"{example.where(example.app)}: the example app does not mount {pkg.name!r}")
    app = next(mt for mt in mounts if mt["path"] == "")
    public = {n: f["kind"] for n, f in app["functions"].items() if f["visibility"] == "public"}
    assert public, f"{example.where(example.app)}: the example app defines no public function to call"
    with d.client() as client:
        calls = ExampleClient(client)
        failure = run_calls(example, calls, public)
    if failure is not None:
        pytest.fail(f"{example.where(example.calls)}: the README's example calls failed:\n{failure}", pytrace=False)
    missing = sorted(set(public) - calls.called)
    if missing:
        pytest.fail(f"{example.where(example.calls)}: the example calls do not call {missing}: call every public "
                    "function the example app defines", pytrace=False)
