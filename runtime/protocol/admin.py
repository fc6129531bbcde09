"""The arguments of every admin operation (``Admin.args``), one frozen model per op.

The admin key is checked by the door before these are parsed; an op's args
that do not match its model are a :class:`~runtime.errors.ValidationError`
naming each bad field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from runtime.protocol.deploy import AppCode, WireModel, parse


class NoArgs(WireModel):
    """``ping``, ``status``, ``stop``."""


class DeployArgs(WireModel):
    """``deploy``: the app's code as ``bulkhead deploy`` resolves it."""

    app: AppCode


class DataArgs(WireModel):
    """``data``: tables of every mount, tables of one mount, or the first documents of one table."""

    mount: str | None = None
    table: str | None = None
    limit: int = Field(default=100, ge=1, le=100_000)


class LogsArgs(WireModel):
    """``logs``: entries after sequence number ``after``."""

    after: int = Field(default=0, ge=0)
    limit: int = Field(default=1000, ge=1, le=100_000)


class ClockArgs(WireModel):
    """``clock``: read it, or move a controllable clock forward by ``advance`` seconds."""

    advance: float | None = Field(default=None, allow_inf_nan=False)


class EnvArgs(WireModel):
    """``env``: list a mount's variables (masked), get one, set one, unset one (``mount`` ``""`` is the app;
    ``None`` with ``list``: every mount that has variables set or declared)."""

    action: Literal["list", "get", "set", "unset"]
    mount: str | None = Field(default=None, max_length=1000)
    name: str | None = Field(default=None, max_length=200)
    value: str | None = None


ADMIN_ARGS: dict[str, type[WireModel]] = {
    "ping": NoArgs, "status": NoArgs, "stop": NoArgs, "deploy": DeployArgs, "data": DataArgs, "logs": LogsArgs,
    "clock": ClockArgs, "env": EnvArgs,
}
"""The arguments model of each admin op (the ops of :class:`~runtime.protocol.messages.Admin`)."""


def parse_admin_args(op: str, args: Any) -> WireModel:
    """``args`` of admin op ``op`` as its model (ValidationError naming each bad field)."""
    return parse(ADMIN_ARGS[op], args, f"arguments of admin op {op!r}")
