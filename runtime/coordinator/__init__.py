"""The coordinator daemon (never imports user code): see :mod:`runtime.coordinator.daemon`."""
