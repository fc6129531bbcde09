"""What every ``bulkhead`` command shares: exit codes, the ``--data`` option, JSON output and errors, the client."""

from __future__ import annotations

import base64
import json
import sys
from typing import Any, NoReturn

import click

from runtime.errors import BulkheadError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

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


def _client(data: str, admin: bool = True, timeout: float = 120.0) -> Any:
    from runtime.client import Client

    return Client.connect(data_dir=data, admin=admin, timeout=timeout)
