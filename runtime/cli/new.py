"""``bulkhead new app NAME`` and ``bulkhead new component NAME``: scaffolds that deploy and pass their test.

Each scaffold has a table with an index, a query, a mutation, a client wrapper,
a README and a test that starts a real daemon through :mod:`runtime.testing`::

    NAME/                          bulkhead new app NAME
    ├── app.py                     table ``notes``, mutation ``post``, query ``by_author``
    ├── client.py                  a typed wrapper of :class:`runtime.client.Client` for the app's functions
    ├── test_app.py                deploys app.py on a daemon in a temp dir, drives it through the wrapper
    └── README.md

    NAME/                          bulkhead new component NAME
    ├── pyproject.toml             registers NAME in the ``bulkhead.components`` entry-point group
    ├── NAME/__init__.py           exports the client wrapper only
    ├── NAME/component.py          table ``tallies``, mutation ``add``, query ``total`` (runs in its own workers)
    ├── NAME/client.py             the wrapper an app imports: calls the mount through ``ctx.run_*``
    ├── example_app.py             an app that mounts NAME twice
    ├── tests/test_NAME.py         deploys example_app.py, checks both mounts keep their own data
    └── README.md

The templates are Python strings here (``string.Template``, ``$name`` style), so
the scaffold needs no package data.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

import click

_APP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_COMPONENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def camel(name: str) -> str:
    """``my_app`` / ``my-app`` as ``MyApp`` (the wrapper's class name)."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_]", name) if part)


# --- the app ---------------------------------------------------------------------------------------------

APP_PY = '''\
"""$name: a Bulkhead app (scaffolded by `bulkhead new app`).

Deploy it with `bulkhead dev .` from this directory; `client.py` calls it from Python.
"""

from pydantic import BaseModel
from runtime import App, ComponentError, MutationCtx, QueryCtx

app = App()


@app.table("notes", indexes={"by_author": ["author"]})
class Note(BaseModel):
    author: str
    text: str


@app.mutation
async def post(ctx: MutationCtx, author: str, text: str) -> str:
    """Store a note; return its Id.

    An empty text is refused with ComponentError {"kind": "EmptyText", ...}.
    """
    if not text.strip():
        raise ComponentError({"kind": "EmptyText", "author": author})
    return await ctx.db.insert("notes", {"author": author, "text": text})


@app.query
async def by_author(ctx: QueryCtx, author: str) -> list[str]:
    """The texts of an author's notes, oldest first."""
    notes = await (
        ctx.db.query("notes")
        .with_index("by_author", lambda q: q.eq("author", author))
        .collect()
    )
    return [n["text"] for n in notes]
'''

APP_CLIENT_PY = '''\
"""A typed wrapper of `runtime.client.Client` for this app's public functions."""

from runtime.client import Client


class ${camel}Client:
    """One method per public function of app.py.

    ``${camel}Client(Client.connect(data_dir=".bulkhead"))``
    """

    def __init__(self, client: Client) -> None:
        self.client = client

    def post(self, author: str, text: str) -> str:
        """Store a note; return its Id."""
        note_id: str = self.client.mutation("post", author=author, text=text)
        return note_id

    def by_author(self, author: str) -> list[str]:
        """The texts of an author's notes, oldest first."""
        texts: list[str] = self.client.query("by_author", author=author)
        return texts
'''

APP_TEST_PY = '''\
"""The app on a real daemon in a temp dir: `python -m pytest test_app.py`."""

from pathlib import Path

import pytest
from runtime import ComponentError, ValidationError
from runtime.testing import start_daemon

from client import ${camel}Client

APP = Path(__file__).parent / "app.py"


def test_post_then_read_back(tmp_path: Path) -> None:
    with start_daemon(tmp_path / "data", app=APP) as daemon, daemon.client() as c:
        app = ${camel}Client(c)
        assert app.by_author("ann") == []
        app.post("ann", "hello")
        app.post("bob", "hi")
        app.post("ann", "again")
        assert app.by_author("ann") == ["hello", "again"]


def test_bad_input_is_refused(tmp_path: Path) -> None:
    with start_daemon(tmp_path / "data", app=APP) as daemon, daemon.client() as c:
        app = ${camel}Client(c)
        with pytest.raises(ComponentError) as err:
            app.post("ann", "  ")
        assert err.value.data == {"kind": "EmptyText", "author": "ann"}
        with pytest.raises(ValidationError, match="text"):
            c.mutation("post", author="ann", text=5)
        assert app.by_author("ann") == []
'''

APP_README = '''\
# $name

A Bulkhead app scaffolded by `bulkhead new app $name`.

| file | what it is |
| --- | --- |
| `app.py` | the app: table `notes` (index `by_author`), mutation `post`, query `by_author` |
| `client.py` | `${camel}Client`, a typed wrapper of `runtime.client.Client` for the app's functions |
| `test_app.py` | deploys `app.py` on a real daemon in a temp dir and drives it through the wrapper |

```bash
bulkhead dev .                                          # daemon in ./.bulkhead, deploy, redeploy on change
bulkhead run post '{"author": "ann", "text": "hello"}'  # the new note's Id
bulkhead run by_author '{"author": "ann"}'              # ["hello"]
python -m pytest test_app.py                            # the scaffold's test
```
'''

# --- the component ------------------------------------------------------------------------------------

COMPONENT_INIT_PY = '''\
"""$name: a Bulkhead component.  An app imports the client wrapper only::

    from $name import $camel
    tally = $camel(app.use("$name", name="scores"))

The implementation (`component.py`) runs only in the mount's own workers.
"""

from $name.client import $camel

__all__ = ["$camel"]
'''

COMPONENT_PY = '''\
"""The implementation of $name: runs only in its own workers, with its own tables."""

from typing import Any

from pydantic import BaseModel
from runtime import Component, MutationCtx, QueryCtx, ValidationError

component = Component("$name")


@component.table("tallies", indexes={"by_key": ["key"]})
class TallyRow(BaseModel):
    key: str
    total: int


async def by_key(ctx: QueryCtx, key: str) -> dict[str, Any] | None:
    """The tally of ``key``, or None (a helper: a mutation's ctx is a QueryCtx too)."""
    tallies = ctx.db.query("tallies")
    return await tallies.with_index("by_key", lambda q: q.eq("key", key)).unique()


@component.mutation
async def add(ctx: MutationCtx, key: str, amount: int = 1) -> int:
    """Add ``amount`` to ``key``'s total; return it.  A negative amount is refused."""
    if amount < 0:
        raise ValidationError(f"amount must be >= 0, not {amount}")
    row = await by_key(ctx, key)
    if row is None:
        await ctx.db.insert("tallies", {"key": key, "total": amount})
        return amount
    await ctx.db.patch(row["_id"], {"total": row["total"] + amount})
    return int(row["total"]) + amount


@component.query
async def total(ctx: QueryCtx, key: str) -> int:
    """``key``'s total (0 if nothing was added)."""
    row = await by_key(ctx, key)
    return int(row["total"]) if row else 0
'''

COMPONENT_CLIENT_PY = '''\
"""``$camel``: the client wrapper an app (or another component) imports.

It calls the mount's functions and never imports the implementation.
"""

from runtime import MountRef, RunMutationCtx, RunQueryCtx


class $camel:
    """Typed calls into one mounted ``$name``."""

    def __init__(self, mount: MountRef) -> None:
        self.mount = mount

    async def add(self, ctx: RunMutationCtx, key: str, amount: int = 1) -> int:
        """Add ``amount`` to ``key``; return the new total."""
        value: int = await ctx.run_mutation(self.mount.add, key=key, amount=amount)
        return value

    async def total(self, ctx: RunQueryCtx, key: str) -> int:
        """``key``'s total."""
        value: int = await ctx.run_query(self.mount.total, key=key)
        return value
'''

COMPONENT_EXAMPLE_APP_PY = '''\
"""An app that mounts $name twice; the tests deploy it.

`bulkhead dev example_app.py` serves it.
"""

from runtime import App, MutationCtx, QueryCtx

from $name import $camel

app = App()
red = $camel(app.use("$name", name="red"))
blue = $camel(app.use("$name", name="blue"))


@app.mutation
async def score(ctx: MutationCtx, team: str, player: str, points: int = 1) -> int:
    """Add points to a player of team "red" or "blue"; return the player's new total."""
    return await (red if team == "red" else blue).add(ctx, player, points)


@app.query
async def totals(ctx: QueryCtx, player: str) -> dict[str, int]:
    """A player's total in each team."""
    return {"red": await red.total(ctx, player), "blue": await blue.total(ctx, player)}
'''

COMPONENT_TEST_PY = '''\
"""$name through a real daemon: `python -m pytest tests`."""

from pathlib import Path

import pytest
from runtime import ValidationError
from runtime.testing import start_daemon

APP = Path(__file__).resolve().parent.parent / "example_app.py"


def test_each_mount_keeps_its_own_totals(tmp_path: Path) -> None:
    with start_daemon(tmp_path / "data", app=APP) as daemon, daemon.client() as c:
        assert c.mutation("score", team="red", player="ann", points=3) == 3
        assert c.mutation("score", team="red", player="ann") == 4
        assert c.mutation("score", team="blue", player="ann", points=2) == 2
        assert c.query("totals", player="ann") == {"red": 4, "blue": 2}
        assert c.query("totals", player="bob") == {"red": 0, "blue": 0}


def test_a_negative_amount_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    with start_daemon(tmp_path / "data", app=APP) as daemon, daemon.client() as c:
        with pytest.raises(ValidationError, match="amount must be >= 0"):
            c.mutation("score", team="red", player="ann", points=-1)
        assert c.query("totals", player="ann") == {"red": 0, "blue": 0}
        # the admin key may call a mount's functions directly
        with daemon.client(admin=True) as admin:
            assert admin.call("red:total", {"key": "ann"}) == 0
'''

COMPONENT_PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "$name: a Bulkhead component"
requires-python = ">=3.11"
dependencies = ["bulkhead"]

# registers the name `bulkhead components` lists and `app.use("$name")` resolves; once installed
# (pip install -e . or from an index), its workers load it from where it is installed: see docs/components.md
[project.entry-points."bulkhead.components"]
$name = "$name"

[tool.setuptools]
packages = ["$name"]
'''

COMPONENT_README = '''\
# $name

A Bulkhead component scaffolded by `bulkhead new component $name`.

| file | what it is |
| --- | --- |
| `$name/component.py` | the implementation: table `tallies` (index `by_key`), mutation `add`, query `total` |
| `$name/client.py` | `$camel`, the client wrapper an app imports |
| `$name/__init__.py` | exports the wrapper only: apps never import the implementation |
| `example_app.py` | an app mounting `$name` twice, as `red` and `blue` |
| `tests/test_$name.py` | deploys `example_app.py` on a real daemon in a temp dir |
| `pyproject.toml` | registers `$name` in the `bulkhead.components` entry-point group |

In an app:

```python
from $name import $camel

scores = $camel(app.use("$name", name="scores"))     # then: await scores.add(ctx, "ann", 3)
```

```bash
bulkhead dev example_app.py                              # daemon, deploy, redeploy on change
bulkhead run score '{"team": "red", "player": "ann"}'    # 1
bulkhead run totals '{"player": "ann"}'                  # {"red": 1, "blue": 0}
python -m pytest tests                                   # the scaffold's tests
```
'''


def _files(kind: str, name: str) -> dict[str, str]:
    values = {"name": name, "camel": camel(name), "dist": name.replace("_", "-")}
    if kind == "app":
        templates = {"app.py": APP_PY, "client.py": APP_CLIENT_PY, "test_app.py": APP_TEST_PY,
                     "README.md": APP_README}
    else:
        templates = {"pyproject.toml": COMPONENT_PYPROJECT, "README.md": COMPONENT_README,
                     f"{name}/__init__.py": COMPONENT_INIT_PY, f"{name}/component.py": COMPONENT_PY,
                     f"{name}/client.py": COMPONENT_CLIENT_PY, "example_app.py": COMPONENT_EXAMPLE_APP_PY,
                     f"tests/test_{name}.py": COMPONENT_TEST_PY}
    return {path: string.Template(text).substitute(values) for path, text in templates.items()}


def scaffold(kind: str, name: str, parent: Path) -> Path:
    """Write the ``kind`` ("app" or "component") scaffold ``name`` into ``parent/name``; return that directory.

    Raises ``click.BadParameter`` for a bad name or a directory that exists and is not empty.
    """
    if kind == "app" and not _APP_NAME.match(name):
        raise click.BadParameter(f"app name {name!r} is invalid: use letters, digits, '_' and '-', start with a "
                                 "letter, at most 64 characters", param_hint="NAME")
    if kind == "component" and not _COMPONENT_NAME.match(name):
        raise click.BadParameter(f"component name {name!r} is invalid: it is a Python package and mount name, so "
                                 "use lower-case letters, digits and '_', start with a letter, at most 64 "
                                 "characters", param_hint="NAME")
    target = parent / name
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise click.BadParameter(f"{target} already exists and is not an empty directory; nothing was written",
                                 param_hint="NAME")
    files = _files(kind, name)
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return target


@click.group()
def new() -> None:
    """Create a new app or component from a scaffold that deploys and passes its test."""


_DIR_OPTION = click.option("--dir", "parent", default=".", show_default=True,
                           type=click.Path(file_okay=False, path_type=Path),
                           help="The directory to create NAME in.")


def _report(kind: str, target: Path, next_steps: list[str]) -> None:
    from runtime.cli.common import emit

    emit({"created": str(target), "kind": kind,
          "files": sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()),
          "next": next_steps})


@new.command("app")
@click.argument("name")
@_DIR_OPTION
def new_app(name: str, parent: Path) -> None:
    """Create app NAME: app.py (a table, a query, a mutation), client.py, test_app.py, README.md."""
    target = scaffold("app", name, parent)
    _report("app", target, [f"cd {target}", "bulkhead dev .", "python -m pytest test_app.py"])


@new.command("component")
@click.argument("name")
@_DIR_OPTION
def new_component(name: str, parent: Path) -> None:
    """Create component package NAME: component.py, client.py, an example app, a test, pyproject.toml."""
    target = scaffold("component", name, parent)
    _report("component", target, [f"cd {target}", "python -m pytest tests", "bulkhead dev example_app.py"])
