"""Deterministic stand-ins for ``time``, ``random``, ``uuid``, ``datetime`` and ``asyncio.sleep``.

User code that imports one of these modules (through the sandbox's
``__import__``) gets a shim module: a copy of the real one whose clock and
randomness come from the *current invocation* when it is a query or a
mutation — the transaction's frozen time and its seeded generator, so a
re-run after an OCC conflict sees the same values and nested calls inherit
them — and whose sleeping raises :class:`~runtime.errors.DeterminismError`.
In actions, and at import time, the shims behave like the real modules.

This is the language layer: it catches honest mistakes, not an attacker
(who can reach the real modules; the OS layer is what holds then).
"""

from __future__ import annotations

import asyncio as _asyncio
import contextvars
import datetime as _datetime
import random as _random
import time as _time
import types
import uuid as _uuid
from typing import Any

from runtime.errors import DeterminismError

CURRENT: contextvars.ContextVar[tuple[str, float, _random.Random] | None] = contextvars.ContextVar(
    "bulkhead_determinism", default=None
)
"""``(kind, frozen now, seeded generator)`` of the running invocation."""


def _frozen() -> tuple[float, _random.Random] | None:
    cur = CURRENT.get()
    if cur is None or cur[0] not in ("query", "mutation"):
        return None
    return cur[1], cur[2]


def _refuse(what: str, hint: str) -> DeterminismError:
    kind = (CURRENT.get() or ("?",))[0]
    return DeterminismError(f"{what} is not allowed in a {kind}: {hint}", used=what)


def _copy(module: types.ModuleType) -> types.ModuleType:
    shim = types.ModuleType(module.__name__, module.__doc__)
    shim.__dict__.update({k: v for k, v in vars(module).items() if k not in ("__loader__", "__spec__")})
    return shim


# --- time ----------------------------------------------------------------------------------


def _time_time() -> float:
    f = _frozen()
    return f[0] if f else _time.time()


def _time_time_ns() -> int:
    f = _frozen()
    return int(f[0] * 1e9) if f else _time.time_ns()


def _monotonic() -> float:
    f = _frozen()
    return f[0] if f else _time.monotonic()


def _sleep(seconds: float) -> None:
    if _frozen():
        raise _refuse("time.sleep", "queries and mutations cannot wait; use an action or ctx.scheduler")
    _time.sleep(seconds)


time = _copy(_time)
time.time, time.time_ns, time.sleep = _time_time, _time_time_ns, _sleep  # type: ignore[attr-defined]
time.monotonic = time.perf_counter = _monotonic  # type: ignore[attr-defined]
time.monotonic_ns = time.perf_counter_ns = lambda: int(_monotonic() * 1e9)  # type: ignore[attr-defined]


# --- random ------------------------------------------------------------------------------------

_global_rng = _random.Random()


def _rng() -> _random.Random:
    f = _frozen()
    return f[1] if f else _global_rng


random = _copy(_random)
for _name in ("random", "uniform", "randint", "randrange", "choice", "choices", "shuffle", "sample", "getrandbits",
              "gauss", "normalvariate", "triangular", "betavariate", "expovariate", "lognormvariate", "paretovariate",
              "vonmisesvariate", "weibullvariate", "gammavariate", "randbytes"):
    setattr(random, _name, (lambda n: lambda *a, **k: getattr(_rng(), n)(*a, **k))(_name))
random.seed = lambda *a, **k: _rng().seed(*a, **k)  # type: ignore[attr-defined]


class _SystemRandom(_random.SystemRandom):
    def __init__(self, *args: Any) -> None:
        if _frozen():
            raise _refuse("random.SystemRandom", "use ctx.random or the random module (seeded per transaction)")
        super().__init__(*args)


random.SystemRandom = _SystemRandom  # type: ignore[attr-defined]


# --- uuid ---------------------------------------------------------------------------------------


def _uuid4() -> _uuid.UUID:
    f = _frozen()
    if not f:
        return _uuid.uuid4()
    return _uuid.UUID(int=f[1].getrandbits(128), version=4)


def _uuid1(*args: Any) -> _uuid.UUID:
    if _frozen():
        raise _refuse("uuid.uuid1", "it reads the clock and the host; use uuid.uuid4 (seeded per transaction)")
    return _uuid.uuid1(*args)


uuid = _copy(_uuid)
uuid.uuid4, uuid.uuid1 = _uuid4, _uuid1  # type: ignore[attr-defined]


# --- datetime -------------------------------------------------------------------------------------


class _DateTime(_datetime.datetime):
    @classmethod
    def now(cls, tz: _datetime.tzinfo | None = None) -> _DateTime:
        return cls.fromtimestamp(_time_time(), tz)

    @classmethod
    def utcnow(cls) -> _DateTime:
        return cls.fromtimestamp(_time_time(), _datetime.UTC).replace(tzinfo=None)

    @classmethod
    def today(cls) -> _DateTime:
        return cls.fromtimestamp(_time_time())


class _Date(_datetime.date):
    @classmethod
    def today(cls) -> _Date:
        d = _datetime.date.fromtimestamp(_time_time())
        return cls(d.year, d.month, d.day)


datetime = _copy(_datetime)
datetime.datetime, datetime.date = _DateTime, _Date  # type: ignore[attr-defined]


# --- asyncio --------------------------------------------------------------------------------------


async def _async_sleep(delay: float, result: Any = None) -> Any:
    if _frozen() and delay > 0:
        raise _refuse("asyncio.sleep", "queries and mutations cannot wait; use an action or ctx.scheduler")
    return await _asyncio.sleep(delay, result)


asyncio = _copy(_asyncio)
asyncio.sleep = _async_sleep  # type: ignore[attr-defined]

SHIMS: dict[str, types.ModuleType] = {"time": time, "random": random, "uuid": uuid, "datetime": datetime,
                                      "asyncio": asyncio}
"""Top-level module name -> the shim user code gets instead."""
