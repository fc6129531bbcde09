"""The public surface, pinned: the ``__all__`` of ``runtime`` and of each ``components.<name>``.

Adding or removing a public name is a decision; this file is where it is made (in the style of httpx's
``tests/test_exported_members.py``).  Each entry point also imports light: ``runtime`` loads no wire
protocol, msgpack or zmq, and a component package loads no implementation module.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from types import ModuleType

import pytest

EXPORTS: dict[str, list[str]] = {
    "runtime": [
        "App", "Component", "MountRef", "EnvVar",
        "FunctionRef", "Kind",
        "QueryCtx", "MutationCtx", "ActionCtx",
        "RunQueryCtx", "RunMutationCtx", "RunActionCtx",
        "DatabaseReader", "DatabaseWriter", "SystemReader", "Query", "RangeBuilder", "Page", "Document",
        "Scheduler", "StorageReader", "StorageWriter", "StorageActionWriter", "Log",
        "BulkheadError", "ComponentError", "ValidationError", "NotFoundError", "CallRuleError", "ConflictError",
        "LimitExceeded", "IsolationError", "DeterminismError", "UserCodeError", "WorkerCrashed",
    ],
    "components.sharded_counter": ["CounterKey", "CounterTrigger", "ShardedCounter"],
    "components.rate_limiter": [
        "RateLimiter", "is_rate_limit_error",
        "TokenBucket", "FixedWindow", "token_bucket", "fixed_window",
        "SECOND", "MINUTE", "HOUR", "DAY", "WEEK",
    ],
    "components.aggregate": ["UNSET", "Aggregate", "AggregateItem", "AggregatePage", "MirroredDb", "TableAggregate",
                             "Triggers"],
    "components.action_retrier": ["ActionRetrier", "RetryOptions", "RunResult", "Success", "Failed", "Canceled",
                                  "NonRetryableError", "is_non_retryable"],
    "components.action_cache": ["ActionCache", "EventHook"],
    "components.workpool": ["Workpool", "Retry", "RetryBehavior", "DEFAULT_RETRY", "NonRetryableError",
                            "MAX_PARALLELISM"],
}
"""Entry point -> its ``__all__``, in order (grouped by concept)."""

IMPLEMENTATION = (".component", ".btree", ".store", ".keys", ".algorithm", ".shards")
"""Module name endings of component implementations (what a client wrapper never imports)."""


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_all_is_pinned(name: str) -> None:
    assert importlib.import_module(name).__all__ == EXPORTS[name]


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_every_exported_name_exists_and_every_public_name_is_exported(name: str) -> None:
    module = importlib.import_module(name)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []
    assert len(set(module.__all__)) == len(module.__all__)
    public = {n for n in dir(module) if not n.startswith("_") and not isinstance(getattr(module, n), ModuleType)}
    assert public == set(module.__all__)


def loaded_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after ``statement``."""
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(out.stdout.split())


def test_import_runtime_loads_no_protocol_msgpack_or_zmq() -> None:
    loaded = loaded_after("import runtime")
    heavy = sorted(m for m in loaded if m.split(".")[0] in ("msgpack", "zmq", "lmdb", "sandbox")
                   or m.startswith(("runtime.protocol", "runtime.storage", "runtime.transactions",
                                    "runtime.coordinator", "runtime.values")))
    assert heavy == []


@pytest.mark.parametrize("name", sorted(n for n in EXPORTS if n.startswith("components.")))
def test_a_component_package_loads_only_its_client_side(name: str) -> None:
    loaded = loaded_after(f"import {name}")
    assert sorted(m for m in loaded if m.startswith("components.") and m.endswith(IMPLEMENTATION)) == []
    assert sorted(m for m in loaded if m.split(".")[0] in ("msgpack", "zmq", "sandbox")) == []
