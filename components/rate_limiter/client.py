"""``RateLimiter``: the client wrapper an app imports.  It never imports the implementation.

``limit`` / ``reset`` / ``fold`` / ``clear_all`` write (any ctx that runs mutations: a mutation's or an
action's); ``check`` / ``retry_after`` / ``get_value`` only read (any ctx, a query's too).
"""


from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter

from components.rate_limiter.shared import FixedWindow, LimitConfig, TokenBucket
from runtime import ComponentError, MountRef, NotFoundError, RunMutationCtx, RunQueryCtx

_CONFIG: TypeAdapter[TokenBucket | FixedWindow] = TypeAdapter(LimitConfig)


def is_rate_limit_error(err: BaseException) -> bool:
    """Whether ``err`` is the ``ComponentError`` a ``throws=True`` call raises when rate limited."""
    return isinstance(err, ComponentError) and isinstance(err.data, dict) and err.data.get("kind") == "RateLimited"


class RateLimiter:
    """Named limits, configured once, enforced by one mounted ``rate_limiter``.

    Args:
        mount: what ``app.use("rate_limiter", name=...)`` returned.
        limits: limit name -> configuration (``token_bucket(...)``, ``fixed_window(...)``, or an
            equivalent dict with ``kind``).  Several ``RateLimiter`` objects may share one mount
            as long as their names do not overlap.

    Every result is ``{"ok": bool, "retry_after": float | None, "remaining": float}``;
    ``retry_after`` is in seconds, ``remaining`` is what is left in the shard(s) the call
    used (below 0 when reserved).
    """

    def __init__(self, mount: MountRef, limits: Mapping[str, TokenBucket | FixedWindow | dict[str, Any]]
                 | None = None) -> None:
        self.mount = mount
        self.limits: dict[str, TokenBucket | FixedWindow] = {
            name: _CONFIG.validate_python(cfg) for name, cfg in (limits or {}).items()
        }

    def config(self, name: str, config: TokenBucket | FixedWindow | dict[str, Any] | None = None
               ) -> TokenBucket | FixedWindow:
        """The configuration of ``name`` (``config`` given inline wins)."""
        if config is not None:
            return _CONFIG.validate_python(config)
        try:
            return self.limits[name]
        except KeyError:
            known = ", ".join(sorted(self.limits)) or "none"
            raise NotFoundError(f"no rate limit named {name!r} is configured (configured: {known}); "
                                "pass config= or add it to RateLimiter(mount, limits)") from None

    def _args(self, name: str, config: Any, **kw: Any) -> dict[str, Any]:
        return {"name": name, "config": self.config(name, config).model_dump(), **kw}

    async def limit(self, ctx: RunMutationCtx, name: str, *, key: str | None = None, count: float = 1,
                    reserve: bool = False, throws: bool = False, config: Any = None) -> dict[str, Any]:
        """Consume ``count`` (a mutation): refused calls write nothing.

        ``throws=True`` raises ``ComponentError({"kind": "RateLimited", "name", "retry_after"})``
        instead of returning ``ok: False`` — and also when a reservation succeeds with a
        ``retry_after`` (the caller has to wait either way).
        """
        res: dict[str, Any] = await ctx.run_mutation(
            self.mount.limit, **self._args(name, config, key=key, count=float(count), reserve=reserve))
        if throws and (not res["ok"] or res["retry_after"] is not None):
            raise ComponentError({"kind": "RateLimited", "name": name, "retry_after": res["retry_after"]},
                                 f"rate limit {name!r} exceeded; retry after {res['retry_after']:.3f} s")
        return res

    async def check(self, ctx: RunQueryCtx, name: str, *, key: str | None = None, count: float = 1,
                    reserve: bool = False, throws: bool = False, config: Any = None) -> dict[str, Any]:
        """What ``limit`` would answer, consuming nothing (works in queries)."""
        res: dict[str, Any] = await ctx.run_query(
            self.mount.check, **self._args(name, config, key=key, count=float(count), reserve=reserve))
        if throws and (not res["ok"] or res["retry_after"] is not None):
            raise ComponentError({"kind": "RateLimited", "name": name, "retry_after": res["retry_after"]},
                                 f"rate limit {name!r} exceeded; retry after {res['retry_after']:.3f} s")
        return res

    async def retry_after(self, ctx: RunQueryCtx, name: str, *, key: str | None = None, count: float = 1,
                          config: Any = None) -> float:
        """Seconds until ``limit(name, count=count)`` would succeed (0.0: it would now)."""
        res = await self.check(ctx, name, key=key, count=count, config=config)
        return 0.0 if res["ok"] else float(res["retry_after"])

    async def reset(self, ctx: RunMutationCtx, name: str, *, key: str | None = None) -> int:
        """Forget ``name`` for ``key`` (it starts full again); return the documents deleted."""
        return int(await ctx.run_mutation(self.mount.reset, name=name, key=key))

    async def get_value(self, ctx: RunQueryCtx, name: str, *, key: str | None = None, sample_shards: int = 1,
                        config: Any = None) -> dict[str, Any]:
        """``{value, ts, shard, config}``: tokens left in the fullest of ``sample_shards`` sampled shards."""
        value: dict[str, Any] = await ctx.run_query(
            self.mount.get_value, **self._args(name, config, key=key, sample_shards=sample_shards))
        return value

    async def fold(self, ctx: RunMutationCtx, name: str, *, key: str | None = None, config: Any = None) -> int:
        """Lazy limits: fold the queued consumption into the bucket now; return entries folded."""
        return int(await ctx.run_mutation(self.mount.fold_pending, **self._args(name, config, key=key)))

    async def clear_all(self, ctx: RunMutationCtx, *, before: float | None = None, page_size: int = 100,
                        reschedule: bool = False) -> dict[str, Any]:
        """Delete one page of stored buckets (``ts < before``); ``{deleted, more}``.

        ``reschedule=True``: the component schedules the next pages itself; else call again while ``more``.
        """
        res: dict[str, Any] = await ctx.run_mutation(self.mount.clear_all, before=before, page_size=page_size,
                                                     reschedule=reschedule)
        return res
