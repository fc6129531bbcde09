"""The database syscalls: ``ctx.db`` reads and writes, inside the invocation's transaction.

Every Id a worker names is checked to belong to the calling mount before
anything else (:meth:`Transaction.table_of_id`); documents are checked against
the table's JSON schema from the manifest, so a compromised worker cannot
store what its own schema forbids.
"""

from __future__ import annotations

from typing import Any

from runtime.coordinator.kernel.invocations import Invocation
from runtime.coordinator.kernel.syscalls import Inline, SyscallRouter, SyscallSpec
from runtime.errors import IsolationError
from runtime.protocol.syscalls import (
    DeleteArgs,
    GetArgs,
    InsertArgs,
    PaginateArgs,
    ReplaceArgs,
    ScanArgs,
    SyscallOp,
)
from runtime.transactions.ranges import IndexRange
from runtime.transactions.transaction import Transaction

READ = frozenset({"query", "mutation"})
WRITE = frozenset({"mutation"})
WRITE_DENIED = "a {kind} cannot write ({op}); only mutations write"


def _txn(inv: Invocation) -> Transaction:
    txn = inv.execution.txn
    assert txn is not None  # the router refuses database syscalls outside a transaction
    return txn


def _cacheable(inv: Invocation, txn: Transaction, table: str) -> bool:
    """Whether a worker may keep this read's answer: the snapshot's own (nothing written yet, so nothing
    overlays it), of a user table, at a snapshot its worker hears every later change of."""
    since = inv.cache_since
    return since is not None and txn.ts >= since and not table.startswith("_") and not txn.has_writes()


def get(inv: Invocation, args: GetArgs) -> Any:
    txn, mount = _txn(inv), inv.mount.path
    before = txn.budget()
    doc, table = txn.get_in_table(mount, args.id)
    out: dict[str, Any] = {"doc": doc, "table": table.name}
    if _cacheable(inv, txn, table.name):
        out["cache"] = [txn.ts, *txn.cache_report(before)]
    return out


def scan(inv: Invocation, args: ScanArgs) -> Any:
    txn = _txn(inv)
    before = txn.budget()
    docs, last, done = txn.scan(inv.mount.path, args.table, args.index, IndexRange.from_ops(args.range),
                                args.order, args.max_docs, args.after)
    out: dict[str, Any] = {"docs": docs, "last": last, "done": done}
    if _cacheable(inv, txn, args.table):
        out["cache"] = [txn.ts, *txn.cache_report(before)]
    return out


def paginate(inv: Invocation, args: PaginateArgs) -> Any:
    page = _txn(inv).paginate(inv.mount.path, args.table, args.index, IndexRange.from_ops(args.range),
                              args.order, args.cursor, args.num_items)
    return {"page": page.page, "is_done": page.is_done, "continue_cursor": page.continue_cursor}


def insert(inv: Invocation, args: InsertArgs) -> Any:
    inv.mount.check_document(args.table, args.doc)
    return _txn(inv).insert(inv.mount.path, args.table, args.doc, args.id)


def _user_table(txn: Transaction, mount: str, doc_id: str) -> str:
    table = txn.table_of_id(mount, doc_id)  # an Id of another mount is refused here
    if table.name.startswith("_"):
        raise IsolationError(f"{table.name!r} is a system table: only the runtime writes it "
                             "(use ctx.scheduler.cancel for jobs)")
    return table.name


def replace(inv: Invocation, args: ReplaceArgs) -> None:
    txn, mount = _txn(inv), inv.mount.path
    inv.mount.check_document(_user_table(txn, mount, args.id), args.doc)
    txn.replace(mount, args.id, args.doc)


def delete(inv: Invocation, args: DeleteArgs) -> None:
    txn, mount = _txn(inv), inv.mount.path
    _user_table(txn, mount, args.id)
    txn.delete(mount, args.id)


def register(router: SyscallRouter) -> None:
    """Add the database syscalls to the router."""
    reads: list[tuple[SyscallOp, Inline]] = [(SyscallOp.GET, get), (SyscallOp.SCAN, scan),
                                             (SyscallOp.PAGINATE, paginate)]
    for op, fn in reads:
        router.register(SyscallSpec(op, READ, inline=fn))
    writes: list[tuple[SyscallOp, Inline]] = [(SyscallOp.INSERT, insert), (SyscallOp.REPLACE, replace),
                                              (SyscallOp.DELETE, delete)]
    for op, fn in writes:
        router.register(SyscallSpec(op, WRITE, WRITE_DENIED, inline=fn))
