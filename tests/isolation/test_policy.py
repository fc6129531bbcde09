"""The import policy of sandbox/policy.py through a real daemon: in queries and mutations the network,
files and threads raise DeterminismError naming what was touched; actions have the network only when
their component declares it; refused imports say which rule refused them."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import DeterminismError, IsolationError, UserCodeError
from sandbox import policy

APP = Path(__file__).parent / "policy_app"


@pytest.fixture(scope="module")
def admin(module_daemon_for):
    with module_daemon_for(APP).client(admin=True) as c:
        yield c


@pytest.mark.parametrize("fn,used", [
    ("plain:uses_socket", "socket.create_connection"),
    ("plain:uses_urllib", "urllib.request.urlopen"),
    ("plain:uses_open", "open"),
    ("plain:uses_thread", "threading.Thread.start"),
    ("netty:query_socket", "socket.socket"),
])
def test_queries_and_mutations_name_what_they_touched(admin, fn: str, used: str) -> None:
    with pytest.raises(DeterminismError) as info:
        admin.call(fn, {})
    assert info.value.used == used
    assert used in info.value.message


def test_actions_have_the_network_only_when_declared(admin) -> None:
    with pytest.raises(IsolationError, match="did not declare network access"):
        admin.call("plain:action_network_undeclared", {})
    assert admin.call("netty:open_socket", {}) == "opened"


def test_refused_imports_name_the_rule(admin) -> None:
    with pytest.raises(UserCodeError, match="logging.handlers' is not allowed"):
        admin.call("plain:refused_submodule", {})
    with pytest.raises(UserCodeError, match="did not declare network access"):
        admin.call("plain:import_socket_in_an_action", {})


def test_the_policy_is_data() -> None:
    assert policy.module_rule("os") is None and policy.module_rule("subprocess") is None
    assert policy.module_rule("urllib.parse") == policy.ALL
    assert policy.module_rule("http.server") is None and policy.module_rule("sqlite3") is None
    assert policy.module_rule("collections.abc") == policy.ALL
    assert set(policy.KINDS) == {"query", "mutation", "action", "import"}
