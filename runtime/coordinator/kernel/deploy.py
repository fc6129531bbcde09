"""Deploys and supervision: load every mount in new workers, check, switch at once; restart what dies.

A deploy loads the app and, recursively, every component it uses, each in
workers of its own; validates the stored documents of every table whose
schema changed in the new workers; lets services check the new code
(``before_switch`` hooks: crons); then holds commits, checks what landed
meanwhile, and switches.  Old workers drain.  ``after_deploy`` hooks run once
the new deployment serves (subscriptions re-run, the scheduler takes up jobs).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import zmq.asyncio

from runtime import systables
from runtime.coordinator.kernel.envstore import EnvStore
from runtime.coordinator.kernel.invocations import Invoker
from runtime.coordinator.kernel.logs import LogStore
from runtime.coordinator.kernel.mounts import Deployment, Mount
from runtime.coordinator.kernel.runner import TransactionRunner
from runtime.errors import BulkheadError, DeployError, ValidationError
from runtime.limits import Limits
from runtime.protocol.deploy import component_code, installed_component_packages
from runtime.storage import Storage, keys
from runtime.storage.catalog import check_index_spec
from runtime.transactions.ranges import ALL
from sandbox.supervisor import SyscallHandler, WorkerHandle, close_zygote, prestart_zygote

BeforeSwitch = Callable[[dict[str, Mount]], None]
AfterDeploy = Callable[[Deployment], Awaitable[None] | None]


class Deployer:
    """Owns the current deployment and every worker process."""

    def __init__(self, storage: Storage, limits: Limits, run_dir: Path, zctx: zmq.asyncio.Context,
                 runner: TransactionRunner, invoker: Invoker, logs: LogStore, stats: dict[str, int]) -> None:
        self.storage = storage
        self.limits = limits
        self.run_dir = run_dir
        self.zctx = zctx
        self.runner = runner
        self.invoker = invoker
        self.logs = logs
        self.stats = stats
        self.deployment: Deployment | None = None
        self.packages: dict[str, str] = {}
        """Installed component packages (name -> directory), found again at each deploy, told to every worker."""
        self.env = EnvStore(storage)
        """Environment values set at deployment (``bulkhead env set``), merged over ``use(env=)`` per worker."""
        self.on_syscall: SyscallHandler | None = None
        """Where workers' syscall frames go (the syscall router), set by the kernel."""
        self.before_switch: list[BeforeSwitch] = []
        self.after_deploy: list[AfterDeploy] = []
        self.after_restart: list[Callable[[str], None]] = []
        """Called with a mount's path once it serves with new environment values (cached answers end)."""
        self.workers: set[WorkerHandle] = set()
        """Every worker process not yet known to have exited (starting, serving or draining)."""
        self.closing = False
        self._lock = asyncio.Lock()
        prestart_zygote(run_dir, limits)  # it preloads while the daemon opens its doors

    async def deploy(self, app_code: dict[str, Any]) -> dict[str, Any]:
        """Load the app and every component it uses in new workers, check, then switch at once."""
        async with self._lock:
            started: list[WorkerHandle] = []
            mounts: dict[str, Mount] = {}
            self.packages = installed_component_packages()
            try:
                await self._load("", app_code, {}, app_code.get("display", app_code["module"]), mounts, started, 0)
                self._check_required_env(mounts)
                changed = self._changed_tables(mounts)
                for check in self.before_switch:
                    check(mounts)
                checked_to = self.runner.committer.last_ts
                await self._check_schemas(changed, None)
            except BaseException:
                await asyncio.gather(*(w.stop() for w in started), return_exceptions=True)
                raise
            # Hold commits, let the ones under way land, check what they wrote, then switch:
            # a document committed during the full check cannot slip past it.
            switched = False
            await self.runner.hold_commits()
            try:
                try:
                    await self._check_schemas(changed, checked_to)
                except BaseException:
                    await asyncio.gather(*(w.stop() for w in started), return_exceptions=True)
                    raise
                self._apply(mounts)
                old = self.deployment
                self.deployment = Deployment(app_code, mounts, time.time())
                switched = True
            finally:
                self.runner.release_commits(switched)
            for m in mounts.values():
                m.worker.on_exit = self._on_worker_exit
                m.ready.set()
            self.storage.meta_put("deployment", {"app": app_code})
            if old is not None:
                for m in old.mounts.values():
                    m.worker.on_exit = None
                    asyncio.create_task(m.worker.drain(self.limits.worker_drain_s))
            for hook in self.after_deploy:
                done = hook(self.deployment)
                if done is not None:
                    await done
            return self.describe()

    async def _load(self, path: str, code: dict[str, Any], env: dict[str, str], spec: str,
                    mounts: dict[str, Mount], started: list[WorkerHandle], depth: int) -> None:
        if depth > self.limits.mount_depth:
            raise DeployError(f"components nest deeper than mount_depth={self.limits.mount_depth} levels at {path!r} "
                              "(a cycle?)")
        if len(mounts) + len(started) > self.limits.mounts_count:
            raise DeployError(f"more than mounts_count={self.limits.mounts_count} mounts")
        worker = self._new_worker(path, code, env)
        started.append(worker)
        manifest = await self._start(worker)
        if manifest.get("network"):  # declared in the code: start it again with TCP allowed
            await worker.stop()
            worker = self._new_worker(path, code, env, network=True)
            started.append(worker)
            manifest = await self._start(worker)
        children: dict[str, str] = {}
        loads = []
        for child in manifest.get("children", []):
            cpath = f"{path}/{child['name']}" if path else child["name"]
            children[child["name"]] = cpath
            ccode = component_code(child["spec"], code["app_dir"]).model_dump()
            loads.append(self._load(cpath, ccode, child.get("env", {}), child["spec"], mounts, started, depth + 1))
        mounts[path] = Mount(path, spec, code, env, manifest, children, worker)
        await asyncio.gather(*loads)

    def _check_required_env(self, mounts: dict[str, Mount]) -> None:
        """Refuse a deploy that leaves a required variable without a value, naming every one."""
        missing = []
        for path, m in sorted(mounts.items()):
            have = {**m.env, **self.env.values(path)}
            for name, var in sorted(m.manifest.get("env_vars", {}).items()):
                if var["required"] and name not in have:
                    about = f" ({var['description']})" if var["description"] else ""
                    missing.append(f"{m.label} needs {name}{about}: bulkhead env set {path or '.'} {name} VALUE")
        if missing:
            raise DeployError(f"{len(missing)} required environment variable(s) not set; nothing was changed. "
                              + " | ".join(missing), missing=missing)

    def required_env(self, path: str) -> set[str]:
        """Names a deployed mount declares required (for refusing their unset)."""
        dep = self.deployment
        m = dep.mounts.get(path) if dep is not None else None
        if m is None:
            return set()
        return {n for n, v in m.manifest.get("env_vars", {}).items() if v["required"] and n not in m.env}

    async def env_changed(self, path: str) -> bool:
        """Start a new worker for mount ``path`` with its new values and let the old one drain; whether a
        deployed mount was restarted.  Only that mount's worker changes; a start that fails keeps the old."""
        async with self._lock:
            dep = self.deployment
            m = dep.mounts.get(path) if dep is not None else None
            if m is None:
                return False
            worker = self._new_worker(m.path, m.load_spec, m.env, network=m.worker.network)
            try:
                await self._start(worker)
            except BaseException:
                await worker.stop()
                raise
            old, m.worker = m.worker, worker
            old.on_exit = None
            worker.on_exit = self._on_worker_exit
            m.restarts += 1
            asyncio.create_task(old.drain(self.limits.worker_drain_s))
        for hook in self.after_restart:
            hook(path)
        return True

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
        """Validate stored documents of changed tables in the new workers.

        All of them, or (``since`` given) those written after ``since``.
        """
        problems: list[str] = []
        for m, tname, number in changed:
            batches = self._stored_batches(number) if since is None else self._logged_batches(number, since)
            for batch in batches:
                issues = await self.invoker.system_call(m.worker, "validate_documents", {"table": tname, "docs": batch})
                problems += [f"{m.label}/{tname} {issue}" for issue in issues]
                if len(problems) >= 10:
                    break
        if problems:
            raise DeployError(
                f"the new schema does not match {len(problems)}{'+' if len(problems) >= 10 else ''} stored "
                "document(s); nothing was changed. " + " | ".join(problems[:10]),
                issues=problems[:10],
            )

    def _logged_batches(self, table_number: int, since: int) -> Iterator[list[dict[str, Any]]]:
        latest: dict[str, dict[str, Any] | None] = {}
        for _ts, entries in self.storage.log_since(since):
            for number, doc_id, doc in entries:
                if number == table_number:
                    latest[doc_id] = doc
        docs = [d for d in latest.values() if d is not None]
        batch = self.limits.schema_check_batch_count
        for i in range(0, len(docs), batch):
            yield docs[i:i + batch]

    def _stored_batches(self, table_number: int) -> Iterator[list[dict[str, Any]]]:
        table = self.storage.catalog.by_number(table_number)
        assert table is not None
        ix = table.indexes[keys.BY_CREATION_TIME]
        lo, hi = ALL.bounds(ix)
        with self.storage.snapshot() as snap:
            batch: list[dict[str, Any]] = []
            for _key, doc, _size in snap.scan(table_number, ix, lo, hi, False):
                batch.append(doc)
                if len(batch) >= self.limits.schema_check_batch_count:
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
                "functions": {n: {"kind": f["kind"], "visibility": f["visibility"]}
                              for n, f in m.manifest["functions"].items()},
                "tables": {n: t["indexes"] for n, t in m.manifest["tables"].items()},
                "children": m.children,
            })
        unmounted = sorted({t.mount for t in self.storage.catalog.tables.values() if t.read_only})
        return {"deployed": True, "app": dep.app_code.get("display"), "deployed_at": dep.deployed_at,
                "mounts": out, "unmounted": unmounted}

    # --- supervision ----------------------------------------------------------------------------

    def _on_worker_output(self, mount: str, function: str | None, line: str) -> None:
        self.logs.add(mount, function, line)

    async def _start(self, worker: WorkerHandle) -> dict[str, Any]:
        assert self.on_syscall is not None
        return await worker.start(self.on_syscall, self._on_worker_output)

    def _on_worker_exit(self, worker: WorkerHandle) -> None:
        dep = self.deployment
        if self.closing or dep is None:
            return
        m = dep.mounts.get(worker.mount)
        if m is None or m.worker is not worker:
            return
        why = worker.death_reason or f"exited with code {worker.exit_code}"
        self.logs.add(worker.mount, None, f"worker pid {worker.pid} {why}; restarting")
        m.ready.clear()
        asyncio.create_task(self._restart(m))

    async def _restart(self, m: Mount) -> None:
        delay = 0.0
        while not self.closing:
            await asyncio.sleep(delay)
            if self.closing:
                return
            worker = self._new_worker(m.path, m.load_spec, m.env, network=m.worker.network)
            try:
                await self._start(worker)
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
        env = {**env, **self.env.values(path)}  # set at deployment wins over what the parent passes
        code = {**code, "packages": self.packages}
        worker = WorkerHandle(path, code, env, self.limits, self.run_dir, self.zctx, network)
        self.workers.add(worker)
        worker.on_reaped = self.workers.discard
        return worker

    async def stop_workers(self) -> None:
        """Stop every worker, including ones still starting or draining."""
        self.closing = True
        await asyncio.gather(*(w.stop() for w in list(self.workers)), return_exceptions=True)
        close_zygote(self.run_dir)
