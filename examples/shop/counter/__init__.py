"""Client wrapper of the counter component: what an app imports (no implementation here)."""

from runtime import MountRef


class Counter:
    """Typed calls into one mounted counter."""

    def __init__(self, mount: MountRef) -> None:
        self.mount = mount

    async def add(self, ctx, name: str, amount: int = 1) -> int:
        return await ctx.run_mutation(self.mount.add, name=name, amount=amount)

    async def get(self, ctx, name: str) -> int:
        return await ctx.run_query(self.mount.get, name=name)
