"""The coordinator's engine: deployments, calls, invocations and syscalls.

A *call* from a client becomes an :class:`Execution` — one transaction for a
query or mutation, none for an action — and an :class:`Inv` (invocation) on
the worker of the target mount.  Each invocation gets a fresh capability
token; the worker presents it with every syscall, and the token is checked
against the socket the syscall arrived on (the worker's identity) and revoked
when the invocation ends.

A nested call (``ctx.run_mutation`` inside a mutation) is a sub-transaction of
the same :class:`~runtime.transactions.Transaction`: a write frame is pushed,
the callee runs in its own worker, and the frame is merged on success or
discarded when the callee raises.  The caller's invocation is marked *in a
call* meanwhile: its worker may serve other invocations (re-entrant chains do
not deadlock), but that invocation may not issue database syscalls or a
second nested call until the first returns.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import itertools
import random
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import zmq.asyncio

from runtime import systables, values
from runtime.errors import (
    BulkheadError,
    CallRuleError,
    ConflictError,
    DeployError,
    IsolationError,
    LimitExceeded,
    NotFoundError,
    ValidationError,
    WorkerCrashed,
    from_wire,
)
from runtime.limits import Limits
from runtime.protocol.messages import Invoke, Result, Syscall, SyscallResult
from runtime.storage import Storage, keys
from runtime.storage.catalog import check_index_spec
from runtime.transactions import Committer
from runtime.transactions.ranges import ALL, IndexRange
from runtime.transactions.transaction import Transaction
from runtime.coordinator import signing
from runtime.coordinator.clock import Clock
from runtime.coordinator.workers import WorkerHandle, error_of

ACTION_OPS = frozenset({"schedule", "cancel", "storage_url", "storage_upload_url", "storage_delete", "storage_get",
                        "storage_store"})
"""Syscalls that an action makes outside any transaction: each runs in one of its own."""

CALLABLE_FROM: dict[str, tuple[str, ...]] = {
    "query": ("query",),
    "mutation": ("query", "mutation"),
    "action": ("query", "mutation", "action"),
}
"""Which kinds of function a function of each kind may call (guarantee 3)."""

MAX_MOUNT_DEPTH = 8
MAX_MOUNTS = 256
VALIDATE_BATCH = 500
LOG_KEEP = 20_000


@dataclass
class Mount:
    """One mounted instance: its code, its manifest, its worker."""

    path: str
    spec: str
    code: dict[str, Any]
    env: dict[str, str]
    manifest: dict[str, Any]
    children: dict[str, str]
    worker: WorkerHandle
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    restarts: int = 0
    _validators: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.path or "(app)"

    def function(self, name: str) -> dict[str, Any] | None:
        return self.manifest["functions"].get(name)

    def check_document(self, table: str, doc: Any) -> None:
        """Validate a write against the table's JSON schema from the manifest.

        The worker already validated it with the pydantic model; this second
        check is the coordinator's, so a compromised worker cannot store
        documents its own schema forbids.
        """
        validator = self._validators.get(table)
        if validator is None:
            tman = self.manifest["tables"].get(table)
            if tman is None:
                raise NotFoundError(f"mount {self.label!r} has no table {table!r}")
            validator = self._validators[table] = jsonschema.Draft202012Validator(tman["schema"])
        error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path) or "document"
            raise ValidationError(
                f"document does not match the schema of table {table!r}: {where}: {error.message}",
                issues=[f"{where}: {error.message}"],
            )


@dataclass
class Deployment:
    app_code: dict[str, Any]
    mounts: dict[str, Mount]
    deployed_at: float




class Execution:
    """One transaction (query, mutation) or one action run, with its frozen time and seeded randomness."""

    __slots__ = ("txn", "now", "rng", "label", "scheduled", "job", "after_commit")

    def __init__(self, txn: Transaction | None, now: float, seed: int, label: str,
                 job: tuple[str, str] | None = None) -> None:
        self.txn = txn
        self.now = now
        self.rng = random.Random(seed)
        self.label = label
        self.scheduled: list[tuple[float, str, str]] = []
        """Jobs this transaction inserted: ``(due, mount, job id)``, handed to the scheduler after the commit."""
        self.job = job
        """``(mount, job id)`` when this execution runs a scheduled job."""
        self.after_commit: list[Callable[[], None]] = []
        """What to do once this transaction is durable (e.g. remove a blob no file names any more)."""


class Inv:
    """One invocation in flight on a worker."""

    __slots__ = ("token", "mount", "function", "kind", "execution", "depth", "worker", "in_call", "paused",
                 "paused_since", "started", "failed_write")

    def __init__(self, token: str, mount: Mount, function: str, kind: str, execution: Execution, depth: int,
                 worker: WorkerHandle) -> None:
        self.token = token
        self.mount = mount
        self.function = function
        self.kind = kind
        self.execution = execution
        self.depth = depth
        self.worker = worker
        self.in_call = False
        self.paused = 0.0
        self.paused_since = 0.0
        self.started = time.monotonic()
        self.failed_write: BulkheadError | None = None
        """A buffered write of this invocation failed: every later syscall, and its result, fail with it."""

    def user_time(self) -> float:
        """Wall time so far, minus the time spent waiting for nested calls."""
        now = time.monotonic()
        waiting = self.paused + (now - self.paused_since if self.in_call else 0.0)
        return now - self.started - waiting


class LogStore:
    """What workers printed or logged, tagged; kept in memory for ``bulkhead logs``."""

    def __init__(self) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=LOG_KEEP)
        self._seq = itertools.count(1)

    def add(self, mount: str, function: str | None, line: str, request: str | None = None) -> None:
        self.entries.append({"seq": next(self._seq), "ts": time.time(), "mount": mount, "function": function,
                             "request": request, "line": line})

    def since(self, after: int, limit: int = 1000) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["seq"] > after][:limit]


class Engine:
    """Everything between a decoded call and the workers."""

    def __init__(self, storage: Storage, committer: Committer, limits: Limits, run_dir: Path,
                 zctx: zmq.asyncio.Context) -> None:
        self.storage = storage
        self.committer = committer
        self.limits = limits
        self.run_dir = run_dir
        self.zctx = zctx
        self.deployment: Deployment | None = None
        self.tokens: dict[str, Inv] = {}
        self.logs = LogStore()
        self.handle_key = hashlib.sha256(b"handles" + storage.cursor_secret).digest()
        self._deploy_lock = asyncio.Lock()
        self._inflight_idem: dict[str, asyncio.Future[tuple[Any, int | None]]] = {}
        self._labels = itertools.count(1)
        self.closing = False
        self.stats = {"calls": 0, "conflict_retries": 0, "worker_restarts": 0, "deploy_retries": 0}
        self.workers: set[WorkerHandle] = set()
        """Every worker process not yet known to have exited (starting, serving or draining)."""
        self.epoch = 0
        """Bumped at each deploy switch: a mutation that ran on older code re-runs instead of committing."""
        self._commit_gate = asyncio.Event()
        self._commit_gate.set()
        self._committing = 0
        self.clock = Clock(bool(limits.controllable_clock), limits.clock_offset_s)
        from runtime.coordinator.scheduler import Scheduler

        self.scheduler = Scheduler(self)
        from runtime.coordinator.subscriptions import QueryCache, Subscriptions

        self.subscriptions = Subscriptions(self, _no_sender)
        self.cache = QueryCache(self)
        from runtime.coordinator.files import FileStore

        self.files = FileStore(self, storage.path.parent / "files")

    # --- deploy -------------------------------------------------------------------------

    async def deploy(self, app_code: dict[str, Any]) -> dict[str, Any]:
        """Load the app and every component it uses in new workers, check, then switch at once."""
        async with self._deploy_lock:
            started: list[WorkerHandle] = []
            mounts: dict[str, Mount] = {}
            try:
                await self._load("", app_code, {}, app_code.get("display", app_code["module"]), mounts, started, 0)
                changed = self._changed_tables(mounts)
                self.scheduler.check_crons(mounts)
                checked_to = self.committer.last_ts
                await self._check_schemas(changed, None)
            except BaseException:
                await asyncio.gather(*(w.stop() for w in started), return_exceptions=True)
                raise
            # Hold commits, let the ones under way land, check what they wrote, then switch:
            # a document committed during the full check cannot slip past it.
            self._commit_gate.clear()
            try:
                while self._committing:
                    await asyncio.sleep(0.002)
                try:
                    await self._check_schemas(changed, checked_to)
                except BaseException:
                    await asyncio.gather(*(w.stop() for w in started), return_exceptions=True)
                    raise
                self._apply(mounts)
                old = self.deployment
                self.deployment = Deployment(app_code, mounts, time.time())
                self.epoch += 1
            finally:
                self._commit_gate.set()
            for m in mounts.values():
                m.worker.on_exit = self._on_worker_exit
                m.ready.set()
            self.subscriptions.invalidate_all()
            self.cache.clear()
            self.storage.meta_put("deployment", {"app": app_code})
            if old is not None:
                for m in old.mounts.values():
                    m.worker.on_exit = None
                    asyncio.create_task(m.worker.drain(30.0))
            try:
                await self.scheduler.deployed(self.deployment)
            except BulkheadError as exc:  # the new code serves already; jobs and crons catch up at the next deploy
                self.logs.add("", None, f"scheduler: could not take up the new deployment's jobs and crons: {exc.message}")
            return self.describe()

    async def _load(self, path: str, code: dict[str, Any], env: dict[str, str], spec: str,
                    mounts: dict[str, Mount], started: list[WorkerHandle], depth: int) -> None:
        if depth > MAX_MOUNT_DEPTH:
            raise DeployError(f"components nest deeper than {MAX_MOUNT_DEPTH} levels at {path!r} (a cycle?)")
        if len(mounts) + len(started) > MAX_MOUNTS:
            raise DeployError(f"more than {MAX_MOUNTS} mounts")
        worker = self._new_worker(path, code, env)
        started.append(worker)
        manifest = await worker.start(self.on_syscall, self.on_worker_output)
        if manifest.get("network"):  # declared in the code: start it again with TCP allowed
            await worker.stop()
            worker = self._new_worker(path, code, env, network=True)
            started.append(worker)
            manifest = await worker.start(self.on_syscall, self.on_worker_output)
        children: dict[str, str] = {}
        loads = []
        for child in manifest.get("children", []):
            cpath = f"{path}/{child['name']}" if path else child["name"]
            children[child["name"]] = cpath
            ccode = resolve_component(child["spec"], code["app_dir"])
            loads.append(self._load(cpath, ccode, child.get("env", {}), child["spec"], mounts, started, depth + 1))
        mounts[path] = Mount(path, spec, code, env, manifest, children, worker)
        await asyncio.gather(*loads)

    def _changed_tables(self, mounts: dict[str, Mount]) -> list[tuple[Mount, str, int]]:
        """Tables that hold data and whose schema the new code changes: ``(mount, table, number)``."""
        catalog = self.storage.catalog
        changed = []
        for path, m in mounts.items():
            for tname, tman in m.manifest["tables"].items():
                try:
                    check_index_spec(tname, tman["indexes"])
                except (ValueError, ValidationError) as exc:
                    raise DeployError(f"mount {m.label!r}, table {tname!r}: {exc}") from None
                table = catalog.tables.get((path, tname))
                if table is not None and self.storage.meta_get(f"schema/{path}/{tname}") != tman["schema"]:
                    changed.append((m, tname, table.number))
        return changed

    async def _check_schemas(self, changed: list[tuple[Mount, str, int]], since: int | None) -> None:
        """Validate stored documents of changed tables in the new workers: all of them, or those written after ``since``."""
        problems: list[str] = []
        for m, tname, number in changed:
            batches = self._stored_batches(number) if since is None else self._logged_batches(number, since)
            for batch in batches:
                issues = await self.system_call(m.worker, "validate_documents", {"table": tname, "docs": batch})
                problems += [f"{m.label}/{tname} {issue}" for issue in issues]
                if len(problems) >= 10:
                    break
        if problems:
            raise DeployError(
                f"the new schema does not match {len(problems)}{'+' if len(problems) >= 10 else ''} stored "
                "document(s); nothing was changed. " + " | ".join(problems[:10]),
                issues=problems[:10],
            )

    def _logged_batches(self, table_number: int, since: int) -> Any:
        latest: dict[str, dict[str, Any] | None] = {}
        for _ts, entries in self.storage.log_since(since):
            for number, doc_id, doc in entries:
                if number == table_number:
                    latest[doc_id] = doc
        docs = [d for d in latest.values() if d is not None]
        for i in range(0, len(docs), VALIDATE_BATCH):
            yield docs[i:i + VALIDATE_BATCH]

    def _stored_batches(self, table_number: int) -> Any:
        table = self.storage.catalog.by_number(table_number)
        assert table is not None
        ix = table.indexes[keys.BY_CREATION_TIME]
        lo, hi = ALL.bounds(ix)
        with self.storage.snapshot() as snap:
            batch: list[dict[str, Any]] = []
            for _key, doc, _size in snap.scan(table_number, ix, lo, hi, False):
                batch.append(doc)
                if len(batch) >= VALIDATE_BATCH:
                    yield batch
                    batch = []
            if batch:
                yield batch

    def _apply(self, mounts: dict[str, Mount]) -> None:
        for path, m in mounts.items():
            for tname, tman in m.manifest["tables"].items():
                self.storage.define_table(path, tname, {k: list(v) for k, v in tman["indexes"].items()})
                self.storage.meta_put(f"schema/{path}/{tname}", tman["schema"])
            for tname, indexes in systables.INDEXES.items():
                existing = self.storage.catalog.tables.get((path, tname))
                if existing is None or any(existing.indexes.get(n) is None or list(existing.indexes[n].fields) != f
                                           for n, f in indexes.items()):
                    self.storage.define_table(path, tname, indexes, system=True)
            if any(t.read_only for t in self.storage.catalog.mount_tables(path)):
                self.storage.set_read_only(path, False)
        for mount in {t.mount for t in self.storage.catalog.tables.values()} - set(mounts):
            if not all(t.read_only for t in self.storage.catalog.mount_tables(mount)):
                self.storage.set_read_only(mount, True)

    def describe(self) -> dict[str, Any]:
        """The deployment as plain data (status, deploy output)."""
        dep = self.deployment
        if dep is None:
            return {"deployed": False, "mounts": []}
        out = []
        for path, m in sorted(dep.mounts.items()):
            out.append({
                "path": path, "component": m.spec, "pid": m.worker.pid, "running": not m.worker.dead,
                "restarts": m.restarts, "network": m.worker.network, "isolation": m.worker.layers,
                "functions": {n: {"kind": f["kind"], "visibility": f["visibility"]} for n, f in m.manifest["functions"].items()},
                "tables": {n: t["indexes"] for n, t in m.manifest["tables"].items()},
                "children": m.children,
            })
        unmounted = sorted({t.mount for t in self.storage.catalog.tables.values() if t.read_only})
        return {"deployed": True, "app": dep.app_code.get("display"), "deployed_at": dep.deployed_at,
                "mounts": out, "unmounted": unmounted}

    # --- worker supervision ----------------------------------------------------------------

    def on_worker_output(self, mount: str, function: str | None, line: str) -> None:
        self.logs.add(mount, function, line)

    def _on_worker_exit(self, worker: WorkerHandle) -> None:
        dep = self.deployment
        if self.closing or dep is None:
            return
        m = dep.mounts.get(worker.mount)
        if m is None or m.worker is not worker:
            return
        self.logs.add(worker.mount, None, f"worker pid {worker.pid} {worker.death_reason or f'exited with code {worker.exit_code}'}; restarting")
        m.ready.clear()
        asyncio.create_task(self._restart(m))

    async def _restart(self, m: Mount) -> None:
        delay = 0.0
        while not self.closing:
            await asyncio.sleep(delay)
            if self.closing:
                return
            worker = self._new_worker(m.path, m.code, m.env, network=m.worker.network)
            try:
                await worker.start(self.on_syscall, self.on_worker_output)
            except BulkheadError as exc:
                self.logs.add(m.path, None, f"restart failed: {exc.message}")
                await worker.stop()
                delay = min(5.0, max(0.2, delay * 2))
                continue
            if self.closing or self.deployment is None or self.deployment.mounts.get(m.path) is not m:
                await worker.stop()
                return
            m.worker = worker
            m.restarts += 1
            self.stats["worker_restarts"] += 1
            worker.on_exit = self._on_worker_exit
            m.ready.set()
            return

    def _new_worker(self, path: str, code: dict[str, Any], env: dict[str, str], network: bool = False) -> WorkerHandle:
        worker = WorkerHandle(path, code, env, self.limits, self.run_dir, self.zctx, network)
        self.workers.add(worker)
        worker.on_reaped = self.workers.discard
        return worker

    async def shutdown(self) -> None:
        """Stop every worker, including ones still starting or draining."""
        self.closing = True
        await self.scheduler.stop()
        await self.subscriptions.stop()
        await asyncio.gather(*(w.stop() for w in list(self.workers)), return_exceptions=True)

    # --- calls from clients -------------------------------------------------------------------

    def resolve_client(self, function: str, admin: bool) -> tuple[Mount, str, dict[str, Any]]:
        """Find what a client (or the admin key) names: ``name``, ``module:name``, ``mount/path:name``."""
        dep = self.deployment
        if dep is None:
            raise NotFoundError("no app is deployed here yet: run `bulkhead deploy APP`")
        prefix, _, name = function.rpartition(":")
        if prefix and prefix in dep.mounts and prefix != "":
            if not admin:
                raise IsolationError(
                    f"{function!r} belongs to component mount {prefix!r}: clients call only the app's public "
                    "functions (the admin key, e.g. `bulkhead run --admin`, may call it)"
                )
            mount = dep.mounts[prefix]
            fman = mount.function(name)
            if fman is None:
                raise NotFoundError(f"mount {prefix!r} has no function {name!r}")
            return mount, name, fman
        app = dep.mounts[""]
        fman = app.function(name)
        if fman is None or (prefix and fman["module"] != prefix):
            raise NotFoundError(f"the app has no function {function!r}")
        if fman["visibility"] == "internal" and not admin:
            raise IsolationError(f"{name!r} is internal: clients cannot call it (the admin key can)")
        return app, name, fman

    async def client_call(self, function: str, args: dict[str, Any], kind: str | None, admin: bool,
                          session: str | None, request_id: int) -> tuple[Any, int | None]:
        """Run a call from a client; return ``(value, commit_ts)``."""
        self.stats["calls"] += 1
        self._check_args_size(function, args)
        mount, name, fman = self.resolve_client(function, admin)
        if kind is not None and fman["kind"] != kind:
            raise CallRuleError(f"{function!r} is a {fman['kind']}, not a {kind}")
        if fman["kind"] == "mutation" and session:
            key = f"idem/{session}/{request_id}"
            return await self._idempotent(key, mount, name, args)
        if fman["kind"] == "query":
            return await self.cache.query(mount.path, name, args, lambda: self.run_query(mount, name, args))
        return await self.run_top(mount, name, fman["kind"], args)

    async def _idempotent(self, key: str, mount: Mount, name: str, args: dict[str, Any]) -> tuple[Any, int | None]:
        done = self.storage.meta_get(key)
        if done is not None:
            return done["value"], done["ts"]
        running = self._inflight_idem.get(key)
        if running is not None:
            return await asyncio.shield(running)
        fut: asyncio.Future[tuple[Any, int | None]] = asyncio.get_running_loop().create_future()
        self._inflight_idem[key] = fut
        try:
            result = await self.run_top(mount, name, "mutation", args, idem_key=key)
            fut.set_result(result)
            return result
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved
            raise
        finally:
            del self._inflight_idem[key]

    def _check_args_size(self, function: str, args: Any) -> None:
        size = len(values.pack(args))
        if size > self.limits.arguments_size_bytes:
            raise LimitExceeded("arguments_size_bytes", size, self.limits.arguments_size_bytes, f"arguments of {function!r}")

    # --- executions ----------------------------------------------------------------------------------

    def _new_txn(self, ex_now: float, rng_holder: list[Execution]) -> Transaction:
        return Transaction(self.storage, now=ex_now, limits=self.limits,
                           random_bytes=lambda n: rng_holder[0].rng.randbytes(n))

    async def run_top(self, mount: Mount, name: str, kind: str, args: dict[str, Any],
                      idem_key: str | None = None) -> tuple[Any, int | None]:
        """Run a function as its own top-level call: a query/mutation in a new transaction, or an action."""
        label = f"r{next(self._labels)}"
        if kind == "action":
            ex = Execution(None, self.clock.now(), secrets.randbits(63), label)
            return await self.invoke(mount, name, kind, args, ex, 1), None
        value, ts, _ex = await self.run_transaction(
            kind, lambda ex: self.invoke(mount, name, kind, args, ex, 1), label=label, idem_key=idem_key)
        return value, ts

    async def run_query(self, mount: Mount, name: str, args: dict[str, Any]) -> tuple[Any, int | None, Any]:
        """Run a query as its own transaction: ``(value, snapshot ts, read set)``."""
        value, ts, ex = await self.run_transaction("query", lambda ex: self.invoke(mount, name, "query", args, ex, 1))
        assert ex.txn is not None
        return value, ts, ex.txn.reads

    async def run_transaction(self, kind: str, body: Callable[[Execution], Any], label: str | None = None,
                              idem_key: str | None = None, job: tuple[str, str] | None = None,
                              before_commit: Callable[[Execution, Any], None] | None = None,
                              ) -> tuple[Any, int | None, Execution]:
        """Run ``await body(execution)`` in a fresh transaction and commit it; re-run on OCC conflicts.

        ``before_commit(execution, value)`` may add the coordinator's own writes
        (a job's new state) to the same transaction.  Returns the value, the
        commit timestamp (the snapshot's for a read-only one) and the execution.
        """
        label = label or f"r{next(self._labels)}"
        attempts = self.limits.occ_max_retries + 1 if kind == "mutation" else 1
        backoff = self.limits.occ_backoff_initial_s
        for attempt in range(attempts):
            epoch = self.epoch
            holder: list[Execution] = []
            txn = self._new_txn(self.clock.now(), holder)
            ex = Execution(txn, txn.now, secrets.randbits(63), label, job)
            holder.append(ex)
            try:
                value = await body(ex)
                if kind == "query":
                    return value, txn.ts, ex
                if before_commit is not None:
                    before_commit(ex, value)
                if idem_key is not None:
                    txn.meta_put(idem_key, {"value": value, "ts": None})
                prepared = txn.prepare()
                await self._commit_gate.wait()
                if epoch != self.epoch and not prepared.is_read_only:
                    self.stats["deploy_retries"] += 1
                    raise ConflictError("the app was redeployed while this mutation ran", table="(deploy)")
                self._committing += 1
                try:
                    ts = await self.committer.commit_async(prepared)
                finally:
                    self._committing -= 1
                if ex.scheduled:
                    self.scheduler.notify(ex.scheduled)
                for fn in ex.after_commit:
                    fn()
                if not prepared.is_read_only:
                    self.subscriptions.poke()
                return value, ts, ex
            except ConflictError:
                if attempt == attempts - 1:
                    raise
                self.stats["conflict_retries"] += 1
                await asyncio.sleep(random.uniform(0.5, 1.5) * backoff)
                backoff = min(self.limits.occ_backoff_max_s, backoff * 2)
            finally:
                txn.close()
        raise AssertionError("unreachable")

    async def invoke(self, mount: Mount, name: str, kind: str, args: dict[str, Any], ex: Execution,
                     depth: int) -> Any:
        """Run one function on its mount's worker and wait for its result (with the user-code deadline)."""
        deadline = time.monotonic() + 30.0
        while not mount.worker.usable or not mount.ready.is_set():
            if time.monotonic() > deadline:
                raise WorkerCrashed(f"the worker of mount {mount.label!r} is not running and did not restart in 30 s")
            await asyncio.sleep(0.02)
        worker = mount.worker
        token = secrets.token_urlsafe(18)
        inv = Inv(token, mount, name, kind, ex, depth, worker)
        rid = worker.next_id()
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        worker.results[rid] = (fut, name)
        self.tokens[token] = inv
        try:
            await worker.send(Invoke(request_id=rid, token=token, function=name, kind=kind, args=args,
                                     now=ex.now, seed=ex.rng.getrandbits(63)))
            result = await self._await_result(inv, fut)
            if result.ok and result.writes and inv.failed_write is None:
                try:
                    self._apply_writes(inv, result.writes)
                except BulkheadError as exc:
                    inv.failed_write = exc
            if result.ok and inv.failed_write is not None:  # even if the code caught the error: its writes are partial
                result = Result(request_id=result.request_id, ok=False, error=inv.failed_write.to_wire(),
                                logs=result.logs, dropped=result.dropped)
        finally:
            self.tokens.pop(token, None)
            worker.results.pop(rid, None)
        for line in result.logs:
            self.logs.add(mount.path, name, line, ex.label)
        if result.dropped:
            self.logs.add(mount.path, name, f"[{result.dropped} log lines dropped: limit log_lines_count]", ex.label)
        if not result.ok:
            raise from_wire(result.error or {})
        return result.value

    async def _await_result(self, inv: Inv, fut: "asyncio.Future[Result]") -> Result:
        limit_name = "action_timeout_s" if inv.kind == "action" else "query_mutation_timeout_s"
        timeout = getattr(self.limits, limit_name)
        while True:
            remaining = timeout - inv.user_time()
            if remaining <= 0 and not inv.in_call:
                inv.worker.kill(f"{inv.function!r} ran past {limit_name}={timeout}")
                raise LimitExceeded(limit_name, f"{inv.user_time():.2f}s", f"{timeout}s",
                                    f"{inv.function!r} of mount {inv.mount.label!r}; its worker was killed")
            try:
                return await asyncio.wait_for(asyncio.shield(fut), max(remaining, 0.05))
            except asyncio.TimeoutError:
                continue

    # --- syscalls --------------------------------------------------------------------------------------

    def on_syscall(self, worker: WorkerHandle, msg: Syscall) -> None:
        """A worker's syscall, from the socket's reader callback: database work is answered at once, inline."""
        inv = self.tokens.get(msg.token)
        if inv is None or inv.worker is not worker:
            self._reply_now(worker, msg, error=IsolationError("unknown or revoked capability token"))
            return
        if inv.failed_write is None and msg.pre:
            try:
                self._apply_writes(inv, msg.pre)
            except BulkheadError as exc:
                inv.failed_write = exc
        if inv.failed_write is not None:
            self._reply_now(worker, msg, error=inv.failed_write)
            return
        if msg.op == "run":
            asyncio.create_task(self._run_syscall(worker, inv, msg))
            return
        if msg.op in ACTION_OPS and inv.execution.txn is None:
            asyncio.create_task(self._action_syscall(worker, inv, msg))  # each its own transaction
            return
        if msg.op == "flush":
            self._reply_now(worker, msg, value=None)
            return
        try:
            value = self._db_syscall(inv, msg.op, msg.args)
        except BulkheadError as exc:
            self._reply_now(worker, msg, error=exc)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self._reply_now(worker, msg, error=ValidationError(f"malformed {msg.op!r} syscall: {type(exc).__name__}: {exc}"))
        else:
            self._reply_now(worker, msg, value=value)

    def _apply_writes(self, inv: Inv, writes: list[tuple[str, dict[str, Any]]]) -> None:
        """Writes a worker buffered (``replace``, ``delete``), in order; the first that fails fails the caller."""
        for op, args in writes:
            if op not in ("replace", "delete"):
                raise ValidationError(f"only replace and delete may be buffered, not {op!r}")
            try:
                self._db_syscall(inv, op, args)
            except BulkheadError as exc:
                exc.message = f"a buffered {op} of {str(args.get('id'))[:40]!r} failed: {exc.message}"
                raise
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ValidationError(f"malformed buffered {op!r}: {type(exc).__name__}: {exc}") from None

    def _reply_now(self, worker: WorkerHandle, msg: Syscall, value: Any = None,
                   error: BaseException | None = None) -> None:
        try:
            if error is None:
                worker.send_now(SyscallResult(request_id=msg.request_id, ok=True, value=value))
            else:
                worker.send_now(SyscallResult(request_id=msg.request_id, ok=False, error=error_of(error).to_wire()))
        except WorkerCrashed:
            pass
        except (TypeError, ValueError) as exc:  # a value msgpack cannot carry
            worker.send_now(SyscallResult(request_id=msg.request_id, ok=False,
                                          error=ValidationError(f"the reply cannot be sent: {exc}").to_wire()))

    def _db_syscall(self, inv: Inv, op: str, args: dict[str, Any]) -> Any:
        if inv.in_call:
            raise CallRuleError("an invocation may not use the database while one of its nested calls is running; "
                                "await each call before the next operation")
        if op == "handle":
            ref = args["ref"]
            if ref.get("path") != "" or inv.mount.function(str(ref.get("name"))) is None:
                raise NotFoundError(f"function_handle: mount {inv.mount.label!r} has no function {ref.get('name')!r} of its own")
            return self.make_handle(inv.mount.path, str(ref["name"]))
        txn = inv.execution.txn
        if txn is None:
            raise CallRuleError(f"actions have no ctx.db ({op}); use ctx.run_query / ctx.run_mutation")
        mount = inv.mount.path
        if op == "get":
            doc = txn.get(mount, args["id"])
            return {"doc": doc, "table": txn.table_of_id(mount, args["id"]).name}
        if op == "scan":
            after = args.get("after")
            if after is not None and not isinstance(after, bytes):
                raise ValidationError("scan: 'after' must be the bytes of a previous result")
            limit = int(args.get("limit") or 0) or None
            docs, last, done = txn.scan(mount, args["table"], args["index"], IndexRange.from_ops(args["range"]),
                                        args["order"], limit, after)
            return {"docs": docs, "last": last, "done": done}
        if op == "paginate":
            page = txn.paginate(mount, args["table"], args["index"], IndexRange.from_ops(args["range"]),
                                args["order"], args.get("cursor"), args["num_items"])
            return {"page": page.page, "is_done": page.is_done, "continue_cursor": page.continue_cursor}
        if op.startswith("storage_"):
            if op == "storage_url":
                return self.files.url(txn, mount, args.get("id"))
            if op in ("storage_get", "storage_store"):
                raise CallRuleError(f"ctx.storage.{op[8:]} is for actions only (queries and mutations use get_url, "
                                    "and mutations generate_upload_url and delete)")
            if inv.kind != "mutation":
                raise CallRuleError(f"a {inv.kind} cannot change file storage; mutations and actions can")
            if op == "storage_upload_url":
                return self.files.upload_url(mount)
            if op == "storage_delete":
                self.files.delete(txn, inv.execution, mount, args.get("id"))
                return None
            raise ValidationError(f"unknown syscall {op!r}")
        if op in ("schedule", "cancel"):
            if inv.kind != "mutation":
                raise CallRuleError(f"a {inv.kind} cannot schedule or cancel jobs; mutations and actions can")
            if op == "schedule":
                return self.scheduler.schedule(txn, inv.execution, inv.mount, args)
            self.scheduler.cancel(txn, inv.mount.path, args.get("id"))
            return None
        if op in ("insert", "replace", "delete"):
            if inv.kind != "mutation":
                raise CallRuleError(f"a {inv.kind} cannot write ({op}); only mutations write")
            if op == "insert":
                inv.mount.check_document(args["table"], args["doc"])
                return txn.insert(mount, args["table"], args["doc"])
            table = txn.table_of_id(mount, args["id"])  # an Id of another mount is refused here
            if table.name.startswith("_"):
                raise IsolationError(f"{table.name!r} is a system table: only the runtime writes it "
                                     "(use ctx.scheduler.cancel for jobs)")
            if op == "replace":
                inv.mount.check_document(table.name, args["doc"])
                txn.replace(mount, args["id"], args["doc"])
                return None
            txn.delete(mount, args["id"])
            return None
        raise ValidationError(f"unknown syscall {op!r}")

    async def _action_syscall(self, worker: WorkerHandle, inv: Inv, msg: Syscall) -> None:
        """``ctx.scheduler`` and ``ctx.storage`` from an action: each operation in a transaction of its own."""
        try:
            if inv.in_call:
                raise CallRuleError("an invocation may not use ctx while one of its nested calls is running")
            mount, op = inv.mount.path, msg.op
            if op == "storage_store":
                data = msg.args.get("data")
                ctype = msg.args.get("content_type")
                if not isinstance(data, bytes) or not (ctype is None or isinstance(ctype, str)):
                    raise ValidationError("ctx.storage.store takes bytes and an optional content_type string")
                tmp, sha, size = await self.files.write_bytes_async(data)
                value: Any = await self.files.commit_blob(tmp, sha, size, mount, ctype)
            elif op == "storage_upload_url":
                value = self.files.upload_url(mount)
            else:
                async def body(ex: Execution) -> Any:
                    assert ex.txn is not None
                    if op == "schedule":
                        canceled = await self.scheduler.parent_canceled(ex.txn, inv.execution.job)
                        ex.job = inv.execution.job  # what an action's job schedules names it as parent
                        ex.scheduled = list(inv.execution.scheduled)  # the limit counts the whole action
                        job_id = self.scheduler.schedule(ex.txn, ex, inv.mount, msg.args, canceled=canceled)
                        inv.execution.scheduled = ex.scheduled
                        return job_id
                    if op == "cancel":
                        self.scheduler.cancel(ex.txn, mount, msg.args.get("id"))
                    elif op == "storage_delete":
                        self.files.delete(ex.txn, ex, mount, msg.args.get("id"))
                    elif op == "storage_url":
                        return self.files.url(ex.txn, mount, msg.args.get("id"))
                    elif op == "storage_get":
                        return self.files.read(ex.txn, mount, msg.args.get("id"))
                    return None

                kind = "query" if op in ("storage_url", "storage_get") else "mutation"
                value, _ts, _ex = await self.run_transaction(kind, body)
                if op == "storage_get" and value is not None:
                    value = await asyncio.to_thread(value.read_bytes)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            if isinstance(exc, asyncio.CancelledError):
                raise
            self._reply_now(worker, msg, error=exc)
        else:
            self._reply_now(worker, msg, value=value)

    async def _run_syscall(self, worker: WorkerHandle, inv: Inv, msg: Syscall) -> None:
        try:
            if inv.in_call:
                raise CallRuleError("one nested call at a time per invocation: await each call before the next")
            value = await self._nested(inv, msg.args)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            if isinstance(exc, asyncio.CancelledError):
                raise
            self._reply_now(worker, msg, error=exc)
        else:
            self._reply_now(worker, msg, value=value)

    def resolve_ref(self, caller: Mount, ref: Any) -> tuple[Mount, str, dict[str, Any]]:
        """Resolve a reference relative to the calling mount (own functions, direct children's public ones, handles)."""
        dep = self.deployment
        if dep is None:
            raise NotFoundError("nothing is deployed")
        if not isinstance(ref, dict):
            raise ValidationError("a function reference must be a ref or a handle")
        if "handle" in ref:
            path, name = self.open_handle(ref["handle"])
            target = dep.mounts.get(path)
            fman = target.function(name) if target else None
            if target is None or fman is None:
                raise NotFoundError(f"the function of handle {str(ref['handle'])[:40]!r} no longer exists")
            return target, name, fman
        path, name = str(ref.get("path", "")), str(ref.get("name", ""))
        if path == "":
            fman = caller.function(name)
            if fman is None:
                raise NotFoundError(f"mount {caller.label!r} has no function {name!r}")
            return caller, name, fman
        child = caller.children.get(path)
        if child is None:
            raise NotFoundError(
                f"mount {caller.label!r} has no child component named {path!r}; a mount calls only its own "
                "functions, its direct children's public ones, and handles it was given"
            )
        target = dep.mounts[child]
        fman = target.function(name)
        if fman is None or fman["visibility"] != "public":
            raise NotFoundError(f"component {path!r} exports no public function {name!r}")
        return target, name, fman

    async def _nested(self, inv: Inv, args: dict[str, Any]) -> Any:
        target, name, fman = self.resolve_ref(inv.mount, args.get("ref"))
        kind = fman["kind"]
        if args.get("kind") != kind:
            raise CallRuleError(f"{name!r} is a {kind}: call it with run_{kind}, not run_{args.get('kind')}")
        if kind not in CALLABLE_FROM[inv.kind]:
            raise CallRuleError(f"cannot call a {kind} ({name!r}) from a {inv.kind} ({inv.function!r})")
        call_args = args.get("args") or {}
        if not isinstance(call_args, dict):
            raise ValidationError("arguments must be an object")
        self._check_args_size(name, call_args)
        inv.in_call = True
        inv.paused_since = time.monotonic()
        try:
            if inv.kind == "action":
                if kind == "action":
                    ex = Execution(None, self.clock.now(), secrets.randbits(63), inv.execution.label,
                                   inv.execution.job)
                    return await self.invoke(target, name, kind, call_args, ex, 1)
                value, _ts = await self.run_top(target, name, kind, call_args)
                return value
            if inv.depth + 1 > self.limits.call_depth:
                raise CallRuleError(
                    f"nested call depth exceeds call_depth={self.limits.call_depth} (an infinite loop between components?)"
                )
            txn = inv.execution.txn
            assert txn is not None
            frame = txn.begin_nested()
            try:
                value = await self.invoke(target, name, kind, call_args, inv.execution, inv.depth + 1)
            except BaseException:
                txn.rollback_nested(frame)
                raise
            txn.commit_nested(frame)
            return value
        finally:
            inv.in_call = False
            inv.paused += time.monotonic() - inv.paused_since

    # --- handles -----------------------------------------------------------------------------------------

    def make_handle(self, path: str, name: str) -> str:
        return "function://" + signing.sign(self.handle_key, [path, name])

    def open_handle(self, handle: Any) -> tuple[str, str]:
        if not isinstance(handle, str) or not handle.startswith("function://") or "." not in handle:
            raise ValidationError(f"{str(handle)[:40]!r} is not a function handle")
        payload = signing.verify(self.handle_key, handle[len("function://"):], "function handle")
        if payload is None:
            raise IsolationError("this function handle was not issued by this deployment (forged or altered)")
        if not isinstance(payload, list) or len(payload) != 2:
            raise ValidationError("malformed function handle")
        path, name = payload
        return str(path), str(name)

    # --- system calls to workers ----------------------------------------------------------------------

    async def system_call(self, worker: WorkerHandle, function: str, args: dict[str, Any]) -> Any:
        rid = worker.next_id()
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        worker.results[rid] = (fut, function)
        await worker.send(Invoke(request_id=rid, token="system", function=function, kind="system", args=args,
                                 now=self.clock.now(), seed=0))
        result = await asyncio.wait_for(fut, 60.0)
        if not result.ok:
            raise from_wire(result.error or {})
        return result.value

    # --- data browsing (admin) -----------------------------------------------------------------------------

    def data(self, mount: str | None, table: str | None, limit: int = 100) -> Any:
        catalog = self.storage.catalog
        # System tables (_scheduled, _crons, _storage) are listed when they hold documents; name one to read it.
        if mount is None:
            with self.storage.snapshot() as snap:
                rows = [{"mount": t.mount, "table": t.name, "documents": snap.count_table(t.number),
                         "read_only": t.read_only, "indexes": {n: list(i.fields) for n, i in t.indexes.items()}}
                        for t in sorted(catalog.tables.values(), key=lambda t: (t.mount, t.name))]
            return [r for r in rows if r["documents"] or not r["table"].startswith("_")]
        if table is None:
            tables = catalog.mount_tables(mount)
            if not tables and mount not in (self.deployment.mounts if self.deployment else {}):
                raise NotFoundError(f"no mount {mount!r}")
            with self.storage.snapshot() as snap:
                rows = [{"table": t.name, "documents": snap.count_table(t.number), "read_only": t.read_only}
                        for t in tables]
            return [r for r in rows if r["documents"] or not r["table"].startswith("_")]
        info = catalog.table(mount, table)
        ix = info.indexes[keys.BY_CREATION_TIME]
        lo, hi = ALL.bounds(ix)
        with self.storage.snapshot() as snap:
            return [doc for _k, doc, _s in itertools.islice(snap.scan(info.number, ix, lo, hi, False), limit)]


async def _no_sender(ident: bytes, frame: Any) -> str:
    return "gone"


def resolve_component(spec: str, app_dir: str) -> dict[str, Any]:
    """A ``use()`` spec as code to load: ``module:attr``, a registered name, or an import path."""
    base = {"kind": "component", "app_dir": app_dir, "display": spec}
    if ":" in spec:
        module, attr = spec.split(":", 1)
        return {**base, "module": module, "attr": attr, "explicit": True}
    registered = registered_components()
    if spec in registered and "." not in spec:
        target = registered[spec]
        if ":" in target:
            module, attr = target.split(":", 1)
            return {**base, "module": module, "attr": attr, "explicit": True}
        return {**base, "module": target, "attr": "component", "explicit": False}
    return {**base, "module": spec, "attr": "component", "explicit": False}


def registered_components() -> dict[str, str]:
    """Component packages registered through the ``bulkhead.components`` entry-point group (no import)."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group="bulkhead.components")}


def describe_error(exc: BaseException) -> dict[str, Any]:
    return error_of(exc).to_wire()


Callback = Callable[..., Any]
