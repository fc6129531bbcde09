"""The docs in docs/: the site builds in strict mode, its generated pages match the code, and every code
block runs.

A page's blocks run in order in a temp dir of their own.  An HTML comment right
before a block says what to do with it (the comment is invisible on the site)::

    <!-- test: file PATH -->      python: write the block to PATH (deployed later)
    <!-- test: append PATH -->    python: add the block to PATH
    <!-- test: deploy PATH -->    python: deploy PATH on the page's daemon (started on ./.bulkhead), then run it
    <!-- test: run -->            bash: run each line for real (bulkhead, python, cd); a trailing ``# JSON`` is
                                  the expected output, ``# exit N WORDS`` the expected exit status and words
                                  its stderr must contain

A python block without a comment runs as it is (cwd: the page's temp dir); a
bash block without one has each ``bulkhead ...`` line parsed by the real click
commands (unknown commands and options fail); toml blocks must parse; text
blocks are output and trees.  Any other language fails: there is no unchecked
code in the docs.  ``docs/benchmarks.md`` is written by ``bulkhead bench`` and is
not checked here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from runtime.cli.main import cli, stop_daemon
from runtime.limits import Limits
from runtime.testing import RunningDaemon, start_daemon

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GENERATED_BY_TOOLS = {"benchmarks.md"}
PAGES = sorted(p.name for p in DOCS.glob("*.md") if p.name not in GENERATED_BY_TOOLS)
ENV = dict(os.environ, PYTHONPATH=str(ROOT))

_FENCE = re.compile(r"^(```+)\s*([\w-]*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*test:\s*(\w+)\s*(.*?)\s*-->$")


@dataclass
class Block:
    lang: str
    code: str
    line: int
    directive: tuple[str, str] | None

    def where(self, page: str) -> str:
        return f"docs/{page}:{self.line}"


def blocks(text: str) -> Iterator[Block]:
    """The fenced blocks of a page, each with the ``test:`` directive on the line before it (if any)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2), i
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        prev = next((lines[k].strip() for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        d = _DIRECTIVE.match(prev)
        yield Block(lang, "\n".join(lines[start + 1:j]) + "\n", start + 1, (d.group(1), d.group(2)) if d else None)
        i = j + 1


def split_comment(line: str) -> tuple[str, str]:
    """``bulkhead run x '{"a": 1}'   # 1`` as the command and the comment after the first unquoted ``#``."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip(), line[i + 1:].strip()
    return line.strip(), ""


def check_cli_line(argv: list[str]) -> None:
    """Parse ``bulkhead ARGV`` with the real click commands (raises click.UsageError if they refuse it)."""
    cmd: click.Command = cli
    name = "bulkhead"
    args = list(argv)
    while isinstance(cmd, click.Group):
        if not args or args[0] in ("--help", "--version"):
            return
        sub = cmd.commands.get(args[0])
        if sub is None:
            raise click.UsageError(f"no command {args[0]!r} under {name!r}")
        name, cmd, args = f"{name} {args[0]}", sub, args[1:]
    if "--help" in args:
        return
    cmd.make_context(name, args)


class Page:
    """The state of one page's run: its temp dir, its daemon, its current directory for run blocks."""

    def __init__(self, name: str, tmp: Path, stack: ExitStack) -> None:
        self.name = name
        self.tmp = tmp
        self.cwd = tmp
        self.stack = stack
        self.daemon: RunningDaemon | None = None
        self.namespace: dict[str, object] = {}

    def write(self, rel: str, code: str, append: bool) -> None:
        path = self.tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        old = path.read_text() if append and path.exists() else ""
        path.write_text(old + ("\n\n" if old else "") + code)

    def deploy(self, rel: str) -> None:
        if self.daemon is None:
            self.daemon = self.stack.enter_context(start_daemon(self.tmp / ".bulkhead"))
        self.daemon.deploy(self.tmp / rel)

    def execute(self, block: Block) -> None:
        old = os.getcwd()
        os.chdir(self.tmp)
        try:
            # padded so a traceback's line numbers are the page's
            code = compile("\n" * block.line + block.code, f"docs/{self.name}", "exec")
            exec(code, self.namespace)
        finally:
            os.chdir(old)

    def run_line(self, block: Block, line: str) -> None:
        command, comment = split_comment(line)
        argv = shlex.split(command)
        if argv[0] == "cd":
            self.cwd = (self.cwd / argv[1]).resolve()
            return
        if argv[0] == "bulkhead":
            full = [sys.executable, "-m", "runtime", *argv[1:]]
        elif argv[0] == "python":
            full = [sys.executable, *argv[1:]]
        else:
            raise AssertionError(f"{block.where(self.name)}: run blocks run bulkhead, python and cd, not {line!r}")
        proc = subprocess.run(full, cwd=self.cwd, env=ENV, capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)
        expected_exit = int(comment.split()[1]) if comment.startswith("exit ") else 0
        assert proc.returncode == expected_exit, (
            f"{block.where(self.name)}: {line!r} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        if comment.startswith("exit "):  # ``# exit 1 naming page``: what follows the status is said on stderr
            said = comment.split(None, 2)[2:]
            assert not said or all(word in proc.stderr for word in said[0].split()), (
                f"{block.where(self.name)}: {line!r} did not say {said[0]!r} on stderr: {proc.stderr}")
            return
        if comment:
            try:
                want = json.loads(comment)
            except json.JSONDecodeError:
                return  # a comment in words, not an expected value
            assert json.loads(proc.stdout) == want, f"{block.where(self.name)}: {line!r} printed {proc.stdout}"

    def run(self, block: Block) -> None:
        verb, arg = block.directive or ("", "")
        where = block.where(self.name)
        if block.lang == "python":
            if verb in ("file", "append"):
                compile(block.code, where, "exec")  # a syntax error fails here, before any deploy
                self.write(arg, block.code, append=verb == "append")
                return
            if verb == "deploy":
                self.deploy(arg)
            elif verb:
                raise AssertionError(f"{where}: unknown directive {verb!r} for a python block")
            self.execute(block)
        elif block.lang == "bash":
            for raw in block.code.splitlines():
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                if verb == "run":
                    self.run_line(block, line)
                elif line.startswith("bulkhead"):
                    command, _ = split_comment(line)
                    try:
                        check_cli_line(shlex.split(command)[1:])
                    except click.UsageError as exc:
                        raise AssertionError(f"{where}: {line!r}: {exc.format_message()}") from None
        elif block.lang == "toml":
            tomllib.loads(block.code)
        elif block.lang != "text":
            raise AssertionError(f"{where}: a {block.lang or 'plain'!r} block cannot be checked; use python, "
                                 "bash, toml or text")

    def close(self) -> None:
        """Stop a daemon the page's own commands started (``bulkhead daemon start``) and left running: the pid
        of its daemon.json, if that process is still a daemon of this page's temp dir (never a reused pid)."""
        for info in self.tmp.rglob("daemon.json"):
            try:
                pid = int(json.loads(info.read_text())["pid"])
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, ValueError, KeyError):
                continue
            if str(info.parent.resolve()) in cmdline:
                stop_daemon(str(info.parent))


@pytest.mark.parametrize("page", PAGES)
def test_every_code_block_of_the_page_runs(page: str, tmp_path: Path) -> None:
    found = list(blocks((DOCS / page).read_text()))
    with ExitStack() as stack:
        state = Page(page, tmp_path, stack)
        stack.callback(state.close)
        for block in found:
            state.run(block)


def test_the_block_parser_sees_directives_and_comments() -> None:
    text = "x\n<!-- test: file app.py -->\n```python\na = 1\n```\n\n```bash\nbulkhead run f  # 1\n```\n"
    got = list(blocks(text))
    assert [(b.lang, b.directive, b.line) for b in got] == [("python", ("file", "app.py"), 3), ("bash", None, 7)]
    assert split_comment("""bulkhead run f '{"a": "#1"}'  # {"b": 2}""") == ("""bulkhead run f '{"a": "#1"}'""",
                                                                            '{"b": 2}')


def test_bash_lines_are_checked_against_the_real_commands() -> None:
    check_cli_line(["run", "like", '{"post": "p1"}', "--admin"])
    check_cli_line(["daemon", "status"])
    with pytest.raises(click.UsageError, match="no command 'deplyo'"):
        check_cli_line(["deplyo", "app.py"])
    with pytest.raises(click.UsageError, match="--admni"):
        check_cli_line(["run", "like", "--admni"])
    with pytest.raises(click.UsageError, match="stray"):
        check_cli_line(["daemon", "stop", "stray"])


def _walk(cmd: click.Command, path: str) -> Iterator[str]:
    yield path
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _walk(sub, f"{path} {name}")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def test_the_site_builds_strict_with_every_page_in_the_nav(site: Path) -> None:
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    listed = {next(iter(entry.values())) for entry in nav}
    assert listed == {*PAGES, *GENERATED_BY_TOOLS}
    for page in listed:
        html = site / ("index.html" if page == "index.md" else f"{page[:-3]}/index.html")
        assert html.is_file(), page
        assert "<!-- generated:" not in html.read_text(), f"{page}: a marker was left unexpanded"


def test_the_cli_reference_names_every_command_and_option(site: Path) -> None:
    html = (site / "cli" / "index.html").read_text()
    for path in _walk(cli, "bulkhead"):
        assert f"<code>{path}</code>" in html, f"{path} is missing from the CLI reference"
    for opt in ("--data", "--admin", "--watch", "--once", "--quick", "--dir"):
        assert f"<code>{opt}</code>" in html


def test_the_limits_table_has_every_limit_with_its_variable(site: Path) -> None:
    html = (site / "authoring" / "index.html").read_text()
    for f in dataclasses.fields(Limits):
        if f.name != "extra":
            assert f"<code>BULKHEAD_{f.name.upper()}</code>" in html, f.name
    assert "<td><code>INDEXES_PER_TABLE_MAX</code></td>\n<td style=\"text-align: right;\">32</td>" in html
