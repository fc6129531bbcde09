"""Cron arithmetic: the expression of a static schedule, its next run, and the check at deploy."""

from __future__ import annotations

import datetime as _dt
import hashlib
from typing import Any

from runtime.errors import DeployError, ValidationError


def stable_minute(mount: str, name: str) -> int:
    """The minute picked for a cron that did not say (spreads crons over the hour, the same on every start)."""
    return int.from_bytes(hashlib.sha256(f"{mount}\x00{name}".encode()).digest()[:4], "big") % 60


def cron_expression(schedule: dict[str, Any], mount: str, name: str) -> str | None:
    """The five-field expression of a calendar schedule (None for intervals)."""
    kind = schedule["kind"]
    if kind == "interval":
        return None
    if kind == "cron":
        return str(schedule["expression"])
    minute = schedule.get("minute")
    minute = stable_minute(mount, name) if minute is None else int(minute)
    if kind == "hourly":
        return f"{minute} * * * *"
    if kind == "daily":
        return f"{minute} {schedule['hour']} * * *"
    if kind == "weekly":
        return f"{minute} {schedule['hour']} * * {schedule['day_of_week']}"
    if kind == "monthly":
        return f"{minute} {schedule['hour']} {schedule['day']} * *"
    raise ValidationError(f"unknown cron schedule kind {kind!r}")


def next_run(schedule: dict[str, Any], mount: str, name: str, after: float) -> float:
    """The first time strictly after ``after`` that the schedule fires (UTC)."""
    if schedule["kind"] == "interval":
        return after + float(schedule["seconds"])
    from croniter import croniter

    base = _dt.datetime.fromtimestamp(after, _dt.UTC)
    expression = cron_expression(schedule, mount, name)
    assert expression is not None  # only intervals have none
    return float(croniter(expression, base).get_next(float))


def check_cron(schedule: dict[str, Any], mount: str, name: str) -> None:
    """Refuse a schedule croniter cannot read, naming the cron."""
    expr = cron_expression(schedule, mount, name)
    if expr is None:
        return
    from croniter import croniter

    if not croniter.is_valid(expr):
        raise DeployError(f"mount {mount or '(app)'!r}: cron {name!r} has an invalid schedule {expr!r}")
