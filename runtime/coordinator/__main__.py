"""``python -m runtime.coordinator``: run the daemon in the foreground."""

from runtime.coordinator.daemon import main

main()
