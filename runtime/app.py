"""The authoring API: ``App``, ``Component``, tables, function decorators, references.

Definitions register eagerly, when the module runs, and fail at once with an
error naming the mistake (a duplicate name, a positional-only parameter, an
index on an unknown field...).  Nothing here talks to the coordinator: a
definition is turned into a *manifest* (plain data) by the worker that loaded
it, and the coordinator only ever sees that manifest.

Argument and return validators are built once per function from its type
hints (pydantic, strict mode: ``"5"`` is not an int and ``5`` is not a str).
Every bad argument is reported by name, all of them at once.

The decorators keep the signature for the type checker: ``@component.mutation``
on ``async def add(ctx: MutationCtx, *, name: str) -> int`` gives a
``FunctionRef[[name: str], int]`` (a ``ParamSpec`` of the arguments after
``ctx``, as dramatiq's ``Actor[P, R]``), so ``await ctx.run_mutation(add,
name="x")`` is an ``int`` and ``ctx.run_mutation(add, nme="x")`` is a type
error.  A query's ctx is a :class:`~runtime.ctx.QueryCtx`, a mutation's a
:class:`~runtime.ctx.MutationCtx`, an action's an :class:`~runtime.ctx.ActionCtx`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

import pydantic
from pydantic import BaseModel, ConfigDict, TypeAdapter

from runtime.ctx import KINDS, ActionCtx, FunctionRef, Kind, MutationCtx, P, QueryCtx, R
from runtime.errors import ValidationError
from runtime.limits import ENV_NAME_PATTERN

__all__ = ["KINDS", "App", "Component", "Crons", "Definition", "EnvVar", "Function", "FunctionRef", "Kind",
           "MountRef", "Table", "Use", "check_name", "format_issues"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
"""Table, index, function and mount names: identifiers, not starting with ``_``."""

_STRICT = ConfigDict(strict=True, arbitrary_types_allowed=False)

_P = ParamSpec("_P")
_R = TypeVar("_R")
M = TypeVar("M", bound=type[BaseModel])

QueryHandler = Callable[Concatenate[QueryCtx, _P], Coroutine[Any, Any, _R]]
"""What ``@x.query`` decorates: ``async def f(ctx: QueryCtx, *, ...) -> R``."""
MutationHandler = Callable[Concatenate[MutationCtx, _P], Coroutine[Any, Any, _R]]
"""What ``@x.mutation`` decorates: ``async def f(ctx: MutationCtx, *, ...) -> R``."""
ActionHandler = Callable[Concatenate[ActionCtx, _P], Coroutine[Any, Any, _R]]
"""What ``@x.action`` decorates: ``async def f(ctx: ActionCtx, *, ...) -> R``."""


def check_name(what: str, name: object) -> str:
    """Refuse anything but an identifier that does not start with ``_``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"{what} name {name!r} is invalid: use letters, digits and '_', start with a letter, at most 64 characters"
        )
    return name


def format_issues(exc: pydantic.ValidationError, prefix: str = "") -> list[str]:
    """One line per problem, each starting with the path of the offending value."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        where = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or "value")
        out.append(f"{where}: {err['msg']}")
    return out


class Function(FunctionRef[P, R]):
    """A registered query, mutation or action: the handler and its validators."""

    __slots__ = ("handler", "internal", "module", "_args", "_returns", "params", "_has_return")

    def __init__(self, handler: Callable[..., Coroutine[Any, Any, Any]], kind: Kind, internal: bool) -> None:
        name = check_name("function", handler.__name__)
        super().__init__("", name, kind)
        if not inspect.iscoroutinefunction(handler):
            raise TypeError(f"function {name!r} must be declared 'async def'")
        self.handler = handler
        self.internal = internal
        self.module = handler.__module__.rsplit(".", 1)[-1]
        sig = inspect.signature(handler)
        params = list(sig.parameters.values())
        if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
            raise TypeError(f"function {name!r} must take ctx as its first parameter")
        fields: dict[str, Any] = {}
        try:
            hints = _hints(handler)
        except Exception as exc:  # unresolvable annotations are a user mistake
            raise TypeError(f"function {name!r}: cannot resolve its type hints ({exc})") from None
        for p in params[1:]:
            if p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL):
                raise TypeError(f"function {name!r}: parameter {p.name!r} must be passable by keyword")
            if p.kind is p.VAR_KEYWORD:
                raise TypeError(f"function {name!r}: **{p.name} is not allowed; declare each argument")
            if p.name.startswith("_"):
                raise TypeError(f"function {name!r}: argument names may not start with '_' ({p.name!r})")
            default = ... if p.default is p.empty else p.default
            fields[p.name] = (hints.get(p.name, Any), default)
        self.params = tuple(fields)
        try:
            self._args: type[BaseModel] = pydantic.create_model(
                f"{name}_args", __config__=ConfigDict(strict=True, extra="forbid"), **fields
            )
            self._has_return = "return" in hints
            self._returns: TypeAdapter[Any] = TypeAdapter(hints.get("return", Any), config=_STRICT)
        except pydantic.PydanticSchemaGenerationError as exc:
            raise TypeError(f"function {name!r}: an annotation cannot be validated: {exc}") from None

    def validate_args(self, args: Any) -> dict[str, Any]:
        """Check the call's arguments; return them as keyword arguments for the handler."""
        if not isinstance(args, dict):
            raise ValidationError(f"arguments of {self.name!r} must be an object, not {type(args).__name__}")
        try:
            model = self._args.model_validate(args)
        except pydantic.ValidationError as exc:
            issues = format_issues(exc)
            raise ValidationError(
                f"invalid arguments for {self.name!r}: " + "; ".join(issues), issues=issues
            ) from None
        return {k: getattr(model, k) for k in self.params}

    def validate_return(self, value: Any) -> Any:
        """Check the return value against the return annotation; return it as plain data."""
        try:
            checked = self._returns.validate_python(value)
        except pydantic.ValidationError as exc:
            issues = format_issues(exc, "return.")
            raise ValidationError(
                f"{self.name!r} returned an invalid value: " + "; ".join(issues), issues=issues
            ) from None
        return self._returns.dump_python(checked, mode="python")

    def manifest(self) -> dict[str, Any]:
        """Plain-data description for the coordinator."""
        return {
            "kind": self.kind,
            "visibility": "internal" if self.internal else "public",
            "module": self.module,
            "args": self._args.model_json_schema(),
            "returns": self._returns.json_schema() if self._has_return else {},
        }


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(fn)


class Table:
    """A table: its pydantic model (the schema) and its indexes."""

    __slots__ = ("name", "model", "indexes", "_declared")

    def __init__(self, name: str, model: type[BaseModel], indexes: dict[str, list[str]]) -> None:
        self.name = name
        self.model = model
        self.indexes = indexes
        self._declared = _declared_names(model)
        """Field names a document may hold (names and aliases); ``None``: the model keeps undeclared fields."""

    def validate(self, doc: Any) -> dict[str, Any]:
        """Check a document (without system fields); return it as stored (defaults filled in)."""
        if not isinstance(doc, dict):
            raise ValidationError(f"a document of table {self.name!r} must be a dict, not {type(doc).__name__}")
        body = {k: v for k, v in doc.items() if k not in ("_id", "_creation_time")}
        if self._declared is not None:
            unknown = sorted(str(k) for k in body if k not in self._declared)
            if unknown:
                issues = [f"{k}: the table does not declare this field" for k in unknown]
                raise ValidationError(
                    f"document of table {self.name!r} has field(s) {', '.join(map(repr, unknown))} that its model does "
                    "not declare (nothing was written: declare them, or give the model "
                    "model_config = ConfigDict(extra='allow') to keep undeclared fields)", issues=issues)
        try:
            model = self.model.model_validate(body, strict=True)
        except pydantic.ValidationError as exc:
            issues = format_issues(exc)
            raise ValidationError(
                f"document does not match the schema of table {self.name!r}: " + "; ".join(issues), issues=issues
            ) from None
        return model.model_dump(mode="python")

    def manifest(self) -> dict[str, Any]:
        """Plain-data description for the coordinator."""
        return {"indexes": self.indexes, "schema": self.model.model_json_schema()}


def _declared_names(model: type[BaseModel]) -> frozenset[str] | None:
    """The keys a document of ``model`` may hold, or None when the model keeps (or resolves) others itself."""
    if model.model_config.get("extra") == "allow":
        return None
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(name)
        for alias in (field.alias, field.validation_alias):
            if isinstance(alias, str):
                names.add(alias)
            elif alias is not None:
                choices = getattr(alias, "choices", None)
                if choices is None:
                    return None  # an AliasPath: leave it to pydantic
                for choice in choices:
                    if not isinstance(choice, str):
                        return None
                    names.add(choice)
    return frozenset(names)


class MountRef:
    """What ``use()`` returns: attributes are references to the child's functions.

    ``likes.add`` is a ``FunctionRef[..., Any]``: the parent never imports the
    child's code, so its arguments and result are checked when the call runs
    (a client wrapper is where they get types back).
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, name: str) -> FunctionRef[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return FunctionRef(self._name, name)

    def __repr__(self) -> str:
        return f"<mount {self._name}>"


class Use:
    """One ``use()`` of a child component: its spec (import path or registered name) and options."""

    __slots__ = ("name", "spec", "env")

    def __init__(self, name: str, spec: str, env: dict[str, str]) -> None:
        self.name = name
        self.spec = spec
        self.env = env


ENV_NAME = re.compile(ENV_NAME_PATTERN)
"""What a variable's name may be (as in a shell)."""


class EnvVar:
    """A variable the code reads from ``ctx.env``, declared so a deploy can check it and ``bulkhead env list``
    can describe it: ``Component("mailer", env={"API_KEY": EnvVar("the provider's key", required=True)})``.

    Its value comes from the deployment (``bulkhead env set MOUNT NAME VALUE``, stored by the coordinator and
    given to that mount's workers only), or from the parent (``app.use(..., env={...})``), or ``default``.
    A deploy that leaves a required variable without a value is refused, naming it.
    """

    __slots__ = ("description", "required", "default")

    def __init__(self, description: str = "", *, required: bool = False, default: str | None = None) -> None:
        if not isinstance(description, str):
            raise TypeError(f"EnvVar description must be a str, not {type(description).__name__}")
        if default is not None and not isinstance(default, str):
            raise TypeError(f"EnvVar default must be a str, not {type(default).__name__}")
        if required and default is not None:
            raise ValueError("an EnvVar is required or has a default, not both")
        self.description = description
        self.required = bool(required)
        self.default = default

    def manifest(self) -> dict[str, Any]:
        return {"description": self.description, "required": self.required, "default": self.default}

    def __repr__(self) -> str:
        return f"EnvVar({self.description!r}, required={self.required}, default={self.default!r})"


class Definition:
    """What ``App`` and ``Component`` share: tables, functions, children."""

    def __init__(self, name: str, env: dict[str, str | EnvVar] | None = None, network: bool = False) -> None:
        self.name = check_name("component", name) if name else ""
        self.network = bool(network)
        """Whether this code's actions may open TCP connections (the sandbox refuses them otherwise)."""
        self.tables: dict[str, Table] = {}
        self.functions: dict[str, Function[Any, Any]] = {}
        self.children: dict[str, Use] = {}
        declared = dict(env or {})
        self.env_vars: dict[str, EnvVar] = {k: v for k, v in declared.items() if isinstance(v, EnvVar)}
        """The variables declared with :class:`EnvVar` (description, required, default)."""
        for k in self.env_vars:
            if not isinstance(k, str) or not ENV_NAME.match(k):
                raise ValueError(f"env: {k!r} is not a variable name (letters, digits, _; not starting with a digit)")
        defaults: dict[str, Any] = {k: v.default if isinstance(v, EnvVar) else v for k, v in declared.items()
                                    if not isinstance(v, EnvVar) or v.default is not None}
        self.env = _check_env(defaults, "env")
        """Default values: plain strings and the defaults of declared variables."""
        self.crons = Crons()
        """Static cron jobs of this app or component: ``app.crons.daily("report", send, hour_utc=3)``."""

    # --- tables ----------------------------------------------------------------

    def table(self, name: str, indexes: dict[str, list[str]] | None = None) -> Callable[[M], M]:
        """Declare a table whose documents are instances of the decorated pydantic model."""
        check_name("table", name)
        if name in self.tables:
            raise ValueError(f"table {name!r} is declared twice")
        indexes = dict(indexes or {})

        def register(model: M) -> M:
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise TypeError(f"@table({name!r}) decorates a pydantic BaseModel subclass, not {model!r}")
            cls: type[BaseModel] = model
            known = set(cls.model_fields)
            for ix, fields in indexes.items():
                check_name("index", ix)
                if ix in ("by_id", "by_creation_time"):
                    raise ValueError(f"table {name!r}: index name {ix!r} is reserved (every table has it)")
                if not isinstance(fields, (list, tuple)) or not fields:
                    raise ValueError(f"table {name!r}: index {ix!r} needs a non-empty list of fields")
                for f in fields:
                    if f.split(".")[0] not in known:
                        raise ValueError(f"table {name!r}: index {ix!r} names unknown field {f!r}")
            for f in known:
                if f.startswith("_"):
                    raise ValueError(f"table {name!r}: field names may not start with '_' ({f!r})")
            self.tables[name] = Table(name, model, {k: list(v) for k, v in indexes.items()})
            return model

        return register

    # --- functions ---------------------------------------------------------------

    def _register(self, fn: Any, kind: Kind, internal: bool) -> Function[Any, Any]:
        if not callable(fn):
            raise TypeError(f"@{kind} decorates an async function, not {fn!r}")
        f: Function[Any, Any] = Function(fn, kind, internal)
        if f.name in self.functions:
            raise ValueError(f"function {f.name!r} is defined twice")
        self.functions[f.name] = f
        return f

    @overload
    def query(self, fn: QueryHandler[_P, _R], /) -> FunctionRef[_P, _R]: ...
    @overload
    def query(self, fn: None = None, /, *, internal: bool = False
              ) -> Callable[[QueryHandler[_P, _R]], FunctionRef[_P, _R]]: ...
    def query(self, fn: Any = None, /, *, internal: bool = False) -> Any:
        """Declare a query (read-only, deterministic); ``internal=True`` hides it from callers outside.

        Examples:
            >>> @component.query
            ... async def count(ctx: QueryCtx, *, name: str) -> int: ...
            >>> @component.query(internal=True)
            ... async def shards(ctx: QueryCtx, *, name: str) -> list[int]: ...
        """
        return self._decorate(fn, "query", internal)

    @overload
    def mutation(self, fn: MutationHandler[_P, _R], /) -> FunctionRef[_P, _R]: ...
    @overload
    def mutation(self, fn: None = None, /, *, internal: bool = False
                 ) -> Callable[[MutationHandler[_P, _R]], FunctionRef[_P, _R]]: ...
    def mutation(self, fn: Any = None, /, *, internal: bool = False) -> Any:
        """Declare a mutation (a serializable read-write transaction)."""
        return self._decorate(fn, "mutation", internal)

    @overload
    def action(self, fn: ActionHandler[_P, _R], /) -> FunctionRef[_P, _R]: ...
    @overload
    def action(self, fn: None = None, /, *, internal: bool = False
               ) -> Callable[[ActionHandler[_P, _R]], FunctionRef[_P, _R]]: ...
    def action(self, fn: Any = None, /, *, internal: bool = False) -> Any:
        """Declare an action (may do I/O; not transactional)."""
        return self._decorate(fn, "action", internal)

    def _decorate(self, fn: Any, kind: Kind, internal: bool) -> Any:
        if fn is None:
            return lambda f: self._register(f, kind, internal)
        return self._register(fn, kind, internal)

    # --- children ----------------------------------------------------------------

    def use(self, component: str, name: str | None = None, env: dict[str, str] | None = None) -> MountRef:
        """Install a child component by import path, ``module:attr`` or registered name.

        The default instance name is the last part of the import path.  Several
        instances of one component are fine under different names.
        """
        if not isinstance(component, str) or not component.strip():
            raise TypeError(
                "use() takes the component's import path or registered name as a string "
                f"(e.g. 'components.sharded_counter'), not {component!r}"
            )
        if name is None:
            name = re.split(r"[.:]", component)[-1] if ":" not in component else component.split(":")[0].split(".")[-1]
        check_name("mount", name)
        if name in self.children:
            raise ValueError(f"a component is already mounted as {name!r}; pass another name=")
        self.children[name] = Use(name, component, _check_env(env or {}, f"env of {name!r}"))
        return MountRef(name)

    def manifest(self) -> dict[str, Any]:
        """Plain-data description of this definition, for the coordinator."""
        return {
            "name": self.name,
            "network": self.network,
            "functions": {n: f.manifest() for n, f in self.functions.items()},
            "tables": {n: t.manifest() for n, t in self.tables.items()},
            "children": [{"name": u.name, "spec": u.spec, "env": u.env} for u in self.children.values()],
            "crons": self.crons.manifest(),
            "env_vars": {n: v.manifest() for n, v in self.env_vars.items()},
        }


_DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_CRON_ID = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,127}$")


class Crons:
    """The cron jobs of one definition, each with a unique name; all times are UTC.

    The target is a function reference (one of this mount's own functions, or a
    direct child's public one) that is a mutation (runs exactly once per run)
    or an action (at most once); ``args`` are its arguments.  A cron never
    overlaps itself: a run due while the previous one is still going is skipped
    (and logged).  Where ``minute_utc`` is left out, a stable minute is picked
    per cron, to spread load.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, dict[str, Any]] = {}

    def _add(self, name: str, schedule: dict[str, Any], ref: FunctionRef[..., Any],
             args: dict[str, Any] | None) -> None:
        if not isinstance(name, str) or not _CRON_ID.match(name):
            raise ValueError(f"cron name {name!r} must be 1-128 printable ASCII characters")
        if name in self._jobs:
            raise ValueError(f"cron {name!r} is registered twice")
        if not isinstance(ref, FunctionRef):
            raise TypeError(f"cron {name!r}: the target must be a function reference (a decorated function or "
                            f"mount.function), not {ref!r}")
        if ref.kind == "query":
            raise TypeError(f"cron {name!r}: {ref.name!r} is a query; crons run mutations and actions")
        if args is not None and not isinstance(args, dict):
            raise TypeError(f"cron {name!r}: args must be a dict of keyword arguments, not {type(args).__name__}")
        self._jobs[name] = {"name": name, "schedule": schedule, "ref": ref.to_wire(), "args": dict(args or {})}

    def interval(self, name: str, ref: FunctionRef[..., Any], *, seconds: int = 0, minutes: int = 0, hours: int = 0,
                 args: dict[str, Any] | None = None) -> None:
        """Run every ``seconds``/``minutes``/``hours`` (exactly one, a positive int); the first run is at deploy."""
        given = [(u, v) for u, v in (("seconds", seconds), ("minutes", minutes), ("hours", hours)) if v]
        if len(given) != 1 or not isinstance(given[0][1], int) or isinstance(given[0][1], bool) or given[0][1] < 1:
            raise ValueError(f"cron {name!r}: give exactly one of seconds=, minutes=, hours= as a positive int")
        unit, n = given[0]
        self._add(name, {"kind": "interval", "seconds": n * {"seconds": 1, "minutes": 60, "hours": 3600}[unit]},
                  ref, args)

    def hourly(self, name: str, ref: FunctionRef[..., Any], *, minute_utc: int | None = None,
               args: dict[str, Any] | None = None) -> None:
        """Run once an hour, at ``minute_utc``."""
        self._add(name, {"kind": "hourly", "minute": _field(name, "minute_utc", minute_utc, 0, 59)}, ref, args)

    def daily(self, name: str, ref: FunctionRef[..., Any], *, hour_utc: int, minute_utc: int | None = None,
              args: dict[str, Any] | None = None) -> None:
        """Run once a day at ``hour_utc:minute_utc``."""
        self._add(name, {"kind": "daily", "hour": _field(name, "hour_utc", hour_utc, 0, 23, required=True),
                         "minute": _field(name, "minute_utc", minute_utc, 0, 59)}, ref, args)

    def weekly(self, name: str, ref: FunctionRef[..., Any], *, day_of_week: str, hour_utc: int,
               minute_utc: int | None = None, args: dict[str, Any] | None = None) -> None:
        """Run once a week (``day_of_week`` is ``"monday"``...)."""
        if not isinstance(day_of_week, str) or day_of_week.lower() not in _DAYS:
            raise ValueError(f"cron {name!r}: day_of_week must be one of {', '.join(_DAYS)}, not {day_of_week!r}")
        self._add(name, {"kind": "weekly", "day_of_week": _DAYS.index(day_of_week.lower()),
                         "hour": _field(name, "hour_utc", hour_utc, 0, 23, required=True),
                         "minute": _field(name, "minute_utc", minute_utc, 0, 59)}, ref, args)

    def monthly(self, name: str, ref: FunctionRef[..., Any], *, day: int, hour_utc: int, minute_utc: int | None = None,
                args: dict[str, Any] | None = None) -> None:
        """Run once a month on ``day`` (1-31; months without that day are skipped)."""
        self._add(name, {"kind": "monthly", "day": _field(name, "day", day, 1, 31, required=True),
                         "hour": _field(name, "hour_utc", hour_utc, 0, 23, required=True),
                         "minute": _field(name, "minute_utc", minute_utc, 0, 59)}, ref, args)

    def cron(self, name: str, expression: str, ref: FunctionRef[..., Any], *,
             args: dict[str, Any] | None = None) -> None:
        """Run on a five-field cron expression (``"m h dom mon dow"``, UTC, Sunday = 0)."""
        if not isinstance(expression, str) or len(expression.split()) != 5:
            raise ValueError(f"cron {name!r}: {expression!r} is not a five-field cron expression (m h dom mon dow)")
        self._add(name, {"kind": "cron", "expression": " ".join(expression.split())}, ref, args)

    def manifest(self) -> list[dict[str, Any]]:
        """Plain-data description of every cron, for the coordinator."""
        return list(self._jobs.values())


def _field(cron: str, what: str, value: Any, lo: int, hi: int, required: bool = False) -> int | None:
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"cron {cron!r}: {what} must be an int from {lo} to {hi}, not {value!r}")
    return value


def _check_env(env: dict[str, str], what: str) -> dict[str, str]:
    if not isinstance(env, dict):
        raise TypeError(f"{what} must be a dict of str to str")
    for k, v in env.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"{what}: variables and values must be strings ({k!r}: {v!r})")
    return dict(env)


class App(Definition):
    """The root of a deployment: ``app = App()`` in the app module."""

    def __init__(self, env: dict[str, str | EnvVar] | None = None, network: bool = False) -> None:
        super().__init__("", env, network)


class Component(Definition):
    """A reusable component: ``component = Component("name")`` in its ``component`` module."""

    def __init__(self, name: str, env: dict[str, str | EnvVar] | None = None, network: bool = False) -> None:
        if not name:
            raise ValueError("a component needs a name")
        super().__init__(name, env, network)
