"""The kernel: mounts and deploys, call routing, the transaction runner, invocations, the syscall router, logs.

:class:`Kernel` composes those parts and is the *host* every service and door
is handed (:class:`runtime.coordinator.host.Host` is the narrow view services
get).  It knows no service: jobs, crons, subscriptions, the query cache and
files plug in through :meth:`register_syscall` and the hooks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import zmq.asyncio

from runtime.coordinator.clock import Clock
from runtime.coordinator.kernel import database
from runtime.coordinator.kernel.calls import Calls, ClientQueries
from runtime.coordinator.kernel.deploy import AfterDeploy, BeforeSwitch, Deployer
from runtime.coordinator.kernel.feed import CommitFeed
from runtime.coordinator.kernel.invocations import Invoker
from runtime.coordinator.kernel.logs import LogStore
from runtime.coordinator.kernel.mounts import Deployment, Mount
from runtime.coordinator.kernel.runner import AfterCommit, Execution, TransactionRunner
from runtime.coordinator.kernel.syscalls import ALL_KINDS, SyscallRouter, SyscallSpec
from runtime.limits import Limits
from runtime.protocol.syscalls import SyscallOp
from runtime.storage import Storage
from runtime.transactions import Committer
from runtime.transactions.transaction import Transaction
from runtime.transactions.write_log import WriteLog

Status = Callable[[], dict[str, Any]]


class Kernel:
    """Everything between a decoded call and the workers, with the registries services plug into."""

    def __init__(self, storage: Storage, committer: Committer, limits: Limits, run_dir: Path,
                 zctx: zmq.asyncio.Context) -> None:
        self.storage = storage
        self.committer = committer
        self.limits = limits
        self.clock = Clock(bool(limits.controllable_clock), limits.clock_offset_s)
        self.logs = LogStore(limits.log_entries_kept)
        self.stats = {"calls": 0, "conflict_retries": 0, "worker_restarts": 0, "deploy_retries": 0, "syscalls": 0,
                      "cached_reads": 0}
        self.runner = TransactionRunner(storage, committer, limits, self.clock, self.stats)
        self.invoker = Invoker(limits, self.clock, self.logs)
        self.router = SyscallRouter(self.invoker.tokens, self.stats)
        self.invoker.stats = self.stats
        self.invoker.tables_of = lambda mount: {t.name: t.number for t in storage.catalog.mount_tables(mount)
                                                if not t.name.startswith("_")}
        if limits.worker_cache_docs > 0 and limits.worker_cache_bytes > 0:
            feed = CommitFeed(storage, lambda: committer.last_ts, limits.worker_cache_feed_keys)
            committer.announcers.append(feed.announce)
            self.invoker.feed = feed
        self.invoker.apply_writes = self.router.apply_writes
        self.deployer = Deployer(storage, limits, run_dir, zctx, self.runner, self.invoker, self.logs, self.stats)
        self.deployer.on_syscall = self.router.on_syscall
        self.calls = Calls(storage, limits, self.invoker, self.runner, lambda: self.deployer.deployment, self.stats)
        self.status_sections: dict[str, Status] = {}
        self._shutdown: list[Callable[[], Awaitable[None]]] = []
        database.register(self.router)
        self.calls.register(self.router)
        self.router.register(SyscallSpec(SyscallOp.FLUSH, ALL_KINDS, inline=lambda inv, args: None, needs_txn=False,
                                         checks_in_call=False))

    # --- what services and doors read -----------------------------------------------------------

    @property
    def deployment(self) -> Deployment | None:
        return self.deployer.deployment

    @property
    def closing(self) -> bool:
        return self.deployer.closing

    @property
    def epoch(self) -> int:
        return self.runner.epoch

    @property
    def write_log(self) -> WriteLog:
        return self.committer.write_log

    # --- registration --------------------------------------------------------------------------------

    def register_syscall(self, spec: SyscallSpec) -> None:
        self.router.register(spec)

    def on_commit(self, hook: AfterCommit) -> None:
        """Call ``hook(execution, prepared)`` after every durable commit."""
        self.runner.after_commit.append(hook)

    def before_switch(self, hook: BeforeSwitch) -> None:
        """Call ``hook(new mounts)`` before a deploy switches; raising refuses the deploy."""
        self.deployer.before_switch.append(hook)

    def after_deploy(self, hook: AfterDeploy) -> None:
        """Call (and await) ``hook(deployment)`` once a new deployment serves."""
        self.deployer.after_deploy.append(hook)

    def after_restart(self, hook: Callable[[str], None]) -> None:
        """Call ``hook(mount path)`` once a mount serves from a worker started with new environment values."""
        self.deployer.after_restart.append(hook)

    def on_shutdown(self, hook: Callable[[], Awaitable[None]]) -> None:
        self._shutdown.append(hook)

    def serve_client_queries(self, answer: ClientQueries) -> None:
        """Answer clients' queries through ``answer`` (the query cache) instead of running each."""
        self.calls.client_queries = answer

    def register_status(self, name: str, section: Status) -> None:
        """Add ``name: section()`` to the daemon's status."""
        self.status_sections[name] = section

    # --- what services call ----------------------------------------------------------------------------

    async def run_transaction(self, kind: str, body: Callable[[Execution], Awaitable[Any]],
                              label: str | None = None, idem_key: str | None = None,
                              job: tuple[str, str] | None = None,
                              before_commit: Callable[[Execution, Any], None] | None = None,
                              ) -> tuple[Any, int | None, Execution]:
        return await self.runner.run(kind, body, label, idem_key, job, before_commit)

    def read_only(self) -> Transaction:
        return self.runner.read_only()

    def action_execution(self, label: str | None = None, job: tuple[str, str] | None = None) -> Execution:
        return self.runner.action_execution(label, job)

    async def invoke(self, mount: Mount, name: str, kind: str, args: dict[str, Any], ex: Execution,
                     depth: int) -> Any:
        return await self.invoker.invoke(mount, name, kind, args, ex, depth)

    def resolve_ref(self, caller: Mount, ref: Any) -> tuple[Mount, str, dict[str, Any]]:
        return self.calls.resolve_ref(caller, ref)

    def resolve_client(self, function: str, admin: bool) -> tuple[Mount, str, dict[str, Any]]:
        return self.calls.resolve_client(function, admin)

    def check_args_size(self, function: str, args: Any) -> None:
        self.calls.check_args_size(function, args)

    async def run_query(self, mount: Mount, name: str, args: dict[str, Any]) -> tuple[Any, int | None, Any]:
        return await self.calls.run_query(mount, name, args)

    # --- what doors call ----------------------------------------------------------------------------------

    async def client_call(self, function: str, args: dict[str, Any], kind: str | None, admin: bool,
                          session: str | None, request_id: int) -> tuple[Any, int | None]:
        return await self.calls.client_call(function, args, kind, admin, session, request_id)

    async def deploy(self, app_code: dict[str, Any]) -> dict[str, Any]:
        return await self.deployer.deploy(app_code)

    def describe(self) -> dict[str, Any]:
        return self.deployer.describe()

    def status(self) -> dict[str, Any]:
        """The kernel's figures and every service's status section."""
        out: dict[str, Any] = {"stats": dict(self.stats, commit_rounds=self.committer.rounds,
                                             conflicts=self.committer.conflicts, bounced=self.committer.bounced)}
        for name, section in self.status_sections.items():
            out[name] = section()
        return out

    async def shutdown(self) -> None:
        """Stop the services, then every worker, including ones still starting or draining."""
        self.deployer.closing = True
        for hook in self._shutdown:
            await hook()
        await self.deployer.stop_workers()
