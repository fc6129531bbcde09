"""The registered component packages, the calls the suite makes on each, and the app that mounts one twice.

A package is found through ``importlib.metadata.entry_points(group="bulkhead.components")``,
so registering it in ``pyproject.toml`` (and reinstalling) adds it to the suite.  What the
suite cannot know about a package is which of its functions writes and which reads that
write back: that is one entry of ``CONFORMANCE_CALLS``, and a registered package without
one fails its tests asking for it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUITE = "tests/conformance/packages.py"


@dataclass(frozen=True)
class Package:
    """One entry point of the ``bulkhead.components`` group."""

    name: str
    """The registered name (``app.use(name, ...)``)."""
    module: str
    """The import path it names (``components.sharded_counter``)."""

    @property
    def directory(self) -> Path:
        """Where the package's files are (its README among them)."""
        mod = importlib.import_module(self.module)
        assert mod.__file__ is not None, f"{self.module} is not a package with files"
        return Path(mod.__file__).parent

    @property
    def readme(self) -> Path:
        return self.directory / "README.md"


def registered() -> list[Package]:
    """Every package of the ``bulkhead.components`` entry-point group, by name."""
    eps = importlib.metadata.entry_points(group="bulkhead.components")
    return sorted((Package(ep.name, ep.value) for ep in eps), key=lambda p: p.name)


@dataclass(frozen=True)
class IdOf:
    """In ``foreign_id_calls``: the Id of a document of this table of the *other* mount."""

    table: str


@dataclass(frozen=True)
class Conformance:
    """What the suite calls on a mount of one package (every call goes ``mount:function`` with the admin key)."""

    write: tuple[str, dict[str, Any]]
    """A mutation and its arguments that writes at least one document into the mount's tables (run once a mount)."""
    read: tuple[str, dict[str, Any]]
    """A query and its arguments whose answer shows whether ``write`` ran on that mount."""
    fresh: Any
    """``read``'s answer on a mount nothing was written through."""
    written: Any
    """``read``'s answer after ``write`` ran once on that mount."""
    foreign_id_calls: tuple[tuple[str, dict[str, Any]], ...] = field(default=())
    """Functions that take a document Id, with ``IdOf(table)`` where the Id goes: the suite calls them on
    mount ``b`` with an Id of mount ``a``'s table and expects IsolationError, nothing written."""


_WINDOW = {"kind": "fixed window", "rate": 5, "period": 1e9, "start": 0}  # no refill during a test run

CONFORMANCE_CALLS: dict[str, Conformance] = {
    "sharded_counter": Conformance(
        write=("add", {"name": "conformance", "count": 2}),
        read=("count", {"name": "conformance"}),
        fresh=0,
        written=2,
    ),
    "rate_limiter": Conformance(
        write=("limit", {"name": "conformance", "config": _WINDOW, "key": "k"}),
        read=("check", {"name": "conformance", "config": _WINDOW, "key": "k"}),
        fresh={"ok": True, "retry_after": None, "remaining": 4.0},
        written={"ok": True, "retry_after": None, "remaining": 3.0},
    ),
    "aggregate": Conformance(
        write=("insert", {"key": ["conformance", 1], "id": "item-1", "sum_value": 5}),
        read=("aggregate_between", {}),
        fresh={"count": 0, "sum": 0},
        written={"count": 1, "sum": 5},
    ),
    "action_retrier": Conformance(
        write=("start", {"handle": None, "args": {"value": "conformance"}, "options": {}}),
        read=("count_runs", {}),
        fresh=0,
        written=1,
        foreign_id_calls=(("status", {"run_id": IdOf("runs")}), ("cancel", {"run_id": IdOf("runs")}),
                          ("cleanup", {"run_id": IdOf("runs")})),
    ),
    "action_cache": Conformance(
        write=("put", {"name": "conformance", "args": {"k": 1}, "value": 5}),
        read=("count", {"name": "conformance"}),
        fresh=0,
        written=1,
        foreign_id_calls=(("release", {"fill_id": IdOf("entries")}),),
    ),
    "workpool": Conformance(
        write=("set_parallelism", {"max_parallelism": 5}),
        read=("get_config", {}),
        fresh={"max_parallelism": 10, "status_ttl_s": 86400.0, "log_level": "REPORT"},
        written={"max_parallelism": 5, "status_ttl_s": 86400.0, "log_level": "REPORT"},
        foreign_id_calls=(("status", {"id": IdOf("config")}), ("cancel", {"id": IdOf("config")})),
    ),
}


def conformance_of(pkg: Package) -> Conformance:
    """The package's entry of ``CONFORMANCE_CALLS``; a failure naming what to add if it has none."""
    spec = CONFORMANCE_CALLS.get(pkg.name)
    if spec is None:
        raise AssertionError(
            f"component package {pkg.name!r} ({pkg.module}) is registered in bulkhead.components but has no "
            f"entry in CONFORMANCE_CALLS: add {pkg.name!r} to CONFORMANCE_CALLS in {SUITE} (a mutation that writes "
            "a document, a query that reads it back, and the query's answer before and after the write)"
        )
    return spec


APP_TEMPLATE = '''\
"""Generated by {suite}: the component {name!r} mounted twice, as a and b, and app functions that use Ids."""

from typing import Any

from pydantic import BaseModel

from runtime import App, MutationCtx, QueryCtx

app = App()
a = app.use({name!r}, name="a")
b = app.use({name!r}, name="b")


@app.table("marks")
class Mark(BaseModel):
    note: str


@app.mutation
async def mark(ctx: MutationCtx, note: str) -> str:
    return await ctx.db.insert("marks", {{"note": note}})


@app.query
async def get_doc(ctx: QueryCtx, id: str) -> dict[str, Any] | None:
    return await ctx.db.get(id)


@app.mutation
async def use_doc(ctx: MutationCtx, id: str, op: str) -> None:
    """Write a mark, then use the document ``id`` (get, patch, replace, delete): a refusal rolls back both."""
    await ctx.db.insert("marks", {{"note": op}})
    if op == "get":
        await ctx.db.get(id)
    elif op == "patch":
        await ctx.db.patch(id, {{"note": "patched"}})
    elif op == "replace":
        await ctx.db.replace(id, {{"note": "replaced"}})
    elif op == "delete":
        await ctx.db.delete(id)
    else:
        raise ValueError(op)
'''


def write_app(pkg: Package, directory: Path) -> Path:
    """Write the two-mount conformance app of ``pkg`` as ``directory/app.py``; return the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "app.py").write_text(APP_TEMPLATE.format(suite=SUITE, name=pkg.name))
    return directory
