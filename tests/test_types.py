"""``mypy --strict`` on ``tests/typecheck/ref_types.py``: the typed refs and ctx protocols hold; and at
run time the worker's ctx classes answer ``isinstance`` against the protocols by the function's kind.

That file pins types with ``assert_type`` and marks the lines that must *not* type-check with
``# expect-error: CODE``; mypy must report exactly those errors (line and code) and nothing else, so a
negative case is checked without a ``type: ignore`` that would hide it (dramatiq ``tests/test_types.py``
does the positive half of this).
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from mypy import api

import runtime
from runtime import App, CallRuleError
from sandbox import ctx as worker_ctx

ROOT = Path(__file__).resolve().parents[1]
SNIPPET = ROOT / "tests" / "typecheck" / "ref_types.py"
EXPECT = re.compile(r"#\s*expect-error:\s*([a-z-]+)\s*$")
ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: (?P<message>.*?)\s+\[(?P<code>[a-z-]+)\]$")


def expected_errors() -> set[tuple[int, str]]:
    """``(line, code)`` of every ``# expect-error: CODE`` in the snippet."""
    out = set()
    for number, text in enumerate(SNIPPET.read_text().splitlines(), 1):
        if m := EXPECT.search(text):
            out.add((number, m.group(1)))
    return out


def test_the_snippet_type_checks_exactly_as_marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # mypy finds runtime and components from the checkout
    stdout, stderr, status = api.run([
        "--strict", "--follow-imports=silent", "--show-error-codes", "--no-error-summary", "--no-color-output",
        "--cache-dir", str(tmp_path / "mypy_cache"), str(SNIPPET.relative_to(ROOT)),
    ])
    assert stderr == ""
    errors: set[tuple[int, str]] = set()
    for line in stdout.splitlines():
        if m := ERROR.match(line):
            assert Path(m["file"]).resolve() == SNIPPET, line  # nothing outside the snippet is reported
            errors.add((int(m["line"]), m["code"]))
        else:
            assert ": note: " in line, line  # notes explain errors; anything else is a surprise
    expected = expected_errors()
    assert len(expected) >= 10, "the snippet lost its negative cases"
    assert sorted(errors - expected) == [], stdout  # unexpected errors (an assert_type that failed...)
    assert sorted(expected - errors) == [], stdout  # mistakes mypy did not catch
    assert status == 1


class _Channel:
    """Answers every syscall with its op, recording them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def syscall(self, token: str, op: str, args: dict[str, Any], pre: Any = None, reads: Any = None) -> Any:
        self.calls.append((op, args))
        return op


def _ctxs() -> tuple[_Channel, dict[str, Any]]:
    channel = _Channel()
    inv = worker_ctx.WorkerInvocation(channel, App(), "token")
    kw: dict[str, Any] = {"now": 1.0, "seed": 1, "env": {}, "log": logging.getLogger("test")}
    return channel, {kind: cls(inv, **kw) for kind, cls in worker_ctx.CTX_CLASSES.items()}


def test_isinstance_against_the_ctx_protocols_follows_the_kind() -> None:
    _, ctxs = _ctxs()
    protocols = [runtime.QueryCtx, runtime.MutationCtx, runtime.ActionCtx, runtime.RunQueryCtx,
                 runtime.RunMutationCtx, runtime.RunActionCtx]
    held = {kind: [p.__name__ for p in protocols if isinstance(c, p)] for kind, c in ctxs.items()}
    assert held == {
        "query": ["QueryCtx", "RunQueryCtx"],
        "mutation": ["MutationCtx", "RunQueryCtx", "RunMutationCtx"],
        "action": ["ActionCtx", "RunQueryCtx", "RunMutationCtx", "RunActionCtx"],
    }
    assert isinstance(ctxs["mutation"].db, runtime.DatabaseWriter)
    assert not isinstance(ctxs["query"].db, runtime.DatabaseWriter)


def test_calls_take_keyword_arguments_and_keep_the_call_rules() -> None:
    channel, ctxs = _ctxs()
    ref = runtime.FunctionRef("", "f", "query")
    assert asyncio.run(ctxs["query"].run_query(ref, a=1)) == "run"
    assert channel.calls[-1] == ("run", {"ref": {"path": "", "name": "f"}, "kind": "query", "args": {"a": 1}})
    with pytest.raises(TypeError, match="by keyword"):
        asyncio.run(ctxs["mutation"].run_mutation(ref, 1))
    with pytest.raises(CallRuleError, match="queries call only queries"):
        asyncio.run(ctxs["query"].run_mutation(ref, a=1))
    with pytest.raises(CallRuleError, match="only actions run actions"):
        asyncio.run(ctxs["mutation"].run_action(ref))
