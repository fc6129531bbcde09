"""The ``bulkhead`` command line: a thin click shell (see DESIGN.md, "Command line").

JSON results go to stdout, errors to stderr with a non-zero exit code.
"""

from __future__ import annotations

from runtime.cli.main import main

__all__ = ["main"]
