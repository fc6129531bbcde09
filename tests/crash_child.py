"""Child process of ``test_crash_durability``: commit forever until killed with SIGKILL.

Usage: ``python tests/crash_child.py DATA_DIR``

It opens the Storage at ``DATA_DIR`` (reopening whatever an earlier, killed
child left there), defines the tables (idempotent), makes sure each writer
thread has its counter document, prints one ``READY <json>`` line, then runs
``THREADS`` writer threads.  Each loop of a writer is one transaction that

* reads the thread's counter document (``count`` = transactions of this thread
  committed so far),
* inserts ``K`` documents ``{"txn": n, "part": i, "thread": t}`` with
  ``n = t * 10**6 + count + 1`` into ``items``,
* patches the counter to ``{"count": count + 1, "last": n}``,

and commits it.  Only after ``Committer.commit()`` has returned does the thread
write the acknowledgement line ``n\\n`` to stdout, in a single ``write(2)``
under a lock, so the parent sees every acknowledgement whole or not at all.

Because ``n`` is derived from the committed counter, numbers stay unique and
contiguous per thread across crashes and restarts; the parent uses that to
check that nothing acknowledged was lost and nothing partial is visible.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

# Test the checkout this script belongs to, whatever else is installed (the parent
# checks that it imported the same ``runtime`` package as itself).
_CHECKOUT = Path(__file__).resolve().parents[1]
if (_CHECKOUT / "runtime" / "__init__.py").is_file():
    sys.path.insert(0, str(_CHECKOUT))

import runtime  # noqa: E402
from runtime.errors import ConflictError  # noqa: E402
from runtime.storage import Storage  # noqa: E402
from runtime.transactions import Committer, IndexRange, Transaction  # noqa: E402

MOUNT = ""
ITEMS = "items"
COUNTERS = "counters"
ITEMS_INDEXES = {"by_txn": ["txn"]}
COUNTERS_INDEXES = {"by_thread": ["thread"]}
THREADS = 4
"""Writer threads; several, so that group commit really puts several transactions in one round."""
THREAD_IDS = tuple(range(1, THREADS + 1))
K = 3
"""Documents inserted per transaction."""
TXN_STRIDE = 10**6
"""``n = thread * TXN_STRIDE + sequence``."""
MAX_LIFETIME_S = float(os.environ.get("CRASH_CHILD_MAX_LIFETIME_S", "120"))
"""Safety net: a child nobody kills exits on its own (the parent treats that as a failure)."""

_out_lock = threading.Lock()


def emit(line: str) -> None:
    """Write one whole line to stdout with one write(2) (short lines to a pipe are atomic)."""
    data = (line + "\n").encode("ascii")
    with _out_lock:
        written = os.write(1, data)
        while written < len(data):  # cannot happen for a pipe and < PIPE_BUF bytes; be safe anyway
            written += os.write(1, data[written:])


def die(code: int, message: str) -> None:
    """Report on stderr and exit at once (the parent expects death by SIGKILL only)."""
    try:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
    finally:
        os._exit(code)


def ensure_counters(storage: Storage, committer: Committer) -> dict[int, str]:
    """The counter document Id of every writer thread, creating missing ones in one transaction."""
    for _attempt in range(100):
        txn = Transaction(storage, now=time.time())
        try:
            ids: dict[int, str] = {}
            for t in THREAD_IDS:
                docs, _, _ = txn.scan(MOUNT, COUNTERS, "by_thread", IndexRange(eq=(("thread", t),)))
                if len(docs) > 1:
                    die(5, f"thread {t} has {len(docs)} counter documents: {docs!r}")
                if docs:
                    ids[t] = docs[0]["_id"]
                else:
                    ids[t] = txn.insert(MOUNT, COUNTERS, {"thread": t, "count": 0, "last": None})
            prepared = txn.prepare()
        finally:
            txn.close()
        try:
            committer.commit(prepared)
        except ConflictError:
            continue
        return ids
    die(6, "could not create the counter documents (conflicts)")
    raise AssertionError("unreachable")


def writer(storage: Storage, committer: Committer, t: int, counter_id: str) -> None:
    """Commit transactions forever; acknowledge each one after commit() returned."""
    try:
        while True:
            txn = Transaction(storage, now=time.time())
            try:
                counter = txn.get(MOUNT, counter_id)
                if counter is None:
                    die(7, f"thread {t}: counter document {counter_id} vanished")
                n = t * TXN_STRIDE + counter["count"] + 1
                for i in range(K):
                    txn.insert(MOUNT, ITEMS, {"txn": n, "part": i, "thread": t})
                txn.patch(MOUNT, counter_id, {"count": counter["count"] + 1, "last": n})
                prepared = txn.prepare()
            finally:
                txn.close()
            try:
                committer.commit(prepared)
            except ConflictError:
                continue  # nobody else writes this thread's counter, but retrying is always safe
            emit(str(n))
    except BaseException:  # any failure of a writer fails the test
        die(3, f"writer thread {t} failed:\n{traceback.format_exc()}")


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        die(2, f"usage: {argv[0]} DATA_DIR")
    watchdog = threading.Timer(MAX_LIFETIME_S, die, (4, f"not killed within {MAX_LIFETIME_S} s; exiting"))
    watchdog.daemon = True
    watchdog.start()
    storage = Storage.open(argv[1])
    storage.define_table(MOUNT, ITEMS, ITEMS_INDEXES)
    storage.define_table(MOUNT, COUNTERS, COUNTERS_INDEXES)
    committer = Committer(storage).start()
    counter_ids = ensure_counters(storage, committer)
    flags = storage.env.lmdb.flags()
    emit("READY " + json.dumps(
        {"pid": os.getpid(), "lmdb_flags": flags, "counters": counter_ids, "runtime": runtime.__file__},
        sort_keys=True,
    ))
    threads = [
        threading.Thread(target=writer, args=(storage, committer, t, counter_ids[t]), name=f"writer-{t}", daemon=True)
        for t in THREAD_IDS
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()  # writers never return; they die with the process
    die(8, "writer threads returned")


if __name__ == "__main__":
    try:
        main(sys.argv)
    except BaseException:
        die(9, f"crash_child failed:\n{traceback.format_exc()}")
