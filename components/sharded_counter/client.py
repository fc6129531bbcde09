"""``ShardedCounter``: the client wrapper an app (or another component) imports.

It only calls the mounted component's functions (``ctx.run_mutation`` /
``ctx.run_query``); it never imports the implementation.  Reads take any ctx
that runs queries (:class:`~runtime.RunQueryCtx`: queries, mutations,
actions), writes any that runs mutations (:class:`~runtime.RunMutationCtx`).
"""


from collections.abc import Callable, Mapping
from typing import Any

from runtime import MountRef, MutationCtx, RunMutationCtx, RunQueryCtx, ValidationError

DEFAULT_SHARDS = 16
Number = int | float
KeyOf = Callable[[dict[str, Any]], "str | None"]


class ShardedCounter:
    """Named counters, each split over several shard documents of one mounted ``sharded_counter``.

    Args:
        mount: what ``app.use("sharded_counter", name=...)`` returned.
        shards: shard count per key (``{"likes": 32}``); other keys use ``default_shards``.
        default_shards: shard count for keys not in ``shards`` (16 by default, as in the reference).
        integer: exact integer mode — every count must be an ``int``; ``count``,
            ``estimate_count`` and ``rebalance`` stay exact integers (no float drift).

    Sticky shard: within one transaction (one ``ctx``) the counter remembers
    the shard each key's first ``add`` used and sends later adds of that key to
    the same shard, so a mutation that increments a key several times writes
    one document.  Separate transactions still spread over all shards (the
    reference keeps the shard for the life of the client object; in Bulkhead
    one worker serves every call, so that would put all traffic on one shard).
    """

    def __init__(self, mount: MountRef, *, shards: Mapping[str, int] | None = None,
                 default_shards: int = DEFAULT_SHARDS, integer: bool = False) -> None:
        for key, n in {**(shards or {}), "default_shards": default_shards}.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"ShardedCounter: shard count of {key!r} must be a positive int, not {n!r}")
        self.mount = mount
        self.shards: dict[str, int] = dict(shards or {})
        self.default_shards = default_shards
        self.integer = integer

    def shards_for(self, name: str) -> int:
        """How many shards key ``name`` is spread over."""
        return self.shards.get(name, self.default_shards)

    def _sticky_of(self, ctx: RunQueryCtx) -> dict[str, int]:
        """This counter's sticky shards for the transaction of ``ctx`` (kept on the ctx, which dies with it)."""
        per_ctx: dict[int, dict[str, int]] = ctx.__dict__.setdefault("_sharded_counter_sticky", {})
        return per_ctx.setdefault(id(self), {})

    def _check(self, count: object) -> Number:
        if isinstance(count, bool) or not isinstance(count, (int, float)):
            raise ValidationError(f"counter count must be a number, not {count!r}")
        if self.integer and not isinstance(count, int):
            raise ValidationError(f"counter is in integer mode: count {count!r} is not an int")
        return count

    async def add(self, ctx: RunMutationCtx, name: str, count: Number = 1, *, shard: int | None = None) -> int:
        """Add ``count`` to ``name`` (negative subtracts); return the shard written.

        ``shard`` forces a shard; otherwise the sticky shard of this transaction, else a random one.
        """
        self._check(count)
        sticky = self._sticky_of(ctx)
        if shard is None:
            shard = sticky.get(name)
        used = await ctx.run_mutation(self.mount.add, name=name, count=count, shard=shard,
                                      shards=self.shards_for(name), integer=self.integer)
        sticky[name] = used
        return int(used)

    async def subtract(self, ctx: RunMutationCtx, name: str, count: Number = 1) -> int:
        """Subtract ``count`` from ``name``."""
        self._check(count)
        return await self.add(ctx, name, -count)

    async def inc(self, ctx: RunMutationCtx, name: str) -> int:
        """Add 1."""
        return await self.add(ctx, name, 1)

    async def dec(self, ctx: RunMutationCtx, name: str) -> int:
        """Subtract 1."""
        return await self.add(ctx, name, -1)

    async def count(self, ctx: RunQueryCtx, name: str) -> Number:
        """The exact value (reads every shard: in a mutation this conflicts with every concurrent add)."""
        value: Number = await ctx.run_query(self.mount.count, name=name)
        return value

    async def estimate_count(self, ctx: RunQueryCtx, name: str, read_from_shards: int = 1) -> Number:
        """An estimate from ``read_from_shards`` random shards (fewer reads, fewer conflicts)."""
        value: Number = await ctx.run_query(self.mount.estimate_count, name=name, read_from_shards=read_from_shards,
                                            shards=self.shards_for(name), integer=self.integer)
        return value

    async def rebalance(self, ctx: RunMutationCtx, name: str) -> None:
        """Spread the value evenly over the key's current shard count; delete shards beyond it."""
        await ctx.run_mutation(self.mount.rebalance, name=name, shards=self.shards_for(name), integer=self.integer)

    async def reset(self, ctx: RunMutationCtx, name: str) -> None:
        """Delete every shard of ``name`` (value 0)."""
        await ctx.run_mutation(self.mount.reset, name=name)
        self._sticky_of(ctx).pop(name, None)

    def for_key(self, name: str) -> "CounterKey":
        """The same methods bound to one key."""
        return CounterKey(self, name)

    def trigger(self, key: str | KeyOf) -> "CounterTrigger":
        """A table hook that keeps a counter in step with a table's inserts, deletes and updates.

        ``key`` is a fixed counter name, or a function of the document giving
        the name (``None`` to not count that document).
        """
        return CounterTrigger(self, key)


class CounterKey:
    """``counter.for_key(name)``: the counter's methods with the key filled in."""

    def __init__(self, counter: ShardedCounter, name: str) -> None:
        self.counter = counter
        self.name = name

    async def add(self, ctx: RunMutationCtx, count: Number = 1) -> int:
        """``counter.add(ctx, name, count)``."""
        return await self.counter.add(ctx, self.name, count)

    async def subtract(self, ctx: RunMutationCtx, count: Number = 1) -> int:
        """``counter.subtract(ctx, name, count)``."""
        return await self.counter.subtract(ctx, self.name, count)

    async def inc(self, ctx: RunMutationCtx) -> int:
        """``counter.inc(ctx, name)``."""
        return await self.counter.inc(ctx, self.name)

    async def dec(self, ctx: RunMutationCtx) -> int:
        """``counter.dec(ctx, name)``."""
        return await self.counter.dec(ctx, self.name)

    async def count(self, ctx: RunQueryCtx) -> Number:
        """``counter.count(ctx, name)``."""
        return await self.counter.count(ctx, self.name)

    async def estimate_count(self, ctx: RunQueryCtx, read_from_shards: int = 1) -> Number:
        """``counter.estimate_count(ctx, name, read_from_shards)``."""
        return await self.counter.estimate_count(ctx, self.name, read_from_shards)

    async def rebalance(self, ctx: RunMutationCtx) -> None:
        """``counter.rebalance(ctx, name)``."""
        await self.counter.rebalance(ctx, self.name)

    async def reset(self, ctx: RunMutationCtx) -> None:
        """``counter.reset(ctx, name)``."""
        await self.counter.reset(ctx, self.name)


class CounterTrigger:
    """Keeps a counter equal to the number of documents (per key) of one of the app's tables.

    Call its hooks from the mutations that change the table, in the same
    transaction, or let it do the write: ``insert`` / ``delete`` / ``patch``
    change the table *and* the counter together.  An update that moves a
    document from one key to another decrements the old key and increments
    the new one (the reference's trigger ignores updates).
    """

    def __init__(self, counter: ShardedCounter, key: str | KeyOf) -> None:
        if not (isinstance(key, str) or callable(key)):
            raise TypeError(f"trigger key must be a counter name or a function of the document, not {key!r}")
        self.counter = counter
        self._key = key

    def key_of(self, doc: dict[str, Any]) -> str | None:
        """The counter name a document counts towards (None: not counted)."""
        return self._key if isinstance(self._key, str) else self._key(doc)

    async def on_insert(self, ctx: RunMutationCtx, doc: dict[str, Any]) -> None:
        """Call after inserting ``doc``."""
        name = self.key_of(doc)
        if name is not None:
            await self.counter.inc(ctx, name)

    async def on_delete(self, ctx: RunMutationCtx, doc: dict[str, Any]) -> None:
        """Call after deleting ``doc`` (pass the document as it was)."""
        name = self.key_of(doc)
        if name is not None:
            await self.counter.dec(ctx, name)

    async def on_update(self, ctx: RunMutationCtx, old: dict[str, Any], new: dict[str, Any]) -> None:
        """Call after an update: moves the count if the document's key changed."""
        before, after = self.key_of(old), self.key_of(new)
        if before == after:
            return
        if before is not None:
            await self.counter.dec(ctx, before)
        if after is not None:
            await self.counter.inc(ctx, after)

    async def insert(self, ctx: MutationCtx, table: str, doc: dict[str, Any]) -> str:
        """Insert ``doc`` into the app's ``table`` and count it; return its Id."""
        new_id = await ctx.db.insert(table, doc)
        await self.on_insert(ctx, doc)
        return str(new_id)

    async def delete(self, ctx: MutationCtx, doc_id: str) -> bool:
        """Delete a document and uncount it; False if it did not exist."""
        doc = await ctx.db.get(doc_id)
        if doc is None:
            return False
        await ctx.db.delete(doc_id)
        await self.on_delete(ctx, doc)
        return True

    async def patch(self, ctx: MutationCtx, doc_id: str, fields: dict[str, Any]) -> None:
        """Patch a document; move its count if its key changed."""
        old = await ctx.db.get(doc_id)
        if old is None:
            raise ValidationError(f"cannot patch {doc_id!r}: no such document")
        await ctx.db.patch(doc_id, fields)
        await self.on_update(ctx, old, {**old, **fields})
