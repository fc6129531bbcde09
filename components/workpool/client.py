"""``Workpool``: the client wrapper an app (or another component) imports.  It never imports the implementation.

Enqueueing, canceling and changing the parallelism write (a mutation's or an action's ctx); ``status`` and
``status_batch`` only read (any ctx).  Functions to run are given as references to the caller's own functions
(turned into handles here) or as handle strings (another mount's functions, which that mount handed out).
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from components.workpool.shared import DEFAULT_RETRY, LOG_LEVELS, RetryBehavior, check_parallelism
from runtime import ActionCtx, FunctionRef, MountRef, MutationCtx, RunMutationCtx, RunQueryCtx, ValidationError

Retry = bool | RetryBehavior | dict[str, Any] | None
"""``retry=``: True (the pool's default behaviour), False, a :class:`RetryBehavior` or its fields as a dict."""


def _when(run_at: float | datetime | None) -> float | None:
    if isinstance(run_at, datetime):
        if run_at.tzinfo is None:
            raise ValidationError("run_at: a datetime must be timezone-aware (e.g. datetime.now(timezone.utc))")
        return run_at.timestamp()
    if run_at is not None and (isinstance(run_at, bool) or not isinstance(run_at, (int, float))):
        raise ValidationError(f"run_at must be seconds since the epoch or an aware datetime, not {run_at!r}")
    return None if run_at is None else float(run_at)


class Workpool:
    """A queue of jobs run by one mounted ``workpool`` with at most ``max_parallelism`` at a time.

    Args:
        mount: what ``app.use("workpool", name=...)`` returned.
        max_parallelism: 0 (paused) to 200.  Set here, it is written to the pool's config by every
            enqueue and cancel (when it differs); left None, the stored value (10 at first) rules and
            :meth:`set_max_parallelism` changes it at run time.
        retry_actions_by_default: whether ``enqueue_action`` retries when ``retry`` is not given.
        default_retry_behavior: the behaviour ``retry=True`` means (``{max_attempts: 5,
            initial_backoff_ms: 250, base: 2}`` unless given).
        log_level: ``DEBUG``, ``INFO``, ``REPORT`` (the default), ``WARNING`` or ``ERROR``; given here,
            written to the pool's config by every enqueue (when it differs), like ``max_parallelism``.
    """

    def __init__(self, mount: MountRef, *, max_parallelism: int | None = None, retry_actions_by_default: bool = False,
                 default_retry_behavior: RetryBehavior | dict[str, Any] | None = None,
                 log_level: str | None = None) -> None:
        if log_level is not None and log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, not {log_level!r}")
        self.log_level = log_level
        self.mount = mount
        self.max_parallelism = None if max_parallelism is None else check_parallelism(max_parallelism)
        self.retry_actions_by_default = bool(retry_actions_by_default)
        self.default_retry_behavior = RetryBehavior.model_validate(default_retry_behavior or DEFAULT_RETRY)

    # --- enqueue --------------------------------------------------------------------------------------------

    async def _handle(self, ctx: MutationCtx | ActionCtx, fn: FunctionRef[..., Any] | str, kind: str,
                      what: str = "fn") -> str:
        if isinstance(fn, str):
            if not fn.startswith("function://"):
                raise ValidationError(f"{what}: {fn[:40]!r} is not a function handle (ctx.function_handle(ref))")
            return fn
        if not isinstance(fn, FunctionRef):
            raise ValidationError(f"{what} must be a function reference or a function handle, not {fn!r}")
        if fn.kind is not None and fn.kind != kind:
            article = "an" if kind == "action" else "a"
            raise ValidationError(f"{what}: {fn.name!r} is a {fn.kind}, not {article} {kind}")
        if fn.path:
            raise ValidationError(f"{what}: {fn!r} is a function of mount {fn.path!r}; pass a handle that mount "
                                  "made with ctx.function_handle instead")
        return await ctx.function_handle(fn)

    def _retry(self, retry: Retry) -> dict[str, Any] | None:
        if retry is None:
            retry = self.retry_actions_by_default
        if retry is True:
            return self.default_retry_behavior.model_dump()
        if retry is False:
            return None
        try:
            return RetryBehavior.model_validate(retry).model_dump()
        except PydanticValidationError as exc:
            issues = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'retry'}: {e['msg']}" for e in exc.errors())
            raise ValidationError(f"retry: {issues}") from None

    async def _enqueue(self, ctx: MutationCtx | ActionCtx, kind: str, fn: FunctionRef[..., Any] | str,
                       args_list: Sequence[dict[str, Any]], retry: dict[str, Any] | None,
                       on_complete: FunctionRef[..., Any] | str | None, context: Any, name: str | None,
                       run_at: float | datetime | None, run_after: float | None, key: str | None) -> list[str]:
        for i, args in enumerate(args_list):
            if not isinstance(args, dict):
                raise ValidationError(f"args[{i}] must be a dict of keyword arguments, not {type(args).__name__}")
        handle = await self._handle(ctx, fn, kind)
        done = None if on_complete is None else await self._handle(ctx, on_complete, "mutation", "on_complete")
        if name is None:
            name = fn.name if isinstance(fn, FunctionRef) else ""
        ids: list[str] = await ctx.run_mutation(
            self.mount.enqueue, fn_type=kind, handle=handle, args_list=list(args_list), name=name, retry=retry,
            on_complete=done, context=context, run_at=_when(run_at), run_after=run_after, key=key,
            max_parallelism=self.max_parallelism, log_level=self.log_level)
        return ids

    async def enqueue_action(self, ctx: MutationCtx | ActionCtx, fn: FunctionRef[..., Any] | str,
                             args: dict[str, Any] | None = None, *, retry: Retry = None,
                             on_complete: FunctionRef[..., Any] | str | None = None, context: Any = None,
                             name: str | None = None, run_at: float | datetime | None = None,
                             run_after: float | None = None, key: str | None = None) -> str:
        """Queue an action; its work Id.

        ``retry`` as in :data:`Retry`; ``on_complete`` a mutation called once with ``work_id``,
        ``context`` and ``result`` (``{kind: "success", return_value} | {kind: "failed", error} |
        {kind: "canceled"}``); ``run_at`` (epoch seconds or aware datetime) / ``run_after`` (seconds)
        delay it; jobs with the same ``key`` never run at once and start in run-time order.
        """
        ids = await self._enqueue(ctx, "action", fn, [args or {}], self._retry(retry), on_complete, context, name,
                                  run_at, run_after, key)
        return ids[0]

    async def enqueue_mutation(self, ctx: MutationCtx | ActionCtx, fn: FunctionRef[..., Any] | str,
                               args: dict[str, Any] | None = None, *,
                               on_complete: FunctionRef[..., Any] | str | None = None, context: Any = None,
                               name: str | None = None, run_at: float | datetime | None = None,
                               run_after: float | None = None, key: str | None = None) -> str:
        """Queue a mutation (run exactly once, never retried); its work Id.  Options as ``enqueue_action``."""
        ids = await self._enqueue(ctx, "mutation", fn, [args or {}], None, on_complete, context, name, run_at,
                                  run_after, key)
        return ids[0]

    async def enqueue_query(self, ctx: MutationCtx | ActionCtx, fn: FunctionRef[..., Any] | str,
                            args: dict[str, Any] | None = None, *,
                            on_complete: FunctionRef[..., Any] | str | None = None, context: Any = None,
                            name: str | None = None, run_at: float | datetime | None = None,
                            run_after: float | None = None, key: str | None = None) -> str:
        """Queue a query (its result goes to ``on_complete``); its work Id.  Options as ``enqueue_action``."""
        ids = await self._enqueue(ctx, "query", fn, [args or {}], None, on_complete, context, name, run_at,
                                  run_after, key)
        return ids[0]

    async def enqueue_action_batch(self, ctx: MutationCtx | ActionCtx, fn: FunctionRef[..., Any] | str,
                                   args_list: Sequence[dict[str, Any]], *, retry: Retry = None,
                                   on_complete: FunctionRef[..., Any] | str | None = None, context: Any = None,
                                   name: str | None = None, run_at: float | datetime | None = None,
                                   run_after: float | None = None, key: str | None = None) -> list[str]:
        """``enqueue_action`` once per element of ``args_list``, in one transaction; the work Ids in order."""
        return await self._enqueue(ctx, "action", fn, args_list, self._retry(retry), on_complete, context, name,
                                   run_at, run_after, key)

    async def enqueue_mutation_batch(self, ctx: MutationCtx | ActionCtx, fn: FunctionRef[..., Any] | str,
                                     args_list: Sequence[dict[str, Any]], *,
                                     on_complete: FunctionRef[..., Any] | str | None = None, context: Any = None,
                                     name: str | None = None, run_at: float | datetime | None = None,
                                     run_after: float | None = None, key: str | None = None) -> list[str]:
        """``enqueue_mutation`` once per element of ``args_list``; the work Ids in order."""
        return await self._enqueue(ctx, "mutation", fn, args_list, None, on_complete, context, name, run_at,
                                   run_after, key)

    async def enqueue_query_batch(self, ctx: MutationCtx | ActionCtx, fn: FunctionRef[..., Any] | str,
                                  args_list: Sequence[dict[str, Any]], *,
                                  on_complete: FunctionRef[..., Any] | str | None = None, context: Any = None,
                                  name: str | None = None, run_at: float | datetime | None = None,
                                  run_after: float | None = None, key: str | None = None) -> list[str]:
        """``enqueue_query`` once per element of ``args_list``; the work Ids in order."""
        return await self._enqueue(ctx, "query", fn, args_list, None, on_complete, context, name, run_at,
                                   run_after, key)

    # --- cancel, status, config -----------------------------------------------------------------------------

    async def cancel(self, ctx: RunMutationCtx, work_id: str) -> bool:
        """Cancel a job (pending: finished as canceled now; running: no further retries); False if done."""
        return bool(await ctx.run_mutation(self.mount.cancel, id=work_id, max_parallelism=self.max_parallelism))

    async def cancel_all(self, ctx: RunMutationCtx, *, limit: int | None = None) -> int:
        """Cancel every pending and running job (at most ``limit``), 64 per transaction; the first page's count."""
        return int(await ctx.run_mutation(self.mount.cancel_all, limit=limit, max_parallelism=self.max_parallelism))

    async def status(self, ctx: RunQueryCtx, work_id: str) -> dict[str, Any]:
        """``{state: "pending" | "running", previous_attempts}`` or ``{state: "finished", result?}``."""
        value: dict[str, Any] = await ctx.run_query(self.mount.status, id=work_id)
        return value

    async def status_batch(self, ctx: RunQueryCtx, work_ids: Sequence[str]) -> list[dict[str, Any]]:
        """``status`` of each work Id, in order."""
        value: list[dict[str, Any]] = await ctx.run_query(self.mount.status_batch, ids=list(work_ids))
        return value

    async def set_max_parallelism(self, ctx: RunMutationCtx, max_parallelism: int) -> int:
        """Change the pool's parallelism at run time (0 pauses it); out-of-range values are refused."""
        try:
            check_parallelism(max_parallelism)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        return int(await ctx.run_mutation(self.mount.set_parallelism, max_parallelism=max_parallelism))

    async def set_log_level(self, ctx: RunMutationCtx, level: str) -> str:
        """What the pool logs from now on (see ``log_level``); another value is a ValidationError."""
        return str(await ctx.run_mutation(self.mount.set_log_level, level=level))

    async def set_status_ttl(self, ctx: RunMutationCtx, seconds: float) -> float:
        """Keep finished jobs' status for ``seconds`` (one day unless set)."""
        return float(await ctx.run_mutation(self.mount.set_status_ttl, seconds=float(seconds)))

    async def stats(self, ctx: RunQueryCtx) -> dict[str, Any]:
        """``{pending, running, finished, slots_in_use, max_parallelism, scheduled, payloads, to_release}``."""
        value: dict[str, Any] = await ctx.run_query(self.mount.stats)
        return value
