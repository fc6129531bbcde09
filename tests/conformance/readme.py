"""A component README's example, as the conformance suite reads it (the convention is in test_components.py).

:func:`example_of` returns the example app and the example calls of a README, or
fails naming the README and what is missing; :class:`ExampleClient` runs the
calls and remembers which functions they called.
"""

from __future__ import annotations

import ast
import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.client import Client

_OPEN = re.compile(r"^```\s*(?P<lang>[A-Za-z0-9_+-]*)")
PYTHON = frozenset({"python", "py", "python3"})
CALLS_MARK = "# example calls"


@dataclass(frozen=True)
class Block:
    """One fenced code block: its first code line (1-based, in the README) and its text."""

    line: int
    code: str


@dataclass(frozen=True)
class Example:
    readme: Path
    app: Block
    calls: Block

    def where(self, block: Block) -> str:
        return f"{self.readme}:{block.line}"


def python_blocks(text: str) -> list[Block]:
    """The ```python fenced blocks of a markdown text (fences at the start of a line), in order."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if m is None:
            i += 1
            continue
        start = i + 1
        end = start
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if m.group("lang").lower() in PYTHON:
            blocks.append(Block(start + 1, "\n".join(lines[start:end]) + "\n"))
        i = end + 1
    return blocks


def _defines_app(tree: ast.Module) -> bool:
    """Whether the module assigns ``app = App(...)`` at top level."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if called == "App" and any(isinstance(t, ast.Name) and t.id == "app" for t in node.targets):
                return True
    return False


def example_of(readme: Path) -> Example:
    """The example app and example calls of ``readme``; AssertionError naming what is missing otherwise."""
    assert readme.is_file(), f"{readme} is missing: every registered component package needs a README with an example"
    blocks = python_blocks(readme.read_text())
    app = next((b for b in blocks if "app.use(" in b.code), None)
    assert app is not None, (
        f"{readme}: no ```python block mounts the component with app.use(...): the first such block is the "
        "example app the conformance suite deploys"
    )
    try:
        tree = ast.parse(app.code, filename=str(readme))
    except SyntaxError as exc:
        line = app.line + (exc.lineno or 1) - 1
        raise AssertionError(f"{readme}:{line}: the example app does not parse: {exc.msg}") from None
    assert _defines_app(tree), (
        f"{readme}:{app.line}: the example app (the first ```python block with app.use(...)) does not define "
        "`app = App(...)` at top level: it must be a whole app module, imports included, that deploys as written"
    )
    calls = next((b for b in blocks if b.code.lstrip().startswith(CALLS_MARK)), None)
    assert calls is not None, (
        f"{readme}: no ```python block starting with {CALLS_MARK!r}: the conformance suite runs that block against "
        "the deployed example app (each public function of the app is a name there, called with keyword "
        "arguments; `c` is a client) and it should assert what the calls return"
    )
    return Example(readme, app, calls)


class ExampleClient:
    """A client of the example app for the calls block: ``c.mutation("like", post="p1")`` and the like."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.called: set[str] = set()

    def call(self, function: str, args: dict[str, Any] | None = None, kind: str | None = None) -> Any:
        self.called.add(function.rpartition(":")[2])
        return self._client.call(function, args or {}, kind)

    def query(self, function: str, **args: Any) -> Any:
        return self.call(function, args, "query")

    def mutation(self, function: str, **args: Any) -> Any:
        return self.call(function, args, "mutation")

    def action(self, function: str, **args: Any) -> Any:
        return self.call(function, args, "action")

    def bound(self, function: str, kind: str) -> Any:
        """``function`` as a Python callable taking the function's arguments as keywords."""

        def call(**args: Any) -> Any:
            return self.call(function, args, kind)

        call.__name__ = function
        return call


def run_calls(example: Example, client: ExampleClient, functions: dict[str, str]) -> str | None:
    """Execute the calls block with each public function (name -> kind) and ``c`` bound.

    Returns None if it ran through, else what failed: the README lines it was at and the error.
    """
    names: dict[str, Any] = {"__name__": "example_calls", "c": client}
    names.update({fn: client.bound(fn, kind) for fn, kind in functions.items()})
    # blank lines first, so the code's line numbers are the README's
    source = "\n" * (example.calls.line - 1) + example.calls.code
    lines = source.splitlines()
    try:
        exec(compile(source, str(example.readme), "exec"), names)  # the project's own README
    except Exception as exc:  # reported with the README's line numbers
        at = [f"  {example.readme}:{f.lineno}: {lines[f.lineno - 1].strip()}"
              for f in traceback.extract_tb(exc.__traceback__)
              if f.filename == str(example.readme) and f.lineno and f.lineno <= len(lines)]
        at = [line for i, line in enumerate(at) if i == 0 or line != at[i - 1]]  # a comprehension is a frame too
        return "\n".join([*at, f"{type(exc).__name__}: {exc}".rstrip(": ")])
    return None
