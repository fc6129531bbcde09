"""Loading user code under restricted globals: the *first* layer of isolation.

Modules whose source lies under a *user root* (the app's directory, the
first-party ``components/`` directory) are executed with a restricted
``__builtins__``: no ``open``/``exec``/``eval``/``compile``/``input``/
``breakpoint``, and an ``__import__`` that only admits an allowlist of modules
(pure standard library, pydantic, the authoring API of ``runtime``) and other
user modules.  Everything else — ``os``, ``sys``, ``subprocess``, ``socket``,
``ctypes``, ``importlib``, ``runtime.storage``... — fails with an
``ImportError`` that names the module and says why.

This is *not* a security boundary on its own: CPython offers many ways back to
the real builtins (``().__class__.__base__.__subclasses__()`` and friends).
The process boundary is the first line; the OS hardening of the sandbox issue
is what makes escaping these globals pointless.
"""

from __future__ import annotations

import builtins
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from runtime.limits import SOURCE_BYTES_MAX, SOURCE_FILES_MAX
from sandbox import determinism, guards, policy

ALLOWED_RUNTIME = policy.RUNTIME
"""The authoring API (kept for importers of the old name; the policy lives in :mod:`sandbox.policy`)."""

REMOVED_BUILTINS = policy.REMOVED_BUILTINS


class RestrictedImportError(ImportError):
    """An import that the sandbox refuses."""




def read_sources(roots: Sequence[str | os.PathLike[str]]) -> dict[str, bytes]:
    """Every ``.py`` file under ``roots`` (hidden directories and ``__pycache__`` skipped), read into
    memory *before* the worker drops its uid: afterwards it may not be able to read them, and code then
    runs from these bytes, never from the files."""
    out: dict[str, bytes] = {}
    total = 0
    for root in roots:
        base = Path(root).resolve()
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
            for name in filenames:
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    with open(path, "rb") as f:
                        out[path] = f.read()
                    total += len(out[path])
                    if len(out) > SOURCE_FILES_MAX or total > SOURCE_BYTES_MAX:
                        raise ImportError(f"{root}: more than {SOURCE_FILES_MAX} source files or "
                                          f"{SOURCE_BYTES_MAX} bytes of source; deploy a smaller directory")
    return out


class Sandbox:
    """The user roots of one worker and the restricted builtins its user modules run with."""

    def __init__(self, roots: Sequence[str | os.PathLike[str]], sources: dict[str, bytes] | None = None,
                 packages: Mapping[str, str] | None = None) -> None:
        self.roots = tuple(str(Path(r).resolve()) + os.sep for r in roots)
        self.sources = sources
        self.packages = {name: str(Path(d).resolve()) for name, d in (packages or {}).items()}
        """Installed component packages: top-level name -> directory (need not be on ``sys.path``)."""
        """Path -> source of every user module, read before hardening (``None``: read files as needed)."""
        self._real_import = builtins.__import__
        self.builtins: dict[str, Any] = {k: v for k, v in vars(builtins).items() if k not in REMOVED_BUILTINS}
        self.builtins["__import__"] = self._import
        self.builtins["open"] = guards.guarded_open

    def is_user_file(self, origin: str | None) -> bool:
        """Whether a module file lies under one of the user roots."""
        if not origin:
            return False
        if self.sources is not None and origin in self.sources:
            return True
        return str(Path(origin).resolve()).startswith(self.roots)

    def find_source(self, fullname: str, path: Sequence[str] | None) -> tuple[str, bool] | None:
        """``(file, is_package)`` of a user module in the in-memory sources."""
        if self.sources is None:
            return None
        leaf = fullname.rpartition(".")[2]
        if path is None and leaf in self.packages:
            candidate = os.path.join(self.packages[leaf], "__init__.py")
            if candidate in self.sources:
                return candidate, True
        for entry in (path if path is not None else sys.path):
            base = os.path.join(str(Path(entry or ".").absolute()), leaf)
            for candidate, package in ((os.path.join(base, "__init__.py"), True), (base + ".py", False)):
                if candidate in self.sources:
                    return candidate, package
        return None

    def _allowed(self, absolute: str) -> bool:
        top = absolute.split(".")[0]
        if top == "runtime":
            return absolute in policy.RUNTIME
        if policy.module_rule(absolute) is not None:
            return True
        if top in policy.MODULES or absolute in policy.REFUSED:
            return False
        loaded = sys.modules.get(top)
        if loaded is not None:
            return self.is_user_file(getattr(loaded, "__file__", None))
        if self.find_source(top, None) is not None:
            return True
        spec = importlib.machinery.PathFinder.find_spec(top)
        return spec is not None and self.is_user_file(spec.origin)

    def _check_component_import(self, importer: str, absolute: str, fromlist: Any) -> None:
        """Refuse another component's implementation (:func:`policy.component_import_refusal`), also when it is
        named in a fromlist (``from components.x import btree`` imports ``btree`` without calling ``__import__``)."""
        names = [absolute]
        for item in fromlist or ():
            sub = f"{absolute}.{item}"
            if item != "*" and policy.component_import_refusal(importer, sub) and self._is_submodule(absolute, item):
                names.append(sub)
        for module in names:
            reason = policy.component_import_refusal(importer, module)
            if reason is not None:
                raise RestrictedImportError(f"import of {module!r} is not allowed in {importer or 'this module'!r}: "
                                            f"{reason}")

    def _is_submodule(self, package_name: str, item: str) -> bool:
        """Whether ``package_name.item`` is a module (not a name the package defines)."""
        self._real_import(package_name)
        package = sys.modules[package_name]
        value = getattr(package, item, None)
        if value is not None:
            return isinstance(value, ModuleType)
        path = getattr(package, "__path__", None)
        name = f"{package_name}.{item}"
        return path is not None and (self.find_source(name, path) is not None
                                     or importlib.machinery.PathFinder.find_spec(name, path) is not None)

    def _import(self, name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        if level:
            package = (globals or {}).get("__package__") or ""
            absolute = importlib.util.resolve_name("." * level + name, package)
        else:
            absolute = name
        if absolute in policy.NETWORK_IMPORTS and not guards.NETWORK_DECLARED and guards.current_kind() != "import":
            raise RestrictedImportError(
                f"import of {absolute!r} is not allowed in component code: this component did not declare "
                "network access (Component(name, network=True)), and queries and mutations never have it"
            )
        if not self._allowed(absolute):
            raise RestrictedImportError(
                f"import of {absolute!r} is not allowed in component code "
                f"(sandbox/policy.py lists what is: the standard library's pure modules, pydantic, runtime's "
                f"authoring API, your own modules)"
            )
        self._check_component_import(str((globals or {}).get("__name__") or ""), absolute, fromlist)
        if level == 0:
            target = name if fromlist else name.split(".")[0]
            if target in determinism.SHIMS:
                return determinism.SHIMS[target]  # clock and randomness follow the invocation
            shim = guards.shim_for(target)
            if shim is not None:
                if not fromlist and target != name:  # ``import a.b``: hand over a with b on it
                    self._real_import(name, globals, locals, fromlist, level)
                    sub = guards.shim_for(name) or sys.modules[name]
                    setattr(shim, name.split(".", 1)[1].split(".")[0], sub)
                return shim
        module = self._real_import(name, globals, locals, fromlist, level)
        for item in fromlist or ():
            if level == 0 and absolute.split(".")[0] == "runtime":
                qualified = f"{absolute}.{item}"
                if qualified in sys.modules and qualified not in policy.RUNTIME:
                    raise RestrictedImportError(f"import of {qualified!r} is not allowed in component code")
            elif level == 0 and f"{absolute}.{item}" in policy.REFUSED:
                raise RestrictedImportError(f"import of {absolute + '.' + item!r} is not allowed in component code")
        return module


class _RestrictedLoader(importlib.machinery.SourceFileLoader):
    sandbox: Sandbox

    def get_data(self, path: str) -> bytes:
        sources = self.sandbox.sources
        if sources is not None and path in sources:
            return sources[path]
        if sources is not None and path.endswith(".pyc"):
            raise OSError("no bytecode cache: user code runs from the source read at start")
        return super().get_data(path)

    def path_stats(self, path: str) -> Mapping[str, Any]:
        sources = self.sandbox.sources
        if sources is not None and path in sources:
            return {"mtime": 0, "size": len(sources[path])}
        return super().path_stats(path)

    def exec_module(self, module: ModuleType) -> None:
        code = self.get_code(module.__name__)
        if code is None:
            raise ImportError(f"cannot load {module.__name__!r}")
        module.__dict__["__builtins__"] = self.sandbox.builtins
        exec(code, module.__dict__)  # this *is* the sandboxed loader


class RestrictedFinder(importlib.abc.MetaPathFinder):
    """Finds user modules and hands them a loader that runs them under the restricted builtins."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        found = self.sandbox.find_source(fullname, path)
        if found is not None:
            origin, package = found
            loader = _RestrictedLoader(fullname, origin)
            loader.sandbox = self.sandbox
            search = [os.path.dirname(origin)] if package else None
            spec = importlib.util.spec_from_file_location(fullname, origin, loader=loader,
                                                          submodule_search_locations=search)
            return spec
        if self.sandbox.sources is not None:
            # user code comes from memory only; the rest of the import system handles the others
            try:
                spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            except (ImportError, OSError, ValueError):
                spec = None  # a directory the sandbox does not let it list
            if spec is not None and self.sandbox.is_user_file(spec.origin):
                raise RestrictedImportError(
                    f"import of {fullname!r} is not allowed here: {spec.origin} is outside this mount's own code "
                    "(a worker holds only the modules its entry module imports by name, so the import must be a "
                    "plain `import`/`from ... import` of a constant name, and another component's implementation "
                    "runs only in that component's workers)")
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not self.sandbox.is_user_file(spec.origin) or not str(spec.origin).endswith(".py"):
            return None
        loader = _RestrictedLoader(fullname, spec.origin)  # type: ignore[arg-type]
        loader.sandbox = self.sandbox
        spec.loader = loader
        return spec


def install(roots: Sequence[str | os.PathLike[str]], path_entries: Sequence[str | os.PathLike[str]],
            sources: dict[str, bytes] | None = None, packages: Mapping[str, str] | None = None) -> Sandbox:
    """Route modules under ``roots`` through the restricted loader; put ``path_entries`` first on ``sys.path``.

    With ``sources`` (from :func:`read_sources`), user modules are compiled from those bytes only."""
    sandbox = Sandbox(roots, sources, packages)
    if sources is not None:
        import linecache

        for path, data in sources.items():  # tracebacks show the user's lines without reading the files
            lines = data.decode("utf-8", "replace").splitlines(keepends=True)
            linecache.cache[path] = (len(data), None, lines, path)
    for r in reversed([str(Path(r).resolve()) for r in path_entries]):
        if r not in sys.path:
            sys.path.insert(0, r)
    sys.meta_path.insert(0, RestrictedFinder(sandbox))
    return sandbox
