"""Layering: checked in fresh interpreters so nothing imported by other tests hides a leak."""

from __future__ import annotations

import subprocess
import sys

import pytest


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", ["runtime", "runtime.values", "runtime.errors", "runtime.limits",
                                    "runtime.values as v; v.order_key(1, 'a'); v.order_list_prefix([2])"])
def test_public_and_base_modules_do_not_load_storage(module: str) -> None:
    loaded = loaded_after(f"import {module}")
    assert "lmdb" not in loaded
    assert not any(m.startswith(("runtime.storage", "runtime.transactions")) for m in loaded)


def test_only_storage_imports_lmdb() -> None:
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    offenders = [
        str(p.relative_to(root))
        for p in root.glob("runtime/**/*.py")
        if "import lmdb" in p.read_text() and "runtime/storage" not in str(p)
    ]
    assert offenders == []
