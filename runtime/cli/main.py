"""The ``bulkhead`` command line (the contract of DESIGN.md).

Results are JSON on stdout; errors go to stderr as one JSON object
(``type``, ``code``, ``message``, ``data``) with a non-zero exit status.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from runtime.cli.common import (  # noqa: F401  (EXIT_* and _json_default are part of this module's surface)
    DATA_OPTION,
    DEFAULT_TIMEOUT_S,
    DEPLOY_TIMEOUT_S,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    RUN_TIMEOUT_S,
    _client,
    _json_default,
    emit,
    fail,
    fail_call,
    timeout_option,
)
from runtime.cli.env import env_group
from runtime.cli.launch import launch, serving, spawn, wait_until_serving
from runtime.cli.new import new
from runtime.client import DaemonNotRunning, find_daemon, pid_alive
from runtime.errors import BulkheadError, NotFoundError


@click.group()
@click.version_option(package_name="bulkhead")
def cli() -> None:
    """Bulkhead: a sandboxed component runtime for Python backends."""


# --- daemon --------------------------------------------------------------------------------


@cli.group()
def daemon() -> None:
    """Start, stop and inspect the coordinator daemon."""


def start_daemon(data: str, listen: str, timeout_s: float = 60.0, http: str | None = None) -> dict[str, Any]:
    """Start a detached daemon on ``data`` and return its daemon.json once it serves."""
    _, info = launch(Path(data).resolve(), listen=listen, detach=True, timeout_s=timeout_s, http=http)
    return info


HTTP_OPTION = click.option("--http", "http", default=None, metavar="HOST:PORT",
                           help="Where the HTTP API listens (default 127.0.0.1 on a free port; daemon.json's `api`).")


@daemon.command("start")
@DATA_OPTION
@click.option("--listen", default="tcp://127.0.0.1:0", show_default=True, help="Client endpoint (tcp:// or ipc://).")
@click.option("--foreground", is_flag=True, help="Serve in this process instead of detaching.")
@HTTP_OPTION
@timeout_option(60.0)
def daemon_start(data: str, listen: str, foreground: bool, http: str | None, timeout: float) -> None:
    """Start the daemon; returns once it serves (daemon.json holds its pid and endpoints)."""
    info = serving(data)
    if info is not None:
        emit({"already_running": True, "pid": info["pid"], "client": info["client"], "api": info.get("api"),
              "data_dir": info["data_dir"]})
        return
    if foreground:
        from runtime.coordinator.daemon import main as run

        run(["--data", data, "--listen", listen, *(["--http", http] if http else [])])
        return
    try:
        info = start_daemon(data, listen, timeout, http)
    except BulkheadError as exc:
        fail(exc)
    emit({"pid": info["pid"], "client": info["client"], "api": info.get("api"), "data_dir": info["data_dir"]})


def stop_daemon(data: str, timeout_s: float = 20.0) -> bool:
    """Stop the daemon of ``data`` (admin stop, then SIGTERM/SIGKILL of its pid); False if none ran."""
    return bool(stop_daemon_report(data, timeout_s)["stopped"])


def stop_daemon_report(data: str, timeout_s: float = 20.0) -> dict[str, Any]:
    """Stop the daemon of ``data`` and say what was stopped: ``stopped``, ``pid``, ``data_dir``, ``how``.

    The daemon is asked to stop (admin ``stop``); if its pid still runs after
    half of ``timeout_s`` it gets SIGTERM, after ``timeout_s`` SIGKILL.  Only a
    pid whose daemon answered, or whose endpoint still listens, is signalled.
    Nothing running (no ``daemon.json``, or a stale one, which is removed) is
    ``stopped: false`` with the ``reason``.
    """
    data_dir = str(Path(data).resolve())
    try:
        info = find_daemon(data)
    except DaemonNotRunning as exc:
        return {"stopped": False, "data_dir": data_dir, "reason": exc.message}
    pid = int(info["pid"])
    data_dir = str(info.get("data_dir") or data_dir)
    out: dict[str, Any] = {"stopped": True, "pid": pid, "data_dir": data_dir}
    answered = False
    try:
        with _client(data, timeout=min(5.0, timeout_s)) as c:
            c.admin("stop")
            answered = True
    except (TimeoutError, BulkheadError, OSError):
        pass
    if not info.get("_pid_visible"):  # a daemon in another pid namespace: its answer is all there is
        if not answered:
            return {"stopped": False, "pid": pid, "data_dir": data_dir,
                    "reason": f"the daemon on {info['client']} did not answer the stop request and its pid {pid} "
                              "is not visible here"}
        out["how"] = "stop request"
        return out
    how = "stop request" if answered else None
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            _signal(pid, signal.SIGKILL)
            how = "SIGKILL"
            break
        if time.monotonic() > deadline - timeout_s / 2 and how in (None, "stop request"):
            _signal(pid, signal.SIGTERM)
            how = "SIGTERM"
        time.sleep(0.05)
    out["how"] = how or "stop request"
    Path(data, "daemon.json").unlink(missing_ok=True)
    return out


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:  # it exited just now
        pass


def _alive(pid: int) -> bool:
    try:  # a zombie child of ours is reaped (and counts as gone)
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return pid_alive(pid)


@daemon.command("stop")
@DATA_OPTION
@timeout_option(20.0)
def daemon_stop(data: str, timeout: float) -> None:
    """Stop the daemon (waits for it to exit); says which pid and data dir it stopped, or why nothing was."""
    emit(stop_daemon_report(data, timeout))


@daemon.command("status")
@DATA_OPTION
@timeout_option(DEFAULT_TIMEOUT_S)
def daemon_status(data: str, timeout: float) -> None:
    """Print the daemon's status as JSON (exits 1 at once if none is running)."""
    try:
        with _client(data, timeout=timeout) as c:
            emit(c.admin("status"))
    except (BulkheadError, TimeoutError) as exc:
        fail_call(exc, timeout)


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
@timeout_option(DEPLOY_TIMEOUT_S)
def deploy(app: str, data: str, timeout: float) -> None:
    """Deploy APP (path/to/app.py, a package dir, or module:attr) to the running daemon."""
    spec = resolve_app(app)
    try:
        with _client(data, timeout=timeout) as c:
            emit(c.admin("deploy", app=spec))
    except (BulkheadError, TimeoutError) as exc:
        fail_call(exc, timeout)


@cli.command()
@click.argument("function")
@click.argument("json_args", required=False, default="{}")
@DATA_OPTION
@click.option("--admin", is_flag=True, help="Use the admin key: internal functions and mount/path:name.")
@click.option("--watch", is_flag=True, help="Subscribe to the query: print its value, then one line per change "
                                           "(exits non-zero on the first error).")
@timeout_option(RUN_TIMEOUT_S)
def run(function: str, json_args: str, data: str, admin: bool, watch: bool, timeout: float) -> None:
    """Call FUNCTION with JSON_ARGS (an object); print the result as JSON."""
    try:
        args = json.loads(json_args)
    except json.JSONDecodeError as exc:
        fail(ValueError(f"JSON_ARGS is not valid JSON: {exc}"), EXIT_USAGE)
    if not isinstance(args, dict):
        fail(ValueError(f"JSON_ARGS must be a JSON object of keyword arguments, not {type(args).__name__}"), EXIT_USAGE)
    if watch:
        _watch_query(function, args, data, admin, timeout)
        return
    try:
        with _client(data, admin=admin, timeout=timeout) as c:
            try:
                value = c.call(function, args)
            except NotFoundError as exc:
                raise _no_mount(c, function, exc) if admin else exc from None
    except (BulkheadError, TimeoutError) as exc:
        fail_call(exc, timeout)
    click.echo(json.dumps(value, default=_json_default))


def _no_mount(c: Any, function: str, exc: NotFoundError) -> NotFoundError:
    """``run MOUNT:NAME --admin`` of a MOUNT that does not exist: say that, not that the app lacks the function."""
    prefix, _, name = function.rpartition(":")
    if not prefix or not exc.message.startswith("the app has no function"):
        return exc
    mounts = [m["path"] for m in (c.admin("status").get("deployment") or {}).get("mounts", [])]
    if prefix in mounts:
        return exc
    named = ", ".join(repr(m) for m in sorted(mounts) if m) or "none"
    return NotFoundError(f"no mount {prefix!r} (the mounts are {named}), and no app module {prefix!r} with a "
                         f"function {name!r}")


def _watch_query(function: str, args: dict[str, Any], data: str, admin: bool, timeout: float) -> None:
    """``run --watch``: one JSON line per value until interrupted; the first error (a failed run of the query,
    the daemon gone) goes to stderr and exits non-zero."""
    try:
        with _client(data, admin=admin, timeout=timeout) as c:
            sub = c.subscribe(function, **args)
            while True:
                value = sub.next()
                click.echo(json.dumps(value, default=_json_default))
    except KeyboardInterrupt:
        return
    except (BulkheadError, TimeoutError) as exc:
        fail_call(exc, timeout)


@cli.command()
@click.argument("mount", required=False)
@click.argument("table", required=False)
@DATA_OPTION
@click.option("--limit", default=100, show_default=True, help="Most documents to print.")
@timeout_option(DEFAULT_TIMEOUT_S)
def data(mount: str | None, table: str | None, data: str, limit: int, timeout: float) -> None:
    """List tables, a mount's tables, or a table's documents (MOUNT '.' is the app)."""
    try:
        with _client(data, timeout=timeout) as c:
            if mount is None:
                emit(c.admin("data"))
                return
            listing = c.admin("data")
            mounts = {t["mount"] for t in listing}
            app_tables = sorted({t["table"] for t in listing if t["mount"] == ""})
            if mount in mounts:
                m = mount
            elif mount == ".":
                m = ""
            elif table is None and mount in app_tables:  # `bulkhead data TABLE`: a table of the app
                emit(c.admin("data", mount="", table=mount, limit=limit))
                return
            elif mount == "app":
                m = ""
            else:
                named = ", ".join(repr(x) for x in sorted(mounts - {""})) or "none"
                if table is None:
                    raise NotFoundError(f"no mount or app table {mount!r}: the mounts are {named} ('.' is the app) "
                                        f"and the app's tables are {', '.join(map(repr, app_tables)) or 'none'}")
                raise NotFoundError(f"no mount {mount!r}: the mounts are {named} ('.' is the app)")
            emit(c.admin("data", mount=m, table=table, limit=limit) if table else c.admin("data", mount=m))
    except (BulkheadError, TimeoutError) as exc:
        fail_call(exc, timeout)


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
@timeout_option(DEFAULT_TIMEOUT_S)
def logs(data: str, follow: bool, as_json: bool, timeout: float) -> None:
    """Print what functions printed or logged (tagged with mount, function and request); --follow ends (non-zero)
    when the daemon goes away."""
    after = 0
    try:
        with _client(data, timeout=timeout) as c:
            while True:
                for entry in c.admin("logs", after=after)["entries"]:
                    _print_log(entry, as_json)
                    after = entry["seq"]
                if not follow:
                    return
                time.sleep(0.3)
    except (BulkheadError, TimeoutError) as exc:
        fail_call(exc, timeout)
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


class _Signalled(Exception):
    """SIGTERM or SIGHUP reached ``bulkhead dev``: it stops as on Ctrl-C."""


def _raise_signalled(signum: int, _frame: object) -> None:
    raise _Signalled(signal.Signals(signum).name)


@cli.command()
@click.argument("app")
@DATA_OPTION
@click.option("--once", is_flag=True, help="Deploy, print the deployment, and exit (no watching).")
@HTTP_OPTION
@timeout_option(DEPLOY_TIMEOUT_S)
def dev(app: str, data: str, once: bool, http: str | None, timeout: float) -> None:
    """Start a daemon on DATA if none runs, deploy APP, then redeploy on every change and stream logs.

    A daemon ``dev`` started stops with it: on Ctrl-C, SIGTERM or SIGHUP.  An app
    that fails to deploy is reported and watched until a change deploys it (with
    ``--once`` the failure exits non-zero); when the daemon goes away ``dev`` says
    so and exits non-zero.
    """
    spec = resolve_app(app)
    proc = None
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_signalled)
    try:
        if serving(data) is None:
            proc = spawn(Path(data).resolve(), listen="tcp://127.0.0.1:0", detach=True, die_with_parent=True, http=http)
            wait_until_serving(proc, Path(data).resolve(), timeout_s=60.0)
        running = serving(data)
        if running is not None and running.get("api"):
            click.echo(f"HTTP API: {running['api']} (OpenAPI at {running['api'].rstrip('/')}/api/openapi.json)",
                       err=True)
        with _client(data, timeout=timeout) as c:
            try:
                emit(c.admin("deploy", app=spec))
                deployed = True
            except (DaemonNotRunning, TimeoutError):
                raise
            except BulkheadError as exc:
                if once:
                    raise
                click.echo(f"deploy failed: {exc.message}{_where(exc, spec['app_dir'])}", err=True)
                deployed = False
            if once:
                return
            _watch(c, spec, data, deployed)
    except (_Signalled, KeyboardInterrupt):
        pass
    except (BulkheadError, TimeoutError) as exc:
        fail_call(exc, timeout)
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP):  # a second signal does not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        if proc is not None:  # the embedded daemon lives as long as `dev`
            _stop_own(proc, data)


def _stop_own(proc: subprocess.Popen[bytes], data: str) -> None:
    """Stop the daemon ``dev`` started (its own child: signalled by that pid even before it serves)."""
    if proc.poll() is None:
        stop_daemon(data)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _where(exc: BulkheadError, app_dir: str) -> str:
    """`` (at FILE:LINE)``: the last frame in the app's directory of the traceback a deploy error carries, or ''."""
    found: list[str] = []
    inside = app_dir.rstrip("/") + "/"

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "traceback" and isinstance(item, str):
                    found.extend(f"{path}:{line}" for path, line in re.findall(r'File "([^"]+)", line (\d+)', item)
                                 if path.startswith(inside))
                else:
                    walk(item)

    walk(exc.fields)
    return f" (at {found[-1]})" if found else ""


def _watch(c: Any, spec: dict[str, Any], data: str, deployed: bool) -> None:
    """Redeploy on every change of the app's files and print new log lines, until the daemon goes away."""
    import threading

    import watchfiles

    after = 0
    for entry in c.admin("logs", after=0)["entries"]:
        after = entry["seq"]
    where = spec["app_dir"]
    if deployed:
        click.echo(f"watching {where} (Ctrl-C to stop)", err=True)
    else:
        click.echo(f"waiting for a fix: watching {where}, deploying on the next change (Ctrl-C to stop)", err=True)
    stop = threading.Event()
    try:
        for changes in watchfiles.watch(where, stop_event=stop, yield_on_timeout=True, rust_timeout=500,
                                        watch_filter=watchfiles.PythonFilter()):
            if changes:
                try:
                    result = c.admin("deploy", app=spec)
                except (DaemonNotRunning, TimeoutError):
                    raise
                except BulkheadError as exc:
                    click.echo(f"deploy refused: {exc.message}{_where(exc, where)} (still watching {where})", err=True)
                else:
                    if not deployed:
                        emit(result)
                        click.echo(f"deployed after {len(changes)} change(s)", err=True)
                        deployed = True
                    else:
                        click.echo(f"redeployed after {len(changes)} change(s)", err=True)
            for entry in c.admin("logs", after=after)["entries"]:
                _print_log(entry, False)
                after = entry["seq"]
    except DaemonNotRunning as exc:
        click.echo(f"the daemon of {data} went away: stopped watching {where}", err=True)
        raise DaemonNotRunning(f"{exc.message}; `bulkhead dev` stopped watching {where} "
                               f"(run it again to start a daemon on {data})") from None


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
