"""The runtime's own tables of every mount, in one place.

Each mount has them beside its own tables; component code reads them through
``ctx.db.system`` and only the coordinator writes them.  Their names start
with ``_``, which user table names may not.
"""

from __future__ import annotations

JOBS = "_scheduled"
"""Scheduled jobs (``ctx.scheduler``) and cron runs."""
CRONS = "_crons"
"""Each static cron's schedule, next run, last job, runs and skips."""
FILES = "_storage"
"""File metadata (``ctx.storage``): sha256, size, content type."""

INDEXES: dict[str, dict[str, list[str]]] = {
    JOBS: {"by_state": ["state", "scheduled_time"], "by_completed": ["completed_time"],
           "by_parent": ["parent", "state"]},
    CRONS: {"by_name": ["name"]},
    FILES: {"by_sha": ["sha256"]},
}
"""Every system table and its indexes (besides ``by_id`` and ``by_creation_time``)."""

NAMES: tuple[str, ...] = tuple(INDEXES)
