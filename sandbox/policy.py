"""The language layer's import policy, written as data.

Which modules component code may import, which members of them it sees, and
what each kind of function (query, mutation, action) may do with them.  The
loader (:mod:`sandbox.loader`) and the shims (:mod:`sandbox.determinism`,
:mod:`sandbox.guards`) read these tables; nothing else decides.

This is a layer for honest mistakes: code that escapes the restricted globals
reaches the real modules, and the OS layer (:mod:`sandbox.hardening`) is what
holds then.
"""

from __future__ import annotations

from typing import Final

ALL: Final = "*"
"""Every public member (and, for a package, its submodules unless refused)."""

MODULES: Final[dict[str, str | frozenset[str]]] = {
    **{name: ALL for name in [
        "__future__", "abc", "annotated_types", "array", "asyncio", "base64", "binascii", "bisect", "calendar",
        "collections", "contextlib", "contextvars", "copy", "dataclasses", "datetime", "decimal", "difflib", "enum",
        "fractions", "functools", "hashlib", "heapq", "hmac", "itertools", "json", "keyword", "logging", "math",
        "msgpack", "numbers", "operator", "pprint", "pydantic", "pydantic_core", "random", "re", "statistics", "string",
        "struct", "textwrap", "time", "types", "typing", "typing_extensions", "unicodedata", "uuid", "warnings", "zlib",
        "zoneinfo", "components"
    ]},
    "urllib": frozenset({"parse"}),
    "urllib.parse": ALL,
    "http": frozenset({"HTTPStatus", "HTTPMethod"}),
    # importable, but every call goes through a guard (GUARDED below)
    "socket": ALL, "ssl": ALL, "urllib.request": ALL, "http.client": ALL, "threading": ALL,
}
"""Module -> the members user code may use (``components``: its packages, whose submodules
COMPONENT_CLIENT_MODULES rules on).  Anything not listed is refused with RestrictedImportError:
``os``, ``sys``, ``subprocess``, ``ctypes``, ``importlib``... (listing ``os`` with members, e.g.
``frozenset({"urandom", "sep"})``, would hand over exactly those, ``os.urandom`` seeded from the
transaction in queries and mutations: see sandbox/guards.py)."""

NETWORK_IMPORTS: Final[frozenset[str]] = frozenset({"socket", "ssl", "urllib.request", "http.client"})
"""Importable by components that declare ``network=True``, and by module-level code while loading (the
first load is what reads the declaration); refused inside the functions of any other component."""

REFUSED: Final[frozenset[str]] = frozenset({
    "asyncio.subprocess", "http.server", "http.cookiejar", "logging.handlers", "logging.config", "json.tool",
    "urllib.error", "urllib.robotparser",
})
"""Submodules of allowed packages that stay refused (servers, files, processes)."""

RUNTIME: Final[frozenset[str]] = frozenset({"runtime", "runtime.app", "runtime.ctx", "runtime.errors", "runtime.values",
                                            "runtime.limits"})
"""The authoring API; the coordinator's packages (storage, transactions, coordinator, client) are refused."""

COMPONENTS: Final = "components"
"""The package holding the first-party components, one subpackage each (``components.<name>``)."""

COMPONENT_CLIENT_MODULES: Final[frozenset[str]] = frozenset({"client"})
"""The modules of a component package that code outside the package may import, besides the package
itself (whose ``__init__`` exports the client wrapper).  Everything else in it (``component``, and its
pure modules: ``btree``, ``algorithm``, ``shards``...) is the component's implementation, which runs in
the component's own workers: only modules of the same package import it.  So an app, or another
component, goes through the wrapper and never reaches around it."""

GUARDED: Final[dict[str, str]] = {
    "socket": "network", "ssl": "network", "urllib.request": "network", "http.client": "network",
    "threading": "thread",
}
"""Module -> what touching it means.  Per kind (KINDS) that decides whether a call goes through."""

KINDS: Final[dict[str, dict[str, str]]] = {
    # "allow", "refuse" (DeterminismError in queries/mutations, IsolationError elsewhere), "if_declared"
    "query": {"network": "refuse", "thread": "refuse", "process": "refuse", "files": "refuse", "sleep": "refuse"},
    "mutation": {"network": "refuse", "thread": "refuse", "process": "refuse", "files": "refuse", "sleep": "refuse"},
    "action": {"network": "if_declared", "thread": "allow", "process": "refuse", "files": "refuse", "sleep": "allow"},
    "import": {"network": "if_declared", "thread": "allow", "process": "refuse", "files": "refuse", "sleep": "allow"},
}
"""Function kind ("import": module-level code while loading) -> what it may touch."""

DETERMINISTIC: Final[dict[str, str]] = {
    "time.time": "frozen", "time.time_ns": "frozen", "time.monotonic": "frozen", "time.perf_counter": "frozen",
    "datetime.datetime.now": "frozen", "datetime.datetime.utcnow": "frozen", "datetime.datetime.today": "frozen",
    "datetime.date.today": "frozen",
    "random.*": "seeded", "uuid.uuid4": "seeded", "os.urandom": "seeded",
    "time.sleep": "refuse", "asyncio.sleep": "refuse", "random.SystemRandom": "refuse", "uuid.uuid1": "refuse",
}
"""Inside queries and mutations (sandbox.determinism implements it): frozen at the transaction's time,
seeded from the transaction, or refused with DeterminismError.  Actions get the real functions."""

REMOVED_BUILTINS: Final[tuple[str, ...]] = ("exec", "eval", "compile", "breakpoint", "input", "help", "exit", "quit",
                                            "copyright", "credits", "license")
"""Builtins user code does not get (``open`` is replaced by a guard: "files" in KINDS)."""


def module_rule(name: str) -> str | frozenset[str] | None:
    """The members allowed for module ``name`` (``None``: refused).  A submodule of an ``ALL`` package
    is allowed unless REFUSED."""
    if name in REFUSED:
        return None
    if name in MODULES:
        return MODULES[name]
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        parent = ".".join(parts[:i])
        if parent in MODULES:
            return ALL if MODULES[parent] == ALL else None
    return None


def component_import_refusal(importer: str, module: str) -> str | None:
    """Why code in module ``importer`` may not import ``module`` (``None``: the component rule allows it).

    Only submodules of a component package (``components.<name>.<sub>``) are ruled on here.
    """
    parts = module.split(".")
    if len(parts) < 3 or parts[0] != COMPONENTS:
        return None
    package = ".".join(parts[:2])
    if importer == package or importer.startswith(package + "."):
        return None  # a component's own modules import one another freely
    if parts[2] in COMPONENT_CLIENT_MODULES:
        return None
    return (f"it is part of the implementation of component package {package!r}, which only modules of that "
            f"package may import; import its client wrapper ({package!r} or {package + '.client'!r}) instead "
            "(rule: COMPONENT_CLIENT_MODULES in sandbox/policy.py)")
