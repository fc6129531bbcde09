"""The ``bulkhead`` command line (the contract of DESIGN.md).

Results are JSON on stdout; errors go to stderr as one JSON object
(``type``, ``code``, ``message``, ``data``) with a non-zero exit status.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from runtime.cli.common import (  # noqa: F401  (EXIT_* and _json_default are part of this module's surface)
    DATA_OPTION,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    _client,
    _json_default,
    emit,
    fail,
)
from runtime.cli.env import env_group
from runtime.cli.launch import launch, serving
from runtime.cli.new import new
from runtime.errors import BulkheadError


@click.group()
@click.version_option(package_name="bulkhead")
def cli() -> None:
    """Bulkhead: a sandboxed component runtime for Python backends."""


# --- daemon --------------------------------------------------------------------------------


@cli.group()
def daemon() -> None:
    """Start, stop and inspect the coordinator daemon."""


def start_daemon(data: str, listen: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """Start a detached daemon on ``data`` and return its daemon.json once it serves."""
    _, info = launch(Path(data).resolve(), listen=listen, detach=True, timeout_s=timeout_s)
    return info


@daemon.command("start")
@DATA_OPTION
@click.option("--listen", default="tcp://127.0.0.1:0", show_default=True, help="Client endpoint (tcp:// or ipc://).")
@click.option("--foreground", is_flag=True, help="Serve in this process instead of detaching.")
def daemon_start(data: str, listen: str, foreground: bool) -> None:
    """Start the daemon; returns once it serves (daemon.json holds its pid and endpoints)."""
    info = serving(data)
    if info is not None:
        emit({"already_running": True, "pid": info["pid"], "client": info["client"], "data_dir": info["data_dir"]})
        return
    if foreground:
        from runtime.coordinator.daemon import main as run

        run(["--data", data, "--listen", listen])
        return
    try:
        info = start_daemon(data, listen)
    except BulkheadError as exc:
        fail(exc)
    emit({"pid": info["pid"], "client": info["client"], "data_dir": info["data_dir"]})


def stop_daemon(data: str, timeout_s: float = 20.0) -> bool:
    """Stop the daemon of ``data`` (admin stop, then SIGTERM/SIGKILL of its pid); False if none ran."""
    from runtime.client import DaemonNotRunning, discover

    try:
        info = discover(data)
    except DaemonNotRunning:
        return False
    pid = int(info["pid"])
    try:
        with _client(data, timeout=5.0) as c:
            c.admin("stop", timeout=5.0)
    except (TimeoutError, BulkheadError, OSError):
        pass
    deadline = time.monotonic() + timeout_s
    sent_term = False
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        if time.monotonic() > deadline - timeout_s / 2 and not sent_term:
            os.kill(pid, signal.SIGTERM)
            sent_term = True
        time.sleep(0.05)
    Path(data, "daemon.json").unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


@daemon.command("stop")
@DATA_OPTION
def daemon_stop(data: str) -> None:
    """Stop the daemon (waits for it to exit)."""
    emit({"stopped": stop_daemon(data)})


@daemon.command("status")
@DATA_OPTION
def daemon_status(data: str) -> None:
    """Print the daemon's status as JSON (exits 1 if none is running)."""
    try:
        with _client(data, timeout=10.0) as c:
            emit(c.admin("status"))
    except (BulkheadError, TimeoutError) as exc:
        fail(exc)


# --- apps and functions --------------------------------------------------------------------------


def resolve_app(app: str) -> dict[str, Any]:
    """APP (``path/to/app.py``, a directory, or ``module:attr``) as the code spec the workers load."""
    p = Path(app)
    display = app
    if app.endswith(".py") and p.is_file():
        return {"kind": "app", "app_dir": str(p.resolve().parent), "module": p.stem, "attr": "app", "display": display}
    if p.is_dir():
        if (p / "app.py").is_file():
            return {"kind": "app", "app_dir": str(p.resolve()), "module": "app", "attr": "app", "display": display}
        if (p / "__init__.py").is_file():
            return {"kind": "app", "app_dir": str(p.resolve().parent), "module": p.resolve().name, "attr": "app",
                    "display": display}
        raise click.BadParameter(f"{app!r} is a directory with neither app.py nor __init__.py", param_hint="APP")
    if ":" in app:
        module, attr = app.split(":", 1)
        return {"kind": "app", "app_dir": os.getcwd(), "module": module, "attr": attr, "display": display}
    if p.suffix == ".py" or os.sep in app:
        raise click.BadParameter(f"{app!r} does not exist", param_hint="APP")
    return {"kind": "app", "app_dir": os.getcwd(), "module": app, "attr": "app", "display": display}


@cli.command()
@click.argument("app")
@DATA_OPTION
def deploy(app: str, data: str) -> None:
    """Deploy APP (path/to/app.py, a package dir, or module:attr) to the running daemon."""
    spec = resolve_app(app)
    try:
        with _client(data, timeout=300.0) as c:
            emit(c.admin("deploy", app=spec))
    except (BulkheadError, TimeoutError) as exc:
        fail(exc)


@cli.command()
@click.argument("function")
@click.argument("json_args", required=False, default="{}")
@DATA_OPTION
@click.option("--admin", is_flag=True, help="Use the admin key: internal functions and mount/path:name.")
@click.option("--watch", is_flag=True, help="Subscribe to the query: print its value, then one line per change.")
def run(function: str, json_args: str, data: str, admin: bool, watch: bool) -> None:
    """Call FUNCTION with JSON_ARGS (an object); print the result as JSON."""
    try:
        args = json.loads(json_args)
    except json.JSONDecodeError as exc:
        fail(ValueError(f"JSON_ARGS is not valid JSON: {exc}"), EXIT_USAGE)
    if not isinstance(args, dict):
        fail(ValueError(f"JSON_ARGS must be a JSON object of keyword arguments, not {type(args).__name__}"), EXIT_USAGE)
    if watch:
        _watch_query(function, args, data, admin)
        return
    try:
        with _client(data, admin=admin) as c:
            value = c.call(function, args)
    except (BulkheadError, TimeoutError) as exc:
        fail(exc)
    click.echo(json.dumps(value, default=_json_default))


def _watch_query(function: str, args: dict[str, Any], data: str, admin: bool) -> None:
    """``run --watch``: one JSON line per value until interrupted; a failed run goes to stderr and the watch goes on."""
    try:
        with _client(data, admin=admin) as c:
            sub = c.subscribe(function, **args)
            while True:
                try:
                    value = sub.next()
                except BulkheadError as exc:
                    click.echo(json.dumps(exc.to_wire()), err=True)
                    continue
                click.echo(json.dumps(value, default=_json_default))
    except KeyboardInterrupt:
        return
    except (BulkheadError, TimeoutError) as exc:
        fail(exc)


@cli.command()
@click.argument("mount", required=False)
@click.argument("table", required=False)
@DATA_OPTION
@click.option("--limit", default=100, show_default=True, help="Most documents to print.")
def data(mount: str | None, table: str | None, data: str, limit: int) -> None:
    """List tables, a mount's tables, or a table's documents (MOUNT '.' is the app)."""
    try:
        with _client(data) as c:
            if mount is None:
                emit(c.admin("data"))
                return
            mounts = {t["mount"] for t in c.admin("data")}
            if table is None and mount not in mounts and mount != ".":
                emit(c.admin("data", mount="", table=mount, limit=limit))  # a table of the app
                return
            m = "" if mount in (".", "app") and mount not in mounts else mount
            emit(c.admin("data", mount=m, table=table, limit=limit) if table else c.admin("data", mount=m))
    except (BulkheadError, TimeoutError) as exc:
        fail(exc)


def _print_log(entry: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(entry))
        return
    stamp = time.strftime("%H:%M:%S", time.localtime(entry["ts"]))
    where = (entry["mount"] or "(app)") + (f":{entry['function']}" if entry["function"] else "")
    req = f" [{entry['request']}]" if entry.get("request") else ""
    click.echo(f"{stamp} {where}{req} {entry['line']}")


@cli.command()
@DATA_OPTION
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def logs(data: str, follow: bool, as_json: bool) -> None:
    """Print what functions printed or logged (tagged with mount, function and request)."""
    after = 0
    try:
        with _client(data) as c:
            while True:
                for entry in c.admin("logs", after=after)["entries"]:
                    _print_log(entry, as_json)
                    after = entry["seq"]
                if not follow:
                    return
                time.sleep(0.3)
    except (BulkheadError, TimeoutError) as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass


@cli.command()
def components() -> None:
    """List component packages: first-party ones and those registered by entry point."""
    from runtime.protocol.deploy import registered_components

    spec = importlib.util.find_spec("components")  # found, not imported: the CLI runs no component code
    assert spec is not None and spec.submodule_search_locations is not None
    root = Path(next(iter(spec.submodule_search_locations)))
    out = [{"name": p.name, "use": f"components.{p.name}", "source": "first-party"}
           for p in sorted(root.iterdir()) if (p / "component.py").is_file()]
    out += [{"name": n, "use": n, "package": v, "source": "entry point"}
            for n, v in sorted(registered_components().items())]
    emit(out)


@cli.command()
@click.argument("app")
@DATA_OPTION
@click.option("--once", is_flag=True, help="Deploy, print the deployment, and exit (no watching).")
def dev(app: str, data: str, once: bool) -> None:
    """Start a daemon on DATA if none runs, deploy APP, then redeploy on every change and stream logs."""
    spec = resolve_app(app)
    started = False
    try:
        if serving(data) is None:
            start_daemon(data, "tcp://127.0.0.1:0")
            started = True
        with _client(data, timeout=300.0) as c:
            emit(c.admin("deploy", app=spec))
            if once:
                return
            _watch(c, spec)
    except (BulkheadError, TimeoutError) as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass
    finally:
        if started:  # the embedded daemon lives as long as `dev`
            stop_daemon(data)


def _watch(c: Any, spec: dict[str, Any]) -> None:
    import threading

    import watchfiles

    after = 0
    for entry in c.admin("logs", after=0)["entries"]:
        after = entry["seq"]
    click.echo(f"watching {spec['app_dir']} (Ctrl-C to stop)", err=True)
    stop = threading.Event()
    for changes in watchfiles.watch(spec["app_dir"], stop_event=stop, yield_on_timeout=True, rust_timeout=500,
                                    watch_filter=watchfiles.PythonFilter()):
        if changes:
            try:
                c.admin("deploy", app=spec)
                click.echo(f"redeployed after {len(changes)} change(s)", err=True)
            except BulkheadError as exc:
                click.echo(f"deploy refused: {exc.message}", err=True)
        for entry in c.admin("logs", after=after)["entries"]:
            _print_log(entry, False)
            after = entry["seq"]


@cli.command()
@click.option("--quick", is_flag=True, help="Short runs, safe for CI (under a minute).")
@click.option("--only", "only", multiple=True, help="Run only the named suite(s).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write every figure as JSON here.")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), multiple=True,
              help="Write the figures and targets as a markdown report here (a hand-written preface is kept; "
                   "a file with bench:targets markers gets the targets table between them). Repeatable.")
def bench(quick: bool, only: tuple[str, ...], json_path: str | None, markdown_path: tuple[str, ...]) -> None:
    """Run the benchmark suites in benchmarks/ and print their table."""
    from benchmarks.runner import run as run_bench

    sys.exit(run_bench(quick=quick, only=list(only), json_path=json_path, markdown_path=list(markdown_path)))


cli.add_command(new)


def main() -> None:
    """Console-script entry point."""
    cli()


cli.add_command(env_group)
