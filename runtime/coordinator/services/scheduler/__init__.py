"""Durable scheduled jobs and static crons (internal service): ``jobs`` runs them, ``crons`` fires crons,
``cronspec`` does the cron arithmetic.  It reaches the kernel only through :class:`~runtime.coordinator.host.Host`.
"""
