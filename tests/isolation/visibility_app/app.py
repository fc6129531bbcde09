"""Code and secret visibility: an escaped mount (``hunter``) beside a neighbour (``vault``).

APPSOURCE-c41d: a marker only this file holds.
"""

from components.sharded_counter import ShardedCounter
from runtime import App

app = App()
hunter = app.use("hunter", name="hunter")
vault = app.use("vault", name="vault", env={"VAULT_PASSED": "APPPASSED-9e27"})
likes = ShardedCounter(app.use("sharded_counter", name="likes"))


@app.query
async def hello(ctx) -> str:
    return "hello"
