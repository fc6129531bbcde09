"""The aggregate component at 100,000 items, through a real daemon, beside a full scan.

The suite loads 100,000 items (quick: 10,000) twice (key ``i``, sum ``i``, sorted
order, 1,000 per mutation through ``write_batch``) into a default aggregate (node size 16,
lazy root) mounted under a bench app, then times client calls of app queries
that call the component, every figure in alternating rounds after a warm-up round:

- ``aggregate.count_100k`` (µs): ``count()`` of the whole tree (the tree row,
  the lazy root and its children's stored totals).
- ``aggregate.at_100k`` (µs): ``at(offset)`` at random offsets (one descent).
- ``aggregate.index_of_100k`` (µs): ``index_of(key)`` of random keys.
- ``aggregate.full_scan_100k`` (µs): the baseline — counting the same 100,000
  items by reading every one of them, page by page (5,000 items per query, as
  many queries as it takes; each page is bounded by the per-transaction read
  limits).  It reads the B-tree's leaves (~8 items per document after sorted
  inserts), so it is *cheaper* than scanning a table of 100,000 documents
  would be: the ratios understate the gain over a real table scan.
- ``aggregate.load_100k`` (items/s): the bulk load itself.
- ``aggregate.eager.count_100k`` / ``.at_100k`` / ``.index_of_100k`` (µs): the
  same on a second copy of the items whose root is eager (stores its
  children's totals: count/sum read one node; every write rewrites the root).
  Baseline: the lazy-root figure.

Every call carries a different argument (a salt or a random offset), so the
daemon's query cache never answers; each figure is a real transaction.
"""

import random
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness import BenchContext
from runtime.testing import RunningDaemon

NAME = "aggregate"
DESCRIPTION = "aggregate component: count / at / index_of at 100,000 items vs a full scan, bulk load rate"
ORDER = 70

APP = Path(__file__).parent / "apps" / "aggregate"
ITEMS = 100_000
QUICK_ITEMS = 10_000
"""Quick mode loads a tenth of the items (the figures keep their ``_100k`` names; the notes say how many)."""
BATCH = 1_000
"""Items per load mutation: about 0.1 s each on an idle machine; 4,000 passed the 1 s limit under load."""
SCAN_PAGE = 5_000


def _full_scan(c: object) -> int:
    seen, cursor, salt = 0, None, random.getrandbits(48)
    while True:
        res = c.query("scan_page", cursor=cursor, page_size=SCAN_PAGE, salt=salt)  # type: ignore[attr-defined]
        seen += res["n"]
        if res["done"]:
            return seen
        cursor = res["cursor"]


def run(ctx: BenchContext) -> None:
    d = RunningDaemon(ctx.tmpdir("bh-aggregate-") / "data").start()
    ctx.defer(d.stop)
    d.deploy(APP)
    n = ctx.pick(300, 15)
    reps = ctx.repeats(5, 3)
    items = ctx.pick(ITEMS, QUICK_ITEMS)
    rng = random.Random(1)
    with d.client(timeout=300.0) as c:
        for board in ("lazy", "eager"):
            t0 = time.perf_counter()
            for start in range(0, items, BATCH):
                c.mutation("load", board=board, start=start, n=BATCH)
            if board == "lazy":
                load_s = time.perf_counter() - t0
                ctx.record("aggregate.load_100k", "items/s", [items / load_s], better="higher",
                           note=f"{items:,} items, {BATCH} sorted per mutation (write_batch), one sample")
            assert c.query("count", board=board, salt=-1) == items
        salts = iter(range(10**9))
        rounds: dict[str, Callable[[], list[float]]] = {}
        for board, prefix in (("lazy", "aggregate"), ("eager", "aggregate.eager")):
            figures = (("count", lambda board=board: c.query("count", board=board, salt=next(salts))),
                       ("at", lambda board=board: c.query("at", board=board, offset=rng.randrange(-items, items))),
                       ("index_of", lambda board=board: c.query("index_of", board=board, key=rng.randrange(items))))
            for what, call in figures:
                rounds[f"{prefix}.{what}_100k"] = lambda call=call: ctx.time_calls(call, n)

        def scan() -> list[float]:
            t = time.perf_counter()
            assert _full_scan(c) == items
            return [(time.perf_counter() - t) * 1e6]

        rounds["aggregate.full_scan_100k"] = scan
        got = ctx.interleave(rounds, reps)
        for name, samples in got.items():
            if name == "aggregate.full_scan_100k":
                ctx.record(name, "us", samples, note=f"every one of {items:,} items read, {SCAN_PAGE} per query "
                                                     f"({items // SCAN_PAGE} queries)")
            elif name.startswith("aggregate.eager."):
                ctx.record(name, "us", samples, baseline=name.replace(".eager", ""))
            else:
                ctx.record(name, "us", samples, baseline="aggregate.full_scan_100k")
