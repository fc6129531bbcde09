"""The static import closure a worker reads (:mod:`sandbox.closure`), on files in a temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.closure import entry_modules, read_closure

REPO = Path(__file__).resolve().parents[1]


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _names(sources: dict[str, bytes], root: Path) -> set[str]:
    return {str(Path(p).relative_to(root)) for p in sources if Path(p).is_relative_to(root)}


def test_the_closure_follows_every_static_form_and_nothing_else(tmp_path: Path) -> None:
    _tree(tmp_path, {
        "app.py": "import helpers.a\nfrom pkg import sub, NAME\nfrom other import *\n"
                  "def f():\n    import lazy\n    return __import__('dyn')\n",
        "helpers/__init__.py": "", "helpers/a.py": "from . import b\nfrom .c import thing\n",
        "helpers/b.py": "", "helpers/c.py": "", "helpers/unused.py": "",
        "pkg/__init__.py": "NAME = 1\n", "pkg/sub.py": "from ..escape import x\n", "pkg/other_sub.py": "",
        "other.py": "", "lazy.py": "", "dyn.py": "", "never.py": "",
        "broken.py": "this is not python (\n",
    })
    got = _names(read_closure(["app"], str(tmp_path), str(REPO / "components")), tmp_path)
    assert got == {"app.py", "helpers/__init__.py", "helpers/a.py", "helpers/b.py", "helpers/c.py",
                   "pkg/__init__.py", "pkg/sub.py", "other.py", "lazy.py", "dyn.py"}


def test_a_file_that_does_not_parse_is_kept_for_its_own_error(tmp_path: Path) -> None:
    _tree(tmp_path, {"app.py": "import broken\n", "broken.py": "def (\n", "after.py": ""})
    assert _names(read_closure(["app"], str(tmp_path), str(REPO / "components")), tmp_path) == {"app.py", "broken.py"}


def test_first_party_components_resolve_in_the_repository(tmp_path: Path) -> None:
    _tree(tmp_path, {"app.py": "from components.sharded_counter import ShardedCounter\n"})
    sources = read_closure(["app"], str(tmp_path), str(REPO / "components"))
    counter = {str(Path(p).relative_to(REPO)) for p in sources if Path(p).is_relative_to(REPO / "components")}
    assert counter == {"components/__init__.py", "components/sharded_counter/__init__.py",
                       "components/sharded_counter/client.py"}, "the implementation must not be read by the parent"


@pytest.mark.parametrize(("explicit", "expected"), [(False, ["c.component", "c"]), (True, ["c"])])
def test_a_component_entry_tries_its_component_module_first(explicit: bool, expected: list[str]) -> None:
    assert entry_modules("c", component=True, explicit=explicit) == expected
    assert entry_modules("app", component=False, explicit=False) == ["app"]


def test_an_installed_package_resolves_at_its_own_directory(tmp_path: Path) -> None:
    site = tmp_path / "elsewhere" / "greeter"
    _tree(site, {"__init__.py": "from greeter.client import G\n", "client.py": "",
                 "component.py": "import greeter.impl\n", "impl.py": ""})
    _tree(tmp_path / "app", {"app.py": "from greeter import G\n"})
    app = read_closure(["app"], str(tmp_path / "app"), str(REPO / "components"), {"greeter": str(site)})
    assert _names(app, site) == {"__init__.py", "client.py"}
    component = read_closure(entry_modules("greeter", component=True, explicit=False), str(tmp_path / "app"),
                             str(REPO / "components"), {"greeter": str(site)})
    assert _names(component, site) == {"__init__.py", "client.py", "component.py", "impl.py"}
    assert read_closure(["app"], str(tmp_path / "app"), str(REPO / "components")).keys() == {
        str((tmp_path / "app" / "app.py").resolve())}, "an unregistered package is not user code"
