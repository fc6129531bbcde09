"""Component packages through a real daemon: code outside a component imports its client wrapper
(``components.<name>`` or ``components.<name>.client``), never its implementation; a refused import
names the module and the rule (COMPONENT_CLIENT_MODULES in sandbox/policy.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.client import Client
from runtime.errors import DeployError, UserCodeError
from runtime.testing import RunningDaemon, start_daemon
from sandbox import policy

APPS = Path(__file__).resolve().parents[1] / "apps" / "imports"
RULE = "COMPONENT_CLIENT_MODULES"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    with start_daemon(tmp_path_factory.mktemp("component_imports") / "data", app=APPS / "good") as d:
        yield d


@pytest.fixture(scope="module")
def admin(daemon: RunningDaemon) -> Iterator[Client]:
    with daemon.client(admin=True) as c:
        yield c


def test_client_wrappers_are_importable(admin: Client) -> None:
    assert admin.call("peek:bump", {"name": "a"}) == [1, 1]
    assert admin.call("peek:bump", {"name": "b"}) == [1, 2]
    assert admin.call("peek:import_wrapper_lazily", {}) == "Aggregate RateLimiter"
    assert admin.call("hit", {"name": "a"}) == 1


@pytest.mark.parametrize("fn,module", [
    ("peek:import_component_module", "components.sharded_counter.component"),
    ("peek:import_pure_module_from", "components.sharded_counter.shards"),
    ("peek:import_name_from_implementation", "components.aggregate.btree"),
    ("import_rate_limiter_algorithm", "components.rate_limiter.algorithm"),
])
def test_another_components_implementation_is_refused_by_name(admin: Client, fn: str, module: str) -> None:
    with pytest.raises(UserCodeError) as info:
        admin.call(fn, {})
    assert info.value.fields["exc_type"] == "RestrictedImportError"
    assert f"import of {module!r} is not allowed" in info.value.message
    assert RULE in info.value.message


def test_a_deploy_that_imports_an_implementation_is_refused(daemon: RunningDaemon, admin: Client) -> None:
    with pytest.raises(DeployError) as info:
        daemon.deploy(APPS / "bad")
    message = info.value.message
    assert "import of 'components.sharded_counter.component' is not allowed in 'snoop.component'" in message
    assert RULE in message
    assert admin.call("peek:bump", {"name": "a"}) == [2, 3]  # the refused deploy changed nothing


def test_the_rule_is_data() -> None:
    refusal = policy.component_import_refusal
    assert refusal("app", "components.aggregate") is None  # the package: its __init__ exports the wrapper
    assert refusal("app", "components.aggregate.client") is None
    assert refusal("components.aggregate.component", "components.aggregate.btree") is None  # its own package
    assert refusal("components.aggregate", "components.aggregate.tables") is None
    assert refusal("components.rate_limiter.component", "components.sharded_counter.client") is None
    assert refusal("components.rate_limiter.component", "components.sharded_counter.shards") is not None
    assert refusal("components.aggregated.x", "components.aggregate.btree") is not None  # not a prefix match
    assert refusal("app", "json.decoder") is None  # only component packages are ruled on here
    assert frozenset({"client"}) == policy.COMPONENT_CLIENT_MODULES
