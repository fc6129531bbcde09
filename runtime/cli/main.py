"""The click group and the commands that exist so far."""

from __future__ import annotations

import sys

import click

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


@click.group()
@click.version_option(package_name="bulkhead")
def cli() -> None:
    """Bulkhead: a sandboxed component runtime for Python backends."""


@cli.command()
@click.option("--quick", is_flag=True, help="Short runs, safe for CI (under a minute).")
@click.option("--only", "only", multiple=True, help="Run only the named suite(s).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write every figure as JSON here.")
def bench(quick: bool, only: tuple[str, ...], json_path: str | None) -> None:
    """Run the benchmark suites in benchmarks/ and print their table."""
    from benchmarks.runner import run

    sys.exit(run(quick=quick, only=list(only), json_path=json_path))


def main() -> None:
    """Console-script entry point."""
    cli()
