"""Sharded counter: a number per key, split over shard documents so concurrent adds rarely conflict.

The app imports the client wrapper only::

    from components.sharded_counter import ShardedCounter
    likes = ShardedCounter(app.use("sharded_counter", name="likes"), shards={"hot": 32})

The implementation (``component.py``) runs only in the mount's own workers.
"""

from components.sharded_counter.client import CounterKey, CounterTrigger, ShardedCounter

__all__ = ["CounterKey", "CounterTrigger", "ShardedCounter"]
