"""Internal: serializable OCC transactions over :mod:`runtime.storage`.

* :mod:`~runtime.transactions.readset` — index-range read sets and the overlap test;
* :mod:`~runtime.transactions.writeset` — write frames (sub-transactions);
* :mod:`~runtime.transactions.ranges` — index range expressions → key bounds;
* :mod:`~runtime.transactions.transaction` — one transaction at a snapshot;
* :mod:`~runtime.transactions.write_log` — recent commits kept for validation;
* :mod:`~runtime.transactions.committer` — validation and group commit.
"""

from runtime.transactions.committer import Committer, Ticket, wait_all
from runtime.transactions.ranges import ALL, IndexPage, IndexRange
from runtime.transactions.readset import ReadSet
from runtime.transactions.transaction import Prepared, Transaction
from runtime.transactions.write_log import WriteLog
from runtime.transactions.writeset import WriteFrames

__all__ = ["ALL", "Committer", "Ticket", "wait_all", "IndexRange", "IndexPage", "Prepared", "ReadSet", "Transaction",
           "WriteFrames", "WriteLog"]
