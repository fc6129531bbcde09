"""``ActionRetrier``: the client wrapper an app (or another component) imports.  It never imports the implementation.

``run`` / ``run_at`` / ``run_after`` / ``cancel`` / ``cleanup`` write (a mutation's or an action's ctx);
``status`` only reads (any ctx, a query's too).
"""


import math
from datetime import datetime
from typing import Any

from components.action_retrier.shared import RetryOptions, make_options
from runtime import ActionCtx, FunctionRef, MountRef, MutationCtx, RunMutationCtx, RunQueryCtx, ValidationError

ActionTarget = FunctionRef[..., Any] | str
"""An action: a function reference of the calling mount, or a function handle string."""


OPTION_NAMES = ("initial_backoff", "base", "max_failures", "max_attempts", "jitter", "log_level")


def _checked_options(**given: Any) -> RetryOptions:
    unknown = sorted(set(given) - {*OPTION_NAMES, "defaults"})
    if unknown:
        raise ValidationError(f"action retrier options: unknown option(s) {', '.join(unknown)} "
                              f"(known: {', '.join(OPTION_NAMES)})")
    try:
        return make_options(**given)
    except ValueError as exc:  # pydantic's ValidationError is one too
        errors = getattr(exc, "errors", None)
        if callable(errors):
            text = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors())
        else:
            text = str(exc)
        raise ValidationError(f"action retrier options: {text}") from None


class ActionRetrier:
    """Runs actions with retries, backoff and jitter, durably, through one mounted ``action_retrier``.

    Args:
        mount: what ``app.use("action_retrier", name=...)`` returned.
        initial_backoff: seconds before the first retry (0.25); each retry waits ``base`` times longer.
        base: the backoff's growth factor (2).
        max_failures: failures retried (4: at most 5 attempts); or give ``max_attempts`` instead.
        jitter: multiply each delay by a factor from U[0.5, 1.5) (True).
        log_level: ``"DEBUG"``, ``"INFO"``, ``"WARN"`` or ``"ERROR"``; None: the mount's
            ``ACTION_RETRIER_LOG_LEVEL``, else ``"WARN"``.

    Every option can be overridden per run.  The delay after the k-th failure is
    ``initial_backoff * base ** (k - 1)`` (times the jitter): ``initial_backoff`` is the first delay.
    """

    def __init__(self, mount: MountRef, *, initial_backoff: float | None = None, base: float | None = None,
                 max_failures: int | None = None, max_attempts: int | None = None, jitter: bool | None = None,
                 log_level: str | None = None) -> None:
        self.mount = mount
        self.options = _checked_options(initial_backoff=initial_backoff, base=base, max_failures=max_failures,
                                        max_attempts=max_attempts, jitter=jitter, log_level=log_level)

    async def _handle(self, ctx: MutationCtx | ActionCtx, ref: Any, kind: str, what: str) -> str:
        if isinstance(ref, str):
            if not ref:
                raise ValidationError(f"{what}: a function handle must not be empty")
            return ref
        if not isinstance(ref, FunctionRef):
            raise ValidationError(f"{what} must be a function reference or a function handle string, not {ref!r}")
        if ref.kind is not None and ref.kind != kind:
            raise ValidationError(f"{what} must be an {kind}, and {ref.name!r} is a {ref.kind}")
        return await ctx.function_handle(ref)

    async def _start(self, ctx: MutationCtx | ActionCtx, at: float | None, action: ActionTarget,
                     args: dict[str, Any] | None, on_complete: FunctionRef[..., Any] | str | None, context: Any,
                     options: dict[str, Any]) -> str:
        if args is not None and not isinstance(args, dict):
            raise ValidationError(f"args must be a dict of the action's keyword arguments, not {args!r}")
        opts = _checked_options(**options, defaults=self.options) if options else self.options
        handle = await self._handle(ctx, action, "action", "the action to run")
        done = await self._handle(ctx, on_complete, "mutation", "on_complete") if on_complete is not None else None
        run_id: str = await ctx.run_mutation(self.mount.start, handle=handle, args=dict(args or {}),
                                             options=opts.model_dump(), on_complete=done, context=context, at=at)
        return run_id

    async def run(self, ctx: MutationCtx | ActionCtx, action: ActionTarget, args: dict[str, Any] | None = None, *,
                  on_complete: FunctionRef[..., Any] | str | None = None, context: Any = None,
                  **options: Any) -> str:
        """Start ``action(**args)`` now; return the run's Id.

        ``on_complete`` (a mutation) is called exactly once when the run completes, as
        ``on_complete(run_id=..., result=..., context=context)``; ``result`` is ``{"type": "success",
        "value"}``, ``{"type": "failed", "error", "data"}`` or ``{"type": "canceled"}`` (each with
        ``attempts``).  ``options``: ``initial_backoff``, ``base``, ``max_failures`` / ``max_attempts``,
        ``jitter``, ``log_level`` for this run.
        """
        return await self._start(ctx, None, action, args, on_complete, context, options)

    async def run_at(self, ctx: MutationCtx | ActionCtx, timestamp: float | datetime, action: ActionTarget,
                     args: dict[str, Any] | None = None, *, on_complete: FunctionRef[..., Any] | str | None = None,
                     context: Any = None, **options: Any) -> str:
        """Like ``run``, first attempt at ``timestamp`` (seconds since the epoch, or an aware datetime)."""
        at = timestamp.timestamp() if isinstance(timestamp, datetime) else timestamp
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
            raise ValidationError(f"run_at takes seconds since the epoch or a datetime, not {timestamp!r}")
        return await self._start(ctx, float(at), action, args, on_complete, context, options)

    async def run_after(self, ctx: MutationCtx | ActionCtx, delay: float, action: ActionTarget,
                        args: dict[str, Any] | None = None, *, on_complete: FunctionRef[..., Any] | str | None = None,
                        context: Any = None, **options: Any) -> str:
        """Like ``run``, first attempt ``delay`` seconds from now."""
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not math.isfinite(delay) or delay < 0:
            raise ValidationError(f"run_after takes a delay of seconds >= 0, not {delay!r}")
        return await self._start(ctx, ctx.now() + float(delay), action, args, on_complete, context, options)

    async def status(self, ctx: RunQueryCtx, run_id: str) -> dict[str, Any]:
        """``{"type": "in_progress", "attempt", "num_failures", "running", "next_attempt_at", "last_error", ...}``
        or ``{"type": "completed", "result", "completed_at"}``; NotFoundError once the run is cleaned up."""
        value: dict[str, Any] = await ctx.run_query(self.mount.status, run_id=run_id)
        return value

    async def cancel(self, ctx: RunMutationCtx, run_id: str) -> bool:
        """Cancel the run: True, or False if it had completed already.  ``on_complete`` gets ``canceled``."""
        return bool(await ctx.run_mutation(self.mount.cancel, run_id=run_id))

    async def cleanup(self, ctx: RunMutationCtx, run_id: str) -> bool:
        """Delete a completed run now (they go by themselves 7 days after completing); a run in progress is refused."""
        return bool(await ctx.run_mutation(self.mount.cleanup, run_id=run_id))
