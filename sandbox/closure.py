"""The static import closure of a mount's entry module: the only user code its worker reads.

A worker used to read every ``.py`` file of the app tree and of ``components/`` into memory, so an
escaped mount could find another component's implementation, or the app module, by scanning its own
heap or the files.  Now it reads its entry module and, transitively, every user module those files
import (``import a.b``, ``from a import b`` where ``b`` is a module, relative imports, and
``__import__("name")`` / ``importlib.import_module("name")`` with a constant name), found by parsing
each file with :mod:`ast` -- no user code runs here.  Files outside the closure are never opened; the
Landlock rules (:func:`sandbox.hardening.landlock`) make only the closure's files readable, and
:mod:`sandbox.loader` refuses to import a user module that is not in it.

Over-approximation is fine (an import inside ``if TYPE_CHECKING:`` or an unused function still counts);
under-approximation is not possible for static imports, and a computed import name is refused with a
message saying so.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable
from pathlib import Path

from runtime.limits import SOURCE_BYTES_MAX, SOURCE_FILES_MAX

_DYNAMIC_IMPORTERS = {"__import__", "import_module"}


class ImportClosure:
    """Resolves module names to user files the way the worker's ``sys.path`` does, and collects sources.

    ``app_dir`` comes first on the worker's path; the first-party ``components`` package is found in the
    repository root after it (only the top-level name ``components`` resolves there)."""

    def __init__(self, app_dir: str, components_root: str, packages: dict[str, str] | None = None) -> None:
        self.app_dir = str(Path(app_dir).resolve())
        self.components_root = str(Path(components_root).resolve())
        self.packages = {name: str(Path(d).resolve()) for name, d in (packages or {}).items()}
        """Installed component packages: top-level name -> package directory (found after the app's own)."""
        self.sources: dict[str, bytes] = {}
        """Path -> source of every user file in the closure, in the order they were found."""
        self._located: dict[str, tuple[str | None, str | None] | None] = {}
        self._visited: set[str] = set()
        self._total = 0

    def locate(self, name: str) -> tuple[str | None, str | None] | None:
        """``(file, package_dir)`` of a user module (``file`` is None for a namespace package,
        ``package_dir`` None for a plain module), or None when ``name`` is not user code."""
        if name in self._located:
            return self._located[name]
        parent, _, leaf = name.rpartition(".")
        found: tuple[str | None, str | None] | None = None
        if parent:
            above = self.locate(parent)
            dirs = [above[1]] if above is not None and above[1] is not None else []
        else:
            dirs = [self.app_dir]
            if leaf == "components":
                dirs.append(os.path.dirname(self.components_root))
            if leaf in self.packages:
                dirs.append(os.path.dirname(self.packages[leaf]))
        for base in dirs:
            package = os.path.join(base, leaf)
            if os.path.isfile(os.path.join(package, "__init__.py")):
                found = (os.path.join(package, "__init__.py"), package)
            elif os.path.isfile(package + ".py"):
                found = (package + ".py", None)
            elif os.path.isdir(package) and not leaf.startswith("."):
                found = (None, package)
            if found is not None:
                break
        self._located[name] = found
        return found

    def add(self, name: str) -> None:
        """Add module ``name``, its parent packages and everything they import."""
        pending = [name]
        while pending:
            current = pending.pop()
            if current in self._visited:
                continue
            self._visited.add(current)
            parts = current.split(".")
            pending += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b runs a first
            located = self.locate(current)
            if located is None:
                continue
            path, package_dir = located
            if path is None:
                continue  # a namespace package: no file of its own
            source = self._read(path)
            package = current if package_dir is not None else current.rpartition(".")[0]
            pending += self.imports_of(source, path, package)

    def _read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            data = f.read()
        self.sources[path] = data
        self._total += len(data)
        if len(self.sources) > SOURCE_FILES_MAX or self._total > SOURCE_BYTES_MAX:
            raise ImportError(f"the mount's code imports more than {SOURCE_FILES_MAX} source files or "
                              f"{SOURCE_BYTES_MAX} bytes of source; split it into components")
        return data

    def imports_of(self, source: bytes, path: str, package: str) -> list[str]:
        """Every module name the file may import (submodules named in a fromlist included)."""
        try:
            tree = ast.parse(source, filename=path)
        except (SyntaxError, ValueError):
            return []  # importing it raises the real error, with its line
        names: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", node.level, package)
                if base is None:
                    continue
                if base:
                    names.append(base)
                names += [f"{base}.{alias.name}" if base else alias.name for alias in node.names if alias.name != "*"]
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if called in _DYNAMIC_IMPORTERS and isinstance(node.args[0].value, str):
                    names.append(node.args[0].value)
        return names


def _resolve(module: str, level: int, package: str) -> str | None:
    """The absolute name of ``from <level dots><module> import ...`` in ``package`` (None if it escapes)."""
    if not level:
        return module
    parts = package.split(".") if package else []
    if level - 1 > len(parts) or (level - 1 == len(parts) and not module):
        return None
    base = parts[:len(parts) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def entry_modules(module: str, component: bool, explicit: bool) -> list[str]:
    """The modules a worker imports first: a component package named without ``:attr`` tries
    ``package.component`` before the package itself (:func:`sandbox.worker.load_definition`)."""
    return [module + ".component", module] if component and not explicit else [module]


def read_closure(entries: Iterable[str], app_dir: str, components_root: str,
                 packages: dict[str, str] | None = None) -> dict[str, bytes]:
    """Path -> source of every user file the entry modules import, directly or not."""
    closure = ImportClosure(app_dir, components_root, packages)
    for name in entries:
        closure.add(name)
    return closure.sources
