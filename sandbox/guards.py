"""Shim modules that apply :mod:`sandbox.policy` to what user code touches.

* members: a module listed with a set of members (``os``, ``http``, ``urllib``) is handed over as a copy
  holding those members only;
* guards: every public callable of a GUARDED module (``socket``, ``threading.Thread.start``,
  ``subprocess``...) checks the current function kind first: in queries and mutations it raises
  :class:`~runtime.errors.DeterminismError` naming what was touched; in actions the network needs the
  component's ``network=True``, and processes are never allowed;
* ``open``: files are not available to component code (DeterminismError in queries/mutations);
* ``os.urandom`` inside queries and mutations comes from the transaction's seeded generator.
"""

from __future__ import annotations

import functools
import importlib
import os as _os
import types
from typing import Any

from runtime.errors import DeterminismError, IsolationError
from sandbox import determinism, policy

NETWORK_DECLARED = False
"""Set by the worker from its config: the mount's component declared ``network=True``."""

_HINTS = {
    "network": "queries and mutations cannot use the network; do it in an action (declare network=True)",
    "thread": "queries and mutations run on one thread; use an action",
    "process": "component code cannot start processes",
    "files": "component code has no files; store data in tables",
}


def current_kind() -> str:
    cur = determinism.CURRENT.get()
    return cur[0] if cur is not None else "import"


def check(what: str, touches: str) -> None:
    """Raise the policy's error if the running function kind may not touch ``touches`` (via ``what``)."""
    kind = current_kind()
    verdict = policy.KINDS.get(kind, policy.KINDS["action"]).get(touches, "refuse")
    if verdict == "allow" or (verdict == "if_declared" and NETWORK_DECLARED):
        return
    if kind in ("query", "mutation"):
        raise DeterminismError(f"{what} is not allowed in a {kind}: {_HINTS[touches]}", used=what)
    if verdict == "if_declared":
        raise IsolationError(f"{what}: this component did not declare network access "
                             "(Component(name, network=True)); its actions have no network")
    raise IsolationError(f"{what} is not allowed in component code: {_HINTS[touches]}")


def _guard(what: str, touches: str, fn: Any) -> Any:
    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        check(what, touches)
        return fn(*args, **kwargs)

    return guarded


def guarded_open(file: Any, *args: Any, **kwargs: Any) -> Any:
    """The ``open`` builtin of component code: files are refused (the OS layer refuses them too)."""
    check("open", "files")
    raise AssertionError("unreachable")  # pragma: no cover - "files" is refused for every kind


def _restricted(module: types.ModuleType, members: frozenset[str]) -> types.ModuleType:
    shim = types.ModuleType(module.__name__, module.__doc__)
    for name in members:
        if hasattr(module, name):
            setattr(shim, name, getattr(module, name))
    return shim


def _guarded_module(module: types.ModuleType, touches: str) -> types.ModuleType:
    shim = types.ModuleType(module.__name__, module.__doc__)
    for name, value in vars(module).items():
        if name.startswith("_") or isinstance(value, types.ModuleType):
            continue
        if touches == "thread" and isinstance(value, type):
            setattr(shim, name, value)
            continue
        setattr(shim, name, _guard(f"{module.__name__}.{name}", touches, value) if callable(value) else value)
    if touches == "thread":
        class Thread(module.Thread):  # type: ignore[name-defined,misc]
            def start(self) -> None:
                check("threading.Thread.start", "thread")
                super().start()

        class Timer(module.Timer):  # type: ignore[name-defined,misc]
            def start(self) -> None:
                check("threading.Timer.start", "thread")
                super().start()

        shim.Thread, shim.Timer = Thread, Timer  # type: ignore[attr-defined]
    return shim


def _urandom(n: int) -> bytes:
    cur = determinism.CURRENT.get()
    if cur is not None and cur[0] in ("query", "mutation"):
        return cur[2].randbytes(n)  # the transaction's seeded generator (shared with ctx.random)
    return _os.urandom(n)


_CACHE: dict[str, types.ModuleType] = {}


def shim_for(name: str) -> types.ModuleType | None:
    """The module user code gets for ``import name`` (``None``: the real one, unrestricted members)."""
    if name in _CACHE:
        return _CACHE[name]
    rule = policy.module_rule(name)
    touches = policy.GUARDED.get(name)
    if touches is None and not isinstance(rule, frozenset):
        return None  # fully allowed (or not a policy module at all: runtime, user code)
    module = importlib.import_module(name)
    if touches is not None:
        shim = _guarded_module(module, touches)
    else:
        shim = _restricted(module, rule if isinstance(rule, frozenset) else frozenset())
        if name == "os":
            shim.urandom = _urandom  # type: ignore[attr-defined]
        if name == "urllib":
            shim.parse = importlib.import_module("urllib.parse")  # type: ignore[attr-defined]
    _CACHE[name] = shim
    return shim
