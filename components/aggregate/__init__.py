"""Aggregate: ordered, counted and summed B-trees — O(log n) count, sum, rank and offset over sorted keys.

The app imports the client wrappers only::

    from components.aggregate import Aggregate, TableAggregate, Triggers
    scores = Aggregate(app.use("aggregate", name="scores"))

The implementation (``component.py``, ``store.py``) runs only in the mount's
own workers; ``btree.py`` and ``keys.py`` are pure and tested on their own.
"""

from components.aggregate.client import UNSET, Aggregate, AggregateItem, AggregatePage
from components.aggregate.tables import MirroredDb, TableAggregate, Triggers

__all__ = ["UNSET", "Aggregate", "AggregateItem", "AggregatePage", "MirroredDb", "TableAggregate", "Triggers"]
