"""Services of the coordinator (internal): each plugs into the kernel through the host interface.

``scheduler`` (jobs and crons), ``subscriptions``, ``query_cache``, ``files``
(blob store and its HTTP endpoint).  A service registers its syscalls and
hooks with :class:`~runtime.coordinator.host.Host`; it imports no other
service, no door and no kernel implementation module but the host's types.
"""
