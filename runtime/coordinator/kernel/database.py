"""The database syscalls: ``ctx.db`` reads and writes, inside the invocation's transaction.

Every Id a worker names is checked to belong to the calling mount before
anything else (:meth:`Transaction.table_of_id`); documents are checked against
the table's JSON schema from the manifest, so a compromised worker cannot
store what its own schema forbids.
"""

from __future__ import annotations

from typing import Any

from runtime.errors import IsolationError, ValidationError
from runtime.transactions.ranges import IndexRange
from runtime.transactions.transaction import Transaction
from runtime.coordinator.kernel.invocations import Invocation
from runtime.coordinator.kernel.syscalls import SyscallRouter, SyscallSpec

READ = frozenset({"query", "mutation"})
WRITE = frozenset({"mutation"})
WRITE_DENIED = "a {kind} cannot write ({op}); only mutations write"


def _txn(inv: Invocation) -> Transaction:
    txn = inv.execution.txn
    assert txn is not None  # the router refuses database syscalls outside a transaction
    return txn


def get(inv: Invocation, args: dict[str, Any]) -> Any:
    txn, mount = _txn(inv), inv.mount.path
    doc = txn.get(mount, args["id"])
    return {"doc": doc, "table": txn.table_of_id(mount, args["id"]).name}


def scan(inv: Invocation, args: dict[str, Any]) -> Any:
    after = args.get("after")
    if after is not None and not isinstance(after, bytes):
        raise ValidationError("scan: 'after' must be the bytes of a previous result")
    limit = int(args.get("limit") or 0) or None
    docs, last, done = _txn(inv).scan(inv.mount.path, args["table"], args["index"],
                                      IndexRange.from_ops(args["range"]), args["order"], limit, after)
    return {"docs": docs, "last": last, "done": done}


def paginate(inv: Invocation, args: dict[str, Any]) -> Any:
    page = _txn(inv).paginate(inv.mount.path, args["table"], args["index"], IndexRange.from_ops(args["range"]),
                              args["order"], args.get("cursor"), args["num_items"])
    return {"page": page.page, "is_done": page.is_done, "continue_cursor": page.continue_cursor}


def insert(inv: Invocation, args: dict[str, Any]) -> Any:
    inv.mount.check_document(args["table"], args["doc"])
    return _txn(inv).insert(inv.mount.path, args["table"], args["doc"])


def _user_table(txn: Transaction, mount: str, doc_id: Any) -> str:
    table = txn.table_of_id(mount, doc_id)  # an Id of another mount is refused here
    if table.name.startswith("_"):
        raise IsolationError(f"{table.name!r} is a system table: only the runtime writes it "
                             "(use ctx.scheduler.cancel for jobs)")
    return table.name


def replace(inv: Invocation, args: dict[str, Any]) -> None:
    txn, mount = _txn(inv), inv.mount.path
    inv.mount.check_document(_user_table(txn, mount, args["id"]), args["doc"])
    txn.replace(mount, args["id"], args["doc"])


def delete(inv: Invocation, args: dict[str, Any]) -> None:
    txn, mount = _txn(inv), inv.mount.path
    _user_table(txn, mount, args["id"])
    txn.delete(mount, args["id"])


def register(router: SyscallRouter) -> None:
    """Add the database syscalls to the router."""
    for op, fn in (("get", get), ("scan", scan), ("paginate", paginate)):
        router.register(SyscallSpec(op, READ, inline=fn))
    for op, fn in (("insert", insert), ("replace", replace), ("delete", delete)):
        router.register(SyscallSpec(op, WRITE, WRITE_DENIED, inline=fn))
