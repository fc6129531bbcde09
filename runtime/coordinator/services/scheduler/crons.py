"""Static crons: each declared cron is a ``_crons`` document; each due run becomes a job.

A run that falls due while the previous run's job is still pending or in
progress is skipped (and logged), so a cron never overlaps itself; after
downtime a missed run happens once, not in a burst.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from runtime import systables
from runtime.coordinator.host import Deployment, Execution, Host, Mount
from runtime.coordinator.services.scheduler.cronspec import check_cron, next_run
from runtime.errors import BulkheadError, DeployError
from runtime.transactions.ranges import IndexRange
from runtime.transactions.transaction import Transaction

CRONS = systables.CRONS


class Skip(Exception):
    """The job or cron is no longer due (canceled, already run, removed): nothing to do."""


def error_text(exc: BaseException) -> str:
    if isinstance(exc, BulkheadError):
        return f"{type(exc).__name__}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


class CronRuns:
    """The scheduler's cron half (mixed into :class:`~runtime.coordinator.services.scheduler.jobs.JobScheduler`)."""

    host: Host
    stats: dict[str, int]
    _heap: list[tuple[float, int, str, str, str]]
    _seq: itertools.count[int]
    _wake: asyncio.Event
    _cron_due: dict[tuple[str, str], float]

    async def _txn(self, body: Callable[[Execution], Awaitable[Any]]) -> Any:
        raise NotImplementedError

    def _scan(self, mount: str, table: str, index: str, ops: list[list[Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def schedule(self, txn: Transaction, ex: Execution, caller: Mount, args: dict[str, Any],
                 canceled: bool = False, cron: str | None = None) -> str:
        raise NotImplementedError

    # --- static crons ----------------------------------------------------------------------------------

    def check_crons(self, mounts: dict[str, Mount]) -> None:
        """Before a deploy switches: every cron's schedule parses and its target is a mutation or action it may call."""
        for path, m in mounts.items():
            for cron in m.manifest.get("crons", []):
                check_cron(cron["schedule"], path, cron["name"])
                ref = cron["ref"]
                if ref.get("path"):
                    child = m.children.get(ref["path"])
                    target = mounts.get(child) if child else None
                    fman = target.function(ref["name"]) if target else None
                    if fman is not None and fman["visibility"] != "public":
                        fman = None
                else:
                    fman = m.function(ref["name"])
                if fman is None or fman["kind"] == "query":
                    where = f"{ref['path']}:{ref['name']}" if ref.get("path") else ref["name"]
                    raise DeployError(f"mount {m.label!r}: cron {cron['name']!r} targets {where!r}, which is not a "
                                      "mutation or action this mount may call")

    async def _sync_crons(self, dep: Deployment) -> None:
        """Make each mount's ``_crons`` match its declared crons; queue each cron's next run."""
        for path, m in dep.mounts.items():
            declared = {c["name"]: c for c in m.manifest.get("crons", [])}
            stored = self._scan(path, CRONS, "by_name", [])
            if not declared and not stored:
                continue

            async def body(ex: Execution, path: str = path, declared: dict[str, Any] = declared,
                           stored: list[dict[str, Any]] = stored) -> dict[str, float]:
                assert ex.txn is not None
                due: dict[str, float] = {}
                by_name = {d["name"]: d for d in stored}
                for name, old in by_name.items():
                    if name not in declared:
                        ex.txn.delete(path, old["_id"])
                for name, c in declared.items():
                    doc = by_name.get(name)
                    if doc is None:
                        first = ex.now if c["schedule"]["kind"] == "interval" else next_run(c["schedule"], path, name,
                                                                                              ex.now)
                        ex.txn.insert(path, CRONS, {"name": name, "schedule": c["schedule"], "ref": c["ref"],
                                                    "args": c["args"], "next_run": first, "last_run": None,
                                                    "last_job": None, "runs": 0, "skipped": 0})
                        due[name] = first
                        continue
                    fields: dict[str, Any] = {}
                    if doc["schedule"] != c["schedule"]:
                        fields["schedule"] = c["schedule"]
                        fields["next_run"] = next_run(c["schedule"], path, name, ex.now)
                    if doc["ref"] != c["ref"] or doc["args"] != c["args"]:
                        fields.update(ref=c["ref"], args=c["args"])
                    if fields:
                        ex.txn.patch(path, doc["_id"], fields)
                    due[name] = fields.get("next_run", doc["next_run"])
                return due

            due = await self._txn(body)
            for key in [k for k in self._cron_due if k[0] == path and k[1] not in due]:
                del self._cron_due[key]
            for name, at in due.items():
                self._queue_cron(path, name, at)

    def _queue_cron(self, mount: str, name: str, at: float) -> None:
        self._cron_due[(mount, name)] = at
        heapq.heappush(self._heap, (at, next(self._seq), "cron", mount, name))
        self._wake.set()

    async def _fire_cron(self, mount: str, name: str) -> None:
        dep = self.host.deployment
        m = dep.mounts.get(mount) if dep else None
        if m is None:
            return

        async def body(ex: Execution) -> tuple[str, float]:
            assert ex.txn is not None
            docs, _l, _d = ex.txn.scan(mount, CRONS, "by_name", IndexRange.from_ops([["eq", "name", name]]), "asc", 2)
            if not docs:
                raise Skip()
            doc = docs[0]
            if doc["next_run"] > ex.now + 1e-6:
                return "later", doc["next_run"]
            following = next_run(doc["schedule"], mount, name, ex.now)
            if doc["last_job"] is not None:
                last = ex.txn.get(mount, doc["last_job"])
                if last is not None and last["state"] in ("pending", "in_progress"):
                    ex.txn.patch(mount, doc["_id"], {"next_run": following, "skipped": doc["skipped"] + 1})
                    return "skipped", following
            job_id = self.schedule(ex.txn, ex, m, {"ref": doc["ref"], "at": ex.now, "args": doc["args"]}, cron=name)
            ex.txn.patch(mount, doc["_id"], {"next_run": following, "last_run": ex.now, "last_job": job_id,
                                             "runs": doc["runs"] + 1})
            return "fired", following

        try:
            outcome, at = await self._txn(body)
        except Skip:
            return
        except BulkheadError as exc:
            self.host.logs.add(mount, None, f"cron {name!r} could not start: {error_text(exc)}; retrying in 5 s")
            self._queue_cron(mount, name, self.host.clock.now() + 5.0)
            return
        if outcome == "fired":
            self.stats["cron_runs"] += 1
        elif outcome == "skipped":
            self.stats["cron_skips"] += 1
            self.host.logs.add(mount, None, f"cron {name!r}: the previous run is still going; skipped this run "
                                 "(a cron never overlaps itself)")
        self._queue_cron(mount, name, at)
