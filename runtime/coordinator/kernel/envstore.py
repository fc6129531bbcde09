"""Environment values set at deployment (``bulkhead env set``), per mount, kept by the coordinator.

Values live in LMDB's meta database (``env/<mount path>``, one map per mount; the app is ``""``), never
in source code, and are handed only to that mount's workers, in their config on stdin.  ``list`` shows
them masked; ``get`` (admin key) returns one in full.
"""

from __future__ import annotations

import re
from typing import Any

from runtime.errors import LimitExceeded, ValidationError
from runtime.limits import ENV_NAME_PATTERN, ENV_VALUE_BYTES_MAX, ENV_VARS_PER_MOUNT_MAX
from runtime.storage import Storage

ENV_NAME = re.compile(ENV_NAME_PATTERN)


def mask(value: str) -> str:
    """What ``list`` shows of a value: its length, and its first two characters when it is long."""
    head = value[:2] if len(value) >= 12 else ""
    return f"{head}… ({len(value)} chars)"


class EnvStore:
    """Per-mount variables in the meta database: read at each worker start, written by the admin op."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def values(self, mount: str) -> dict[str, str]:
        """Every variable set for ``mount`` (a copy)."""
        stored = self.storage.meta_get(f"env/{mount}")
        return dict(stored) if isinstance(stored, dict) else {}

    def mounts(self) -> list[str]:
        """Mount paths that have at least one variable set."""
        listed = self.storage.meta_get("env-mounts")
        return sorted(m for m in (listed or []) if self.values(m))

    def set(self, mount: str, name: str, value: str) -> bool:
        """Set one variable; whether the value changed."""
        check_name(name)
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > ENV_VALUE_BYTES_MAX:
            raise LimitExceeded("ENV_VALUE_BYTES_MAX", size, ENV_VALUE_BYTES_MAX, f"bytes in the value of {name!r}")
        current = self.values(mount)
        if current.get(name) == value:
            return False
        if name not in current and len(current) >= ENV_VARS_PER_MOUNT_MAX:
            raise LimitExceeded("ENV_VARS_PER_MOUNT_MAX", len(current) + 1, ENV_VARS_PER_MOUNT_MAX,
                                f"variables set for mount {mount or '(app)'!r}; unset one first")
        current[name] = value
        self._put(mount, current)
        return True

    def unset(self, mount: str, name: str) -> bool:
        """Remove one variable; whether it was set."""
        check_name(name)
        current = self.values(mount)
        if name not in current:
            return False
        del current[name]
        self._put(mount, current)
        return True

    def _put(self, mount: str, values: dict[str, str]) -> None:
        self.storage.meta_put(f"env/{mount}", values)
        listed = set(self.storage.meta_get("env-mounts") or [])
        if mount not in listed:
            self.storage.meta_put("env-mounts", sorted(listed | {mount}))


def check_name(name: str) -> None:
    if not ENV_NAME.match(name):
        raise ValidationError(f"{name!r} is not a variable name (letters, digits and _, not starting with a digit, "
                              "at most 128 characters)")


def describe(values: dict[str, str], passed: dict[str, str], defaults: dict[str, str],
             declared: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One mount's variables for ``list``: where each value comes from (masked), and what is declared."""
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(values) | set(passed) | set(defaults) | set(declared)):
        var = declared.get(name) or {}
        if name in values:
            source, value = "deployment", values[name]
        elif name in passed:
            source, value = "parent", passed[name]
        elif name in defaults:
            source, value = "default", defaults[name]
        else:
            source, value = ("missing" if var.get("required") else "unset"), None
        out[name] = {"source": source, "value": None if value is None else mask(value),
                     "required": bool(var.get("required")), "description": var.get("description", "")}
    return out
