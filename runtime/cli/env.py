"""``bulkhead env``: environment values per mount, set at deployment and kept by the daemon.

MOUNT is a mount path (``bank/transfers``); ``.`` or leaving it out is the app.  ``set`` and ``unset``
restart only that mount's worker; ``list`` shows values masked; ``get`` prints one in full.
"""

from __future__ import annotations

import sys

import click

from runtime.cli.common import DATA_OPTION, DEFAULT_TIMEOUT_S, EXIT_USAGE, _client, emit, fail_call, timeout_option
from runtime.errors import BulkheadError

RESTART_TIMEOUT_S = 60.0
"""``set`` and ``unset`` wait for the mount's new worker to start."""


def _mount(name: str | None) -> str:
    return "" if name in (None, ".") else str(name)


def _split(args: tuple[str, ...], want: int, usage: str) -> tuple[str, list[str]]:
    """``[MOUNT] ARGS...``: the mount (app when left out) and the ``want`` arguments after it."""
    if len(args) == want:
        return "", list(args)
    if len(args) == want + 1:
        return _mount(args[0]), list(args[1:])
    click.echo(f"usage: bulkhead env {usage}", err=True)
    sys.exit(EXIT_USAGE)


def _admin(data: str, timeout: float, **args: object) -> object:
    try:
        with _client(data, timeout=timeout) as c:
            return c.admin("env", **args)
    except (BulkheadError, TimeoutError) as exc:
        fail_call(exc, timeout)


@click.group("env")
def env_group() -> None:
    """Environment values per mount, set at deployment (never written in code)."""


@env_group.command("set")
@click.argument("args", nargs=-1, required=True)
@DATA_OPTION
@timeout_option(RESTART_TIMEOUT_S)
def env_set(args: tuple[str, ...], data: str, timeout: float) -> None:
    """Set a variable: [MOUNT] NAME VALUE (VALUE '-' reads it from stdin); restarts that mount's worker."""
    mount, (name, value) = _split(args, 2, "set [MOUNT] NAME VALUE")
    if value == "-":
        value = sys.stdin.read().removesuffix("\n")
    emit(_admin(data, timeout, action="set", mount=mount, name=name, value=value))


@env_group.command("get")
@click.argument("args", nargs=-1, required=True)
@DATA_OPTION
@timeout_option(DEFAULT_TIMEOUT_S)
def env_get(args: tuple[str, ...], data: str, timeout: float) -> None:
    """Print one variable's value in full: [MOUNT] NAME."""
    mount, (name,) = _split(args, 1, "get [MOUNT] NAME")
    result = _admin(data, timeout, action="get", mount=mount, name=name)
    assert isinstance(result, dict)
    click.echo(result["value"])


@env_group.command("unset")
@click.argument("args", nargs=-1, required=True)
@DATA_OPTION
@timeout_option(RESTART_TIMEOUT_S)
def env_unset(args: tuple[str, ...], data: str, timeout: float) -> None:
    """Remove a variable: [MOUNT] NAME; restarts that mount's worker."""
    mount, (name,) = _split(args, 1, "unset [MOUNT] NAME")
    emit(_admin(data, timeout, action="unset", mount=mount, name=name))


@env_group.command("list")
@click.argument("mount", required=False)
@DATA_OPTION
@timeout_option(DEFAULT_TIMEOUT_S)
def env_list(mount: str | None, data: str, timeout: float) -> None:
    """Every variable of MOUNT (or of every mount), values masked, with where each comes from."""
    emit(_admin(data, timeout, action="list", mount=None if mount is None else _mount(mount)))
