"""Import boundaries of ``runtime/``, ``sandbox/`` and ``components/``, read statically from the AST.

The layer rule: every first-party module belongs to exactly one layer of ``LAYERS`` (lowest first)
and may import modules of its own layer or of lower layers only. ``FORBIDDEN`` adds arrows that are
wrong even when the layers allow them, ``ONLY_MAY_IMPORT`` confines components to an allow-list,
``ALLOWED`` lists deliberate exceptions, and the module graph must have no cycle at all.

Every import counts: module level, function bodies, ``if TYPE_CHECKING:``, try/except, relative
imports and ``importlib.import_module("literal")``. Only the module actually named is an edge (a
package ``__init__`` is not implied by importing its submodule); ``from pkg import name`` is an edge
to ``pkg.name`` when that module exists, else to ``pkg``. Third-party and stdlib imports are ignored,
except ``lmdb``.

Patterns are dotted names: ``*`` is one segment, a trailing ``**`` is zero or more, ``<X>`` captures
one segment (it must be equal where ``<X>`` appears again), ``<!X>`` is one segment other than X,
``@name`` is every module of that layer.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

# --- the rules: edit these tables, not the checker -------------------------------------------

# (layer name, module patterns), lowest first: a module may import its own layer or lower ones
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # 0 pure values, errors, limits, key encoding, system tables
    ("base", ("runtime.errors", "runtime.values", "runtime.limits", "runtime.keycodec", "runtime.systables")),
    ("protocol", ("runtime.protocol.**",)),  # 1 wire messages, codec, sockets
    ("storage", ("runtime.storage.**",)),  # 2 the LMDB owner
    ("transactions", ("runtime.transactions.**",)),  # 3 read/write sets, commit
    ("authoring", ("runtime", "runtime.app", "runtime.ctx")),  # 4 the public authoring API and ctx protocols
    ("sandbox", ("sandbox.**",)),  # 5 worker process and its isolation
    ("kernel", ("runtime.coordinator", "runtime.coordinator.kernel.**", "runtime.coordinator.host",
                "runtime.coordinator.clock")),  # 6 the coordinator core
    ("services", ("runtime.coordinator.services.**",)),  # 7 scheduler, subscriptions, files, ... on top of the kernel
    ("doors", ("runtime.coordinator.doors.**",)),  # 8 the ways in: client, admin, worker endpoints
    ("top", ("runtime.coordinator.daemon", "runtime.coordinator.__main__", "runtime.client", "runtime.__main__",
             "runtime.testing", "runtime.cli.**")),  # 9 wiring and entry points
]

# (importers, imported, rule): an arrow from any importer pattern to any imported pattern is wrong
FORBIDDEN: list[tuple[tuple[str, ...], tuple[str, ...], str]] = [
    (("runtime.coordinator.services.<S>.**",), ("runtime.coordinator.services.<!S>.**",),
     "a service never imports another service"),  # submodules of one service are fine
    (("@services",), ("@doors",), "services never import doors"),  # doors sit on top of services
    (("@doors",), ("@services",), "doors never import services"),  # doors reach services through the kernel
    # the kernel is wired, it does not wire
    (("@kernel",), ("@services", "@doors"), "the kernel never imports services or doors"),
    # restates LAYERS, survives edits to it
    (("@base", "@protocol", "@storage", "@transactions", "@authoring", "@sandbox"),
     ("runtime.coordinator.**",), "nothing below the kernel imports runtime.coordinator"),
    (("@sandbox",), ("runtime.storage.**", "runtime.transactions.**", "runtime.coordinator.**", "lmdb"),
     "sandbox never imports storage, transactions, the coordinator or lmdb"),  # workers hold no data
    (("**",), ("lmdb",), "only runtime.storage imports lmdb"),  # storage's exception is in ALLOWED
    # the coordinator never imports user code
    (("runtime.**", "sandbox.**"), ("components.**",), "runtime and sandbox never import component code"),
]

# (importers, allow-list, rule): these importers may reach only the listed first-party modules
ONLY_MAY_IMPORT: list[tuple[tuple[str, ...], tuple[str, ...], str]] = [
    # never storage/transactions/coordinator/protocol/sandbox
    (("components", "components.<C>.**"),
     ("@base", "runtime", "runtime.app", "runtime.ctx", "runtime.values", "runtime.errors", "runtime.limits",
      "components.<C>.**", "components.*", "components.*.client"),
     "components import only base, authoring, their own package and other components' client wrappers"),
]

# (importer, imported, why): deliberate exceptions, checked before every rule above
ALLOWED: list[tuple[str, str, str]] = [
    # it may import anything there
    ("runtime.coordinator.daemon", "runtime.coordinator.**", "the daemon wires the coordinator"),
    ("runtime.storage.**", "lmdb", "storage owns LMDB"),  # the one place lmdb is imported
]

ROOTS = ("runtime", "sandbox", "components")  # first-party top-level packages
WATCHED_THIRD_PARTY = ("lmdb",)  # third-party imports the rules talk about; the others are ignored

# --- the checker -----------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Edge:
    where: str  # file:line
    src: str
    dst: str


def match(pattern: str, module: str, bound: dict[str, str]) -> dict[str, str] | None:
    """The captures of ``pattern`` matching ``module`` (``bound`` holds earlier captures), or None."""
    pat, mod, got = pattern.split("."), module.split("."), dict(bound)
    for i, seg in enumerate(pat):
        if seg == "**" and i == len(pat) - 1:
            return got
        if i >= len(mod):
            return None
        if m := re.fullmatch(r"<(!?)(\w+)>", seg):
            neg, name = m.groups()
            if neg:
                if name not in got or mod[i] == got[name]:
                    return None
            elif got.setdefault(name, mod[i]) != mod[i]:
                return None
        elif seg != "*" and seg != mod[i]:
            return None
    return got if len(pat) == len(mod) else None


def layer_of(module: str) -> list[int]:
    return [i for i, (_, pats) in enumerate(LAYERS) if any(match(p, module, {}) is not None for p in pats)]


def matches(patterns: tuple[str, ...], module: str, bound: dict[str, str]) -> dict[str, str] | None:
    for p in patterns:
        if p.startswith("@"):
            names = [n for n, _ in LAYERS]
            if p[1:] not in names:
                raise ValueError(f"unknown layer {p}")
            if names.index(p[1:]) in layer_of(module):
                return dict(bound)
        elif (got := match(p, module, bound)) is not None:
            return got
    return None


def discover(root: Path, roots: tuple[str, ...]) -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for path in sorted(p for top in roots for p in (root / top).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(module: str, path: Path, modules: dict[str, Path],
               roots: tuple[str, ...]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(resolved targets, unresolved first-party names) of one module, each with its line."""
    is_pkg = path.name == "__init__.py"
    found: list[tuple[str, int]] = []
    missing: list[tuple[str, int]] = []

    def absolute(name: str, level: int) -> str:
        if not level:
            return name
        base = module.split(".")[: len(module.split(".")) - level + (1 if is_pkg else 0)]
        return ".".join(base + ([name] if name else []))

    def add(name: str, line: int, member: str | None = None) -> None:
        top = name.split(".")[0]
        if top in WATCHED_THIRD_PARTY:
            found.append((top, line))
        elif top in roots:
            if member and f"{name}.{member}" in modules:
                found.append((f"{name}.{member}", line))
            elif name in modules:
                found.append((name, line))
            else:
                missing.append((name, line))

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node.module or "", node.level)
            for alias in node.names:
                add(base, node.lineno, None if alias.name == "*" else alias.name)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            f, arg = node.func, node.args[0].value
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in ("import_module", "__import__") and isinstance(arg, str):
                pkg = [k.value for k in node.keywords if k.arg == "package"] + node.args[1:2]
                if arg.startswith(".") and pkg and isinstance(pkg[0], ast.Constant) and isinstance(pkg[0].value, str):
                    dots = len(arg) - len(arg.lstrip("."))
                    arg = ".".join(pkg[0].value.split(".")[: len(pkg[0].value.split(".")) - dots + 1] + [arg[dots:]])
                add(arg, node.lineno)
    return found, missing


@dataclass
class Graph:
    files: dict[str, str]  # module -> its file, relative to the root
    edges: list[Edge]  # the first import of each (importer, imported) pair; no self-imports
    unresolved: list[Edge]  # first-party names that are no module
    unparsable: list[str]  # files with a syntax error: their imports are unknown


@functools.cache
def build(root: Path, roots: tuple[str, ...] = ROOTS) -> Graph:
    modules = discover(root, roots)
    files = {m: str(p.relative_to(root)) for m, p in modules.items()}
    first: dict[tuple[str, str], tuple[int, str]] = {}
    unresolved: set[Edge] = set()
    unparsable: list[str] = []
    for mod, path in modules.items():
        try:
            found, missing = imports_of(mod, path, modules, roots)
        except SyntaxError as e:
            unparsable.append(f"{files[mod]}:{e.lineno}: cannot parse {mod}: {e.msg}")
            continue
        for dst, line in found:
            if dst != mod:
                first[mod, dst] = min(first.get((mod, dst), (line, dst)), (line, dst))
        unresolved |= {Edge(f"{files[mod]}:{line}", mod, dst) for dst, line in missing}
    edges = [Edge(f"{files[s]}:{line}", s, d) for (s, d), (line, _) in first.items()]
    return Graph(files, sorted(edges), sorted(unresolved), unparsable)


def placement_problems(g: Graph) -> list[str]:
    out = g.unparsable + [f"{e.where}: {e.src} -> {e.dst} (no such module)" for e in g.unresolved]
    for mod, file in sorted(g.files.items()):
        placed = layer_of(mod)
        zoned = any(matches(imp, mod, {}) is not None for imp, _, _ in ONLY_MAY_IMPORT)
        if len(placed) > 1:
            out.append(f"{file}:1: module {mod} is in layers {[LAYERS[i][0] for i in placed]}: keep one in LAYERS")
        elif not placed and not zoned:
            out.append(f"{file}:1: module {mod} is in no layer: add it to LAYERS")
    return out


def violations(g: Graph) -> list[str]:
    out: list[str] = []
    for e in g.edges:
        if any(matches((a,), e.src, {}) is not None and matches((b,), e.dst, {}) is not None for a, b, _ in ALLOWED):
            continue
        broken: list[str] = []
        src, dst = layer_of(e.src), layer_of(e.dst)
        if len(src) == 1 and len(dst) == 1 and dst[0] > src[0]:
            broken.append(f"layer {LAYERS[src[0]][0]} ({src[0]}) may not import {LAYERS[dst[0]][0]} ({dst[0]})")
        for importers, imported, why in FORBIDDEN:
            got = matches(importers, e.src, {})
            if got is not None and matches(imported, e.dst, got) is not None:
                broken.append(why)
        for importers, allowed, why in ONLY_MAY_IMPORT:
            got = matches(importers, e.src, {})
            if got is not None and matches(allowed, e.dst, got) is None:
                broken.append(why)
        if broken:
            out.append(f"{e.where}: {e.src} -> {e.dst} ({'; '.join(broken)})")
    return out


def cycles(g: Graph) -> list[str]:
    """Tarjan's SCCs, then the shortest cycle through each module of a cyclic SCC, deduplicated."""
    succ: dict[str, list[str]] = {m: [] for m in g.files}
    where = {(e.src, e.dst): e.where for e in g.edges}
    for e in g.edges:
        if e.dst in succ:
            succ[e.src].append(e.dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    sccs: list[set[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in succ[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc: set[str] = set()
            while (w := stack.pop()) != v:
                scc.add(w)
            sccs.append(scc | {v})

    for v in sorted(succ):
        if v not in index:
            strongconnect(v)
    found: set[tuple[str, ...]] = set()
    for scc in (s for s in sccs if len(s) > 1):
        for start in sorted(scc):
            prev: dict[str, str] = {}
            frontier = [start]
            while frontier and start not in prev:
                nxt: list[str] = []
                for v in frontier:
                    for w in sorted(succ[v]):
                        if w in scc and w not in prev:
                            prev[w] = v
                            nxt.append(w)
                frontier = nxt
            path = [start]
            while len(path) == 1 or path[-1] != start:
                path.append(prev[path[-1]])
            ring = path[::-1][:-1]
            k = ring.index(min(ring))
            found.add(tuple(ring[k:] + ring[:k]))
    return [" -> ".join(c + (c[0],)) + "  ("
            + ", ".join(where[a, b] for a, b in zip(c, c[1:] + (c[0],), strict=True)) + ")"
            for c in sorted(found)]


# --- the tests -------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def report(title: str, lines: list[str]) -> None:
    if lines:
        natural = sorted(lines, key=lambda s: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)])
        pytest.fail(f"{len(lines)} {title}:\n" + "\n".join(natural), pytrace=False)


def test_every_module_is_in_exactly_one_layer() -> None:
    report("modules not placed", placement_problems(build(REPO)))


def test_no_import_cycles() -> None:
    report("import cycles", cycles(build(REPO)))


def test_imports_follow_the_layer_rules() -> None:
    report("arrows against the layer rules", violations(build(REPO)))


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checker_catches_a_cycle(tmp_path: Path) -> None:
    g = build(write(tmp_path, {
        # a package importing its own submodules
        "runtime/__init__.py": "from runtime.app import App\nfrom . import ctx\n",
        "runtime/app.py": "App = 1\n",
        "runtime/ctx.py": "def f() -> None:\n    from runtime import app\n",  # ... is no cycle by itself
        "runtime/errors.py": "import typing\nif typing.TYPE_CHECKING:\n    from .values import V\n",
        "runtime/values.py": ("try:\n    import importlib\n    importlib.import_module('runtime.errors')\n"
                              "except ImportError:\n    pass\n"),
        "runtime/limits.py": "from runtime import App\n",  # importing back the package __init__ ...
        "runtime/keycodec.py": "import runtime.limits\n",
        "runtime/systables.py": "",
    }), ("runtime",))
    assert {(e.src, e.dst) for e in g.edges} >= {("runtime", "runtime.app"), ("runtime.ctx", "runtime.app"),
                                                 ("runtime.errors", "runtime.values"), ("runtime.limits", "runtime")}
    assert cycles(g) == [
        "runtime.errors -> runtime.values -> runtime.errors  (runtime/errors.py:3, runtime/values.py:3)"]
    g = build(write(tmp_path / "b", {"runtime/__init__.py": "from . import limits\n",
                                     "runtime/limits.py": "from runtime import App\n"}), ("runtime",))
    # ... which imports it
    assert cycles(g) == ["runtime -> runtime.limits -> runtime  (runtime/__init__.py:1, runtime/limits.py:1)"]


def test_the_checker_catches_a_layer_violation(tmp_path: Path) -> None:
    g = build(write(tmp_path, {
        "runtime/__init__.py": "", "runtime/errors.py": "",
        "runtime/values.py": "def f() -> None:\n    from runtime.storage import env\n",
        "runtime/storage/__init__.py": "", "runtime/storage/env.py": "import lmdb\n",
        "runtime/coordinator/services/a/__init__.py": ("from .impl import x\n"
                                                       "from runtime.coordinator.services.b import y\n"),
        "runtime/coordinator/services/a/impl.py": "import lmdb.cffi\n",
        "runtime/coordinator/services/b.py": "",
        "runtime/engine.py": "import runtime.nowhere\n",
        "components/c/__init__.py": ("from components.c import impl\nfrom components.d import client\n"
                                     "from runtime.storage.env import E\n"),
        "components/c/impl.py": "", "components/d/__init__.py": "",
        "components/d/client.py": "from components.c import impl\n",
    }), ROOTS)
    only = ONLY_MAY_IMPORT[0][2]
    assert violations(g) == [
        f"components/c/__init__.py:3: components.c -> runtime.storage.env ({only})",
        f"components/d/client.py:1: components.d.client -> components.c.impl ({only})",
        ("runtime/coordinator/services/a/__init__.py:2: runtime.coordinator.services.a -> "
         "runtime.coordinator.services.b (a service never imports another service)"),
        ("runtime/coordinator/services/a/impl.py:1: runtime.coordinator.services.a.impl -> lmdb "
         "(only runtime.storage imports lmdb)"),
        "runtime/values.py:2: runtime.values -> runtime.storage.env (layer base (0) may not import storage (2))",
    ]
    assert placement_problems(g) == ["runtime/engine.py:1: runtime.engine -> runtime.nowhere (no such module)",
                                     "runtime/engine.py:1: module runtime.engine is in no layer: add it to LAYERS"]
