"""``python -m runtime`` is the ``bulkhead`` command."""

from runtime.cli import main

main()
