"""The host interface: what a service may use of the kernel, and nothing more.

A service is handed a :class:`Host` (the :class:`~runtime.coordinator.kernel.core.Kernel`
satisfies it) and registers its syscalls and hooks through it; it never
imports the kernel's implementation, another service or a door.  The types a
service handles (executions, mounts, invocations, syscall specs) are
re-exported here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from runtime.coordinator.clock import Clock
from runtime.coordinator.kernel.calls import ClientQueries
from runtime.coordinator.kernel.invocations import Invocation
from runtime.coordinator.kernel.logs import LogStore
from runtime.coordinator.kernel.mounts import Deployment, Mount
from runtime.coordinator.kernel.runner import Execution
from runtime.coordinator.kernel.syscalls import ALL_KINDS, SyscallSpec
from runtime.limits import Limits
from runtime.storage import Storage
from runtime.transactions.transaction import Prepared, Transaction
from runtime.transactions.write_log import WriteLog

__all__ = ["ALL_KINDS", "Deployment", "Execution", "Host", "Invocation", "Mount", "Prepared", "SyscallSpec"]


class Host(Protocol):
    """The kernel as a service sees it."""

    storage: Storage
    limits: Limits
    clock: Clock
    logs: LogStore

    @property
    def deployment(self) -> Deployment | None: ...
    @property
    def closing(self) -> bool: ...
    @property
    def epoch(self) -> int: ...
    @property
    def write_log(self) -> WriteLog: ...

    # registration
    def register_syscall(self, spec: SyscallSpec) -> None: ...
    def on_commit(self, hook: Callable[[Execution, Prepared], None]) -> None: ...
    def before_switch(self, hook: Callable[[dict[str, Mount]], None]) -> None: ...
    def after_deploy(self, hook: Callable[[Deployment], Awaitable[None] | None]) -> None: ...
    def after_restart(self, hook: Callable[[str], None]) -> None: ...
    def on_shutdown(self, hook: Callable[[], Awaitable[None]]) -> None: ...
    def serve_client_queries(self, answer: ClientQueries) -> None: ...
    def register_status(self, name: str, section: Callable[[], dict[str, Any]]) -> None: ...

    # transactions and calls
    async def run_transaction(self, kind: str, body: Callable[[Execution], Awaitable[Any]],
                              label: str | None = None, idem_key: str | None = None,
                              job: tuple[str, str] | None = None,
                              before_commit: Callable[[Execution, Any], None] | None = None,
                              ) -> tuple[Any, int | None, Execution]: ...
    def read_only(self) -> Transaction: ...
    def action_execution(self, label: str | None = None, job: tuple[str, str] | None = None) -> Execution: ...
    async def invoke(self, mount: Mount, name: str, kind: str, args: dict[str, Any], ex: Execution,
                     depth: int) -> Any: ...
    def resolve_ref(self, caller: Mount, ref: Any) -> tuple[Mount, str, dict[str, Any]]: ...
    def resolve_client(self, function: str, admin: bool) -> tuple[Mount, str, dict[str, Any]]: ...
    def check_args_size(self, function: str, args: Any) -> None: ...
    async def run_query(self, mount: Mount, name: str, args: dict[str, Any]) -> tuple[Any, int | None, Any]: ...
