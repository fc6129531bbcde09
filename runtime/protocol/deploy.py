"""What a deploy hands a worker, and what the worker reports back: code specs, manifests, worker config.

* :data:`CodeSpec` — where a mount's code is (:class:`AppCode` from ``bulkhead
  deploy``, :class:`ComponentCode` for each ``use()``): the ``app`` argument of
  the ``deploy`` admin op, the ``deployment`` meta, and the ``code`` of
* :class:`WorkerConfig` — the msgpack map a new worker reads from its stdin;
* :class:`Manifest` — the definition a worker loaded, sent in its ``hello``
  frame (functions, tables, children, crons);
* :class:`ValidateDocumentsArgs` — the one system call made to a worker, at deploy.

The field names, types and order are those of the plain dicts these replace,
so ``values.pack(Model.model_validate(d).model_dump()) == values.pack(d)``:
the wire stays the same bytes, and models are used at the edges.  JSON schemas
and user values (a cron's ``args``) are free-form on purpose: the schemas are
checked by ``jsonschema``, the values by the target's own models.

It also holds what both directions share: :class:`WireModel` (the base of
every contract model), the function references (:class:`RefPath`,
:class:`RefHandle`) and the error formatting (:func:`issues_of`,
:func:`parse`).  :mod:`~runtime.protocol.syscalls` builds on it; a worker
imports only this module (it never parses syscalls), before it loads the
mount's code.  Nothing of the coordinator and no user code is imported here.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, field_validator, model_serializer

from runtime.errors import ValidationError
from runtime.limits import Limits

JsonSchema = dict[str, Any]
"""A JSON Schema document (draft 2020-12) as pydantic generates it."""

FunctionKind = Literal["query", "mutation", "action"]
Visibility = Literal["public", "internal"]

WORKER_MODULE = "sandbox.worker"
"""A worker runs ``python -m sandbox.worker LABEL`` (``LABEL``: :attr:`WorkerConfig.label`, for ``ps`` only)."""

WORKER_PROCESS_ENV = ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED")
"""The only environment variables a worker process gets (the mount's own variables travel in the config)."""


class WireModel(BaseModel):
    """The base of every contract model: frozen, unknown fields refused, no coercion (``"5"`` is no int)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def issues_of(exc: pydantic.ValidationError) -> list[str]:
    """One ``"field.path: message"`` line per problem (``args`` when the whole value is wrong)."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p not in _TAGS)
        out.append(f"{loc or 'args'}: {err['msg']}")
    return out


_M = TypeVar("_M", bound=BaseModel)


def validate(model: type[_M], data: object, prefix: str) -> _M:
    """``data`` as ``model``, or a :class:`~runtime.errors.ValidationError` ``"{prefix}: "`` + each bad field."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        issues = issues_of(exc)
        raise ValidationError(f"{prefix}: " + "; ".join(issues), issues=issues) from None


def parse(model: type[_M], data: object, what: str) -> _M:
    """``data`` as ``model``, or a :class:`~runtime.errors.ValidationError` naming ``what`` and each bad field."""
    return validate(model, data, f"invalid {what}")


# --- function references ----------------------------------------------------------------------------


class RefPath(WireModel):
    """A function named relative to the calling mount: ``path`` ``""`` (its own) or a direct child's name."""

    path: str
    name: str


class RefHandle(WireModel):
    """A function handle string (``function://...``) a mount was given; the coordinator checks its signature."""

    handle: str


def _ref_form(value: Any) -> str | None:
    if isinstance(value, dict):
        return "by_handle" if "handle" in value else "by_path"
    if isinstance(value, RefHandle):
        return "by_handle"
    if isinstance(value, RefPath):
        return "by_path"
    return None


RefWire = Annotated[
    Annotated[RefPath, Tag("by_path")] | Annotated[RefHandle, Tag("by_handle")],
    Discriminator(_ref_form, custom_error_type="function_ref",
                  custom_error_message="a function reference is {path, name} or {handle}"),
]
"""How a function reference travels in a call or a job: :class:`RefPath`, or :class:`RefHandle` (a map with
``handle``)."""

_TAGS = frozenset({"by_path", "by_handle"})
"""The union tags of :data:`RefWire`, which pydantic puts in error locations; left out of the messages."""


# --- code specs -------------------------------------------------------------------------------------


class _CodeModel(WireModel):
    """What both code specs share: ``packages`` is left out of the plain form when empty (as older specs are)."""

    @model_serializer(mode="wrap")
    def _without_empty_packages(self, handler: Any) -> Any:
        out = handler(self)
        if isinstance(out, dict) and not out.get("packages"):
            out.pop("packages", None)
        return out


class AppCode(_CodeModel):
    """The app's code, as ``bulkhead deploy APP`` resolves it (``runtime.cli.main.resolve_app``)."""

    kind: Literal["app"] = "app"
    app_dir: str
    """The directory put first on the worker's ``sys.path``, and the base of every ``use()`` spec."""
    module: str
    attr: str
    """The attribute of ``module`` that holds the :class:`~runtime.App`."""
    display: str | None = None
    """What the user typed (status output); absent in older specs."""
    packages: dict[str, str] = {}
    """Installed component packages the worker may load, top-level name -> package directory
    (:func:`installed_component_packages`; filled in by the coordinator for each worker, not stored)."""


class ComponentCode(_CodeModel):
    """A component's code, as a ``use()`` spec resolves (:func:`component_code`)."""

    kind: Literal["component"] = "component"
    app_dir: str
    display: str | None = None
    """The ``use()`` spec as written."""
    module: str
    attr: str
    explicit: bool
    """``module:attr`` was named; otherwise ``module.component`` is tried before ``module``."""
    packages: dict[str, str] = {}
    """As :attr:`AppCode.packages`."""


CodeSpec = Annotated[AppCode | ComponentCode, Field(discriminator="kind")]
"""Where a mount's code is: told apart by ``kind``."""

CODE_SPEC: TypeAdapter[AppCode | ComponentCode] = TypeAdapter(CodeSpec)
"""Validates a plain code spec: ``CODE_SPEC.validate_python(d)``."""


def component_code(spec: str, app_dir: str) -> ComponentCode:
    """A ``use()`` spec as code to load: ``module:attr``, a registered component name, or an import path.

    Registered names come from the ``bulkhead.components`` entry-point group (read, never imported).
    """
    if ":" in spec:
        module, attr = spec.split(":", 1)
        return ComponentCode(app_dir=app_dir, display=spec, module=module, attr=attr, explicit=True)
    if "." not in spec:
        target = registered_components().get(spec)
        if target is not None and ":" in target:
            module, attr = target.split(":", 1)
            return ComponentCode(app_dir=app_dir, display=spec, module=module, attr=attr, explicit=True)
        if target is not None:
            return ComponentCode(app_dir=app_dir, display=spec, module=target, attr="component", explicit=False)
    return ComponentCode(app_dir=app_dir, display=spec, module=spec, attr="component", explicit=False)


def registered_components() -> dict[str, str]:
    """Component packages registered through the ``bulkhead.components`` entry-point group (no import)."""
    import importlib.metadata  # here: a worker never needs it

    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group="bulkhead.components")}


def installed_component_packages() -> dict[str, str]:
    """Top-level name -> directory of each package registered in the ``bulkhead.components`` group that lives
    outside the repository's ``components/`` (installed in site-packages, or in editable mode anywhere): the
    roots a worker may load user code from besides the app's directory.  Found, never imported."""
    import importlib.util
    from pathlib import Path

    out: dict[str, str] = {}
    for value in registered_components().values():
        top = value.split(":", 1)[0].split(".", 1)[0]
        if top == "components" or top in out:
            continue
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            continue
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if locations:
            out[top] = str(Path(locations[0]).resolve())
    return out


# --- manifests --------------------------------------------------------------------------------------


class FunctionManifest(WireModel):
    """One function of a definition (``runtime.app.Function.manifest``)."""

    kind: FunctionKind
    visibility: Visibility
    module: str
    """The last part of the defining module's name: clients may call ``module:name``."""
    args: JsonSchema
    returns: JsonSchema
    """``{}`` when the function declares no return type."""


class TableManifest(WireModel):
    """One table: its indexes (name -> fields) and the JSON schema of its documents."""

    indexes: dict[str, list[str]]
    schema_: JsonSchema = Field(alias="schema")
    """``schema`` on the wire and in the constructor (as an attribute it would shadow ``BaseModel.schema``)."""

    @model_serializer
    def _dump(self) -> dict[str, Any]:
        return {"indexes": self.indexes, "schema": self.schema_}


class ChildManifest(WireModel):
    """One ``use()``: the child's mount name, its spec and the variables the parent passes it."""

    name: str
    spec: str
    env: dict[str, str]


class IntervalSchedule(WireModel):
    """Every ``seconds`` seconds; the first run at deploy."""

    kind: Literal["interval"]
    seconds: int = Field(ge=1)


class HourlySchedule(WireModel):
    """Once an hour at ``minute`` (``None``: a stable minute is picked per cron)."""

    kind: Literal["hourly"]
    minute: int | None = Field(ge=0, le=59)


class DailySchedule(WireModel):
    """Once a day at ``hour:minute`` UTC."""

    kind: Literal["daily"]
    hour: int = Field(ge=0, le=23)
    minute: int | None = Field(ge=0, le=59)


class WeeklySchedule(WireModel):
    """Once a week; ``day_of_week`` 0 is Sunday."""

    kind: Literal["weekly"]
    day_of_week: int = Field(ge=0, le=6)
    hour: int = Field(ge=0, le=23)
    minute: int | None = Field(ge=0, le=59)


class MonthlySchedule(WireModel):
    """Once a month on ``day`` (months without that day are skipped)."""

    kind: Literal["monthly"]
    day: int = Field(ge=1, le=31)
    hour: int = Field(ge=0, le=23)
    minute: int | None = Field(ge=0, le=59)


class CronExprSchedule(WireModel):
    """A five-field cron expression, UTC (checked by croniter at deploy)."""

    kind: Literal["cron"]
    expression: str


CronSchedule = Annotated[
    IntervalSchedule | HourlySchedule | DailySchedule | WeeklySchedule | MonthlySchedule | CronExprSchedule,
    Field(discriminator="kind"),
]
"""When a cron runs, told apart by ``kind``."""


class CronManifest(WireModel):
    """One static cron job (``runtime.app.Crons``)."""

    name: str
    schedule: CronSchedule
    ref: RefPath
    """A mutation or action of the mount itself (``path`` ``""``) or a direct child's public one."""
    args: dict[str, Any]
    """The target's keyword arguments: user values."""


class EnvVarManifest(WireModel):
    """A variable declared with ``runtime.EnvVar``."""

    description: str = Field(max_length=1000)
    required: bool
    default: str | None


class Manifest(WireModel):
    """What a worker loaded (``runtime.app.Definition.manifest``), sent in its ``hello`` frame."""

    name: str
    """The component's name; ``""`` for the app."""
    network: bool
    """Its actions may open TCP connections: the coordinator restarts the worker with the network allowed."""
    functions: dict[str, FunctionManifest]
    tables: dict[str, TableManifest]
    children: list[ChildManifest]
    crons: list[CronManifest]
    env_vars: dict[str, EnvVarManifest] = {}
    """Declared variables (``runtime.EnvVar``): a deploy without a value for a required one is refused."""


# --- worker start -----------------------------------------------------------------------------------

_LIMIT_NAMES = frozenset(f.name for f in dataclasses.fields(Limits) if f.name != "extra")


class WorkerConfig(WireModel):
    """Everything a new worker is handed, as one msgpack map on its stdin (never in argv or env).

    The process itself is ``python -m`` :data:`WORKER_MODULE` :attr:`label`, started in an empty
    working directory with only :data:`WORKER_PROCESS_ENV` set, ``close_fds`` and a session of its own.
    """

    endpoint: str
    """The ``ipc://`` endpoint of the worker's own socket to the coordinator."""
    mount: str
    """The mount path (``""``: the app).  Informative only: the socket is the worker's identity."""
    code: CodeSpec
    env: dict[str, str]
    """The variables the parent passed to ``use()`` (the definition's own defaults come first)."""
    limits: dict[str, int | float]
    """Every field of :class:`~runtime.limits.Limits` but ``extra``: ``Limits(**limits)``."""
    network: bool
    """Whether TCP is allowed (the manifest of a first start declared it)."""
    uid: int | None
    """The uid of the mount's workers when the daemon runs as root, else ``None``."""
    hello_secret: str = Field(min_length=16, max_length=64)
    """A one-time secret of this worker's start: it sends it back as :attr:`~runtime.protocol.messages.Hello.proof`
    (and forgets it), and the supervisor takes no Hello without it."""

    @field_validator("limits")
    @classmethod
    def _known_limits(cls, value: dict[str, int | float]) -> dict[str, int | float]:
        unknown = sorted(set(value) - _LIMIT_NAMES)
        if unknown:
            raise ValueError(f"unknown limits {', '.join(unknown)}")
        return value

    @property
    def label(self) -> str:
        """The mount as the worker's argv names it: its path, or ``(app)``."""
        return self.mount or "(app)"

    def make_limits(self) -> Limits:
        """The worker's :class:`~runtime.limits.Limits`."""
        return Limits(**self.limits)  # type: ignore[arg-type]


def limit_fields(limits: Limits) -> dict[str, int | float]:
    """``limits`` as :attr:`WorkerConfig.limits` (every field but ``extra``, in declaration order)."""
    return {f.name: getattr(limits, f.name) for f in dataclasses.fields(limits) if f.name != "extra"}


class ValidateDocumentsArgs(WireModel):
    """The ``validate_documents`` system call: do stored ``docs`` of ``table`` match the new schema?"""

    table: str
    docs: list[dict[str, Any]]
