"""Action cache: memoize an action's results by name and exact arguments, with a ttl.

The app imports the client wrapper only::

    from components.action_cache import ActionCache
    cache = ActionCache(app.use("action_cache"), action=embed, ttl=3600, max_entries=500)

    @app.action
    async def embedding(ctx: ActionCtx, text: str) -> list[float]:
        return await cache.fetch(ctx, {"text": text})

Beyond the reference: single flight (concurrent misses run the action once), stale-while-revalidate, a
size cap with least-recently-used eviction.  The implementation (``component.py``, with the key hashing
of ``keys.py``) runs only in the mount's own workers.
"""

from components.action_cache.client import ActionCache, EventHook

__all__ = ["ActionCache", "EventHook"]
