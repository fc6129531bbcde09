"""What every ``bulkhead`` command shares: exit codes, the ``--data`` option, JSON output and errors, the client."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from runtime.errors import BulkheadError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

DEFAULT_TIMEOUT_S = 10.0
"""How long a command waits for the daemon by default (``--timeout`` changes it); ``run`` and ``deploy`` wait longer."""
RUN_TIMEOUT_S = 60.0
DEPLOY_TIMEOUT_S = 120.0

F = TypeVar("F", bound=Callable[..., Any])

DATA_OPTION = click.option("--data", "data", default=".bulkhead", show_default=True,
                           type=click.Path(file_okay=False), help="The data directory of the daemon.")


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    return repr(value)


def emit(value: Any) -> None:
    """Print a result as JSON on stdout."""
    click.echo(json.dumps(value, default=_json_default, indent=None if not isinstance(value, dict) else 2))


def fail(exc: BaseException, code: int = EXIT_ERROR) -> NoReturn:
    """Print an error as JSON on stderr and exit non-zero."""
    if isinstance(exc, BulkheadError):
        payload = {"type": type(exc).__name__, "code": exc.code, "message": exc.message,
                   "data": getattr(exc, "data", None)}
        extra = {k: v for k, v in exc.fields.items() if k not in ("data", "traceback")}
        if extra:
            payload["fields"] = extra
    else:
        payload = {"type": type(exc).__name__, "code": "error", "message": str(exc), "data": None}
    click.echo(json.dumps(payload, default=_json_default), err=True)
    sys.exit(code)


def timeout_option(default: float) -> Callable[[F], F]:
    """``--timeout SECONDS``: how long the command waits for the daemon's answer."""
    return click.option("--timeout", "timeout", default=default, show_default=True,
                        type=click.FloatRange(min=0, min_open=True),
                        help="Seconds to wait for the daemon's answer before failing.")


def _client(data: str, admin: bool = True, timeout: float = DEFAULT_TIMEOUT_S) -> Any:
    """A client of the daemon serving ``data``: :class:`~runtime.client.DaemonNotRunning` at once if none runs."""
    from runtime.client import Client

    return Client.connect(data_dir=data, admin=admin, timeout=timeout)


def timed_out(exc: TimeoutError, timeout: float) -> TimeoutError:
    """A client's timeout as the CLI reports it: what waited, how long, and the option that waits longer."""
    return TimeoutError(f"{exc}; `--timeout SECONDS` waits longer than {timeout:g} s")


def fail_call(exc: BaseException, timeout: float) -> NoReturn:
    """:func:`fail` for an error of a call to the daemon (a timeout says how to wait longer)."""
    fail(timed_out(exc, timeout) if isinstance(exc, TimeoutError) else exc)
