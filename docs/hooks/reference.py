"""MkDocs hook: pages generated from the code itself, so they cannot drift from it.

* ``<!-- generated: cli-reference -->`` becomes the reference of every command of
  ``runtime/cli/main.py``'s click group (walked recursively: usage, help, arguments, options);
* ``<!-- generated: limits-table -->`` becomes the table of every field of
  :class:`runtime.limits.Limits` (default, environment variable, docstring), and
  ``<!-- generated: fixed-limits-table -->`` that of its fixed constants.

``tests/test_docs.py`` builds the site and checks both against the code.
"""

from __future__ import annotations

import ast
import dataclasses
import sys
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parent.parent.parent
if str(ROOT) not in sys.path:  # document this checkout's code, wherever mkdocs was started
    sys.path.insert(0, str(ROOT))

CLI_MARKER = "<!-- generated: cli-reference -->"
LIMITS_MARKER = "<!-- generated: limits-table -->"
FIXED_LIMITS_MARKER = "<!-- generated: fixed-limits-table -->"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _commands(cmd: click.Command, ctx: click.Context) -> list[tuple[click.Command, click.Context]]:
    """``cmd`` and every command under it, depth first, each with its click context (for its usage line)."""
    out = [(cmd, ctx)]
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            sub = cmd.commands[name]
            if sub.hidden:
                continue
            out += _commands(sub, click.Context(sub, info_name=name, parent=ctx))
    return out


def _param_row(param: click.Parameter) -> str:
    if isinstance(param, click.Option):
        names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
        kind = "flag" if param.is_flag else param.type.name.upper()
        default = param.default if param.show_default and param.default not in (None, ()) else ""
        extra = "repeatable" if param.multiple else ""
        detail = "; ".join(x for x in (kind, f"default `{default}`" if default != "" else "", extra) if x)
        return f"| {names} | {detail} | {_cell(param.help or '')} |"
    required = "required" if param.required else "optional"
    return f"| `{param.human_readable_name}` | argument, {required} | |"


def cli_reference() -> str:
    """Markdown for every command of the ``bulkhead`` group."""
    from runtime.cli.main import cli

    root = click.Context(cli, info_name="bulkhead")
    parts: list[str] = []
    for cmd, ctx in _commands(cli, root):
        path = ctx.command_path
        level = "#" * min(2 + path.count(" "), 4)
        parts.append(f"{level} `{path}`\n")
        parts.append(f"```text\n{cmd.get_usage(ctx)}\n```\n")
        if cmd.help:
            parts.append(cmd.help.strip() + "\n")
        params = [p for p in cmd.get_params(ctx) if p.name != "help"]
        if params:
            parts.append("| name | kind | help |\n| --- | --- | --- |")
            parts.extend(_param_row(p) for p in params)
            parts.append("")
        if isinstance(cmd, click.Group):
            subs = [n for n in sorted(cmd.commands) if not cmd.commands[n].hidden]
            parts.append("Commands: " + ", ".join(f"`{path} {n}`" for n in subs) + ".\n")
    return "\n".join(parts)


def _docstrings(body: list[ast.stmt]) -> dict[str, str]:
    """Each assigned name of ``body`` with the string literal right after it (its docstring)."""
    docs: dict[str, str] = {}
    for stmt, nxt in zip(body, body[1:], strict=False):
        target = stmt.target if isinstance(stmt, ast.AnnAssign) else (
            stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else None)
        if isinstance(target, ast.Name) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) \
                and isinstance(nxt.value.value, str):
            docs[target.id] = nxt.value.value
    return docs


def _limits_source() -> ast.Module:
    import runtime.limits

    return ast.parse(Path(runtime.limits.__file__).read_text())


def _field_docs() -> dict[str, str]:
    """Each ``Limits`` field's docstring, read from the source."""
    for node in _limits_source().body:
        if isinstance(node, ast.ClassDef) and node.name == "Limits":
            return _docstrings(node.body)
    return {}


def _value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, int) and value >= 1024 * 1024 and value % (1024 * 1024) == 0:
        return f"{value // (1024 * 1024):,} MiB"
    return f"{value:,}"


def limits_table() -> str:
    """Markdown table of every :class:`runtime.limits.Limits` field."""
    from runtime.limits import DEFAULT, Limits

    docs = _field_docs()
    rows = ["| limit | default | environment variable | what it bounds |", "| --- | ---: | --- | --- |"]
    for f in dataclasses.fields(Limits):
        if f.name == "extra":
            continue
        rows.append(f"| `{f.name}` | {_value(getattr(DEFAULT, f.name))} | `BULKHEAD_{f.name.upper()}` | "
                    f"{_cell(docs.get(f.name, ''))} |")
    return "\n".join(rows) + "\n"


def fixed_limits_table() -> str:
    """Markdown table of the module-level constants of :mod:`runtime.limits` (fixed: not overridable)."""
    import runtime.limits

    docs = _docstrings(_limits_source().body)
    rows = ["| constant | value | what it bounds |", "| --- | ---: | --- |"]
    for name, doc in docs.items():
        value = getattr(runtime.limits, name, None)
        if name.isupper() and isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append(f"| `{name}` | {_value(value)} | {_cell(doc)} |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the markers of a page with what they stand for."""
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if LIMITS_MARKER in markdown:
        markdown = markdown.replace(LIMITS_MARKER, limits_table())
    if FIXED_LIMITS_MARKER in markdown:
        markdown = markdown.replace(FIXED_LIMITS_MARKER, fixed_limits_table())
    return markdown
