"""Call routing and the call rules: who may call what, top-level and nested, and function handles.

A client names ``name``, ``module:name`` or (with the admin key)
``mount/path:name``.  A function calls its own mount's functions, its direct
children's public ones, and handles it was given (guarantee 3 says which
kinds may call which).  A nested call from a query or mutation is a
sub-transaction of the caller's: a write frame is pushed, the callee runs in
its own worker, and the frame is merged on success or discarded when the
callee raises.  From an action, each call is a top-level call of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from runtime import values
from runtime.coordinator.kernel.invocations import Invocation, Invoker
from runtime.coordinator.kernel.mounts import Deployment, Mount
from runtime.coordinator.kernel.runner import TransactionRunner
from runtime.coordinator.kernel.syscalls import ALL_KINDS, SyscallRouter, SyscallSpec
from runtime.errors import CallRuleError, IsolationError, LimitExceeded, NotFoundError, ValidationError
from runtime.limits import Limits
from runtime.protocol import signing
from runtime.protocol.syscalls import HandleArgs, RefHandle, RefPath, RunArgs, SyscallOp
from runtime.storage import Storage

CALLABLE_FROM: dict[str, tuple[str, ...]] = {
    "query": ("query",),
    "mutation": ("query", "mutation"),
    "action": ("query", "mutation", "action"),
}
"""Which kinds of function a function of each kind may call (guarantee 3)."""

QueryRunner = Callable[[], Awaitable[tuple[Any, int | None, Any]]]
ClientQueries = Callable[[str, str, dict[str, Any], QueryRunner], Awaitable[tuple[Any, int | None]]]
"""How a client's query is answered: ``(mount, name, args, run)``; the query cache replaces the default."""


async def _run_uncached(mount: str, name: str, args: dict[str, Any], run: QueryRunner) -> tuple[Any, int | None]:
    value, ts, _reads = await run()
    return value, ts


class Calls:
    """Resolves and runs calls from clients and from functions."""

    def __init__(self, storage: Storage, limits: Limits, invoker: Invoker, runner: TransactionRunner,
                 deployment: Callable[[], Deployment | None], stats: dict[str, int]) -> None:
        self.storage = storage
        self.limits = limits
        self.invoker = invoker
        self.runner = runner
        self._deployment = deployment
        self.stats = stats
        self.client_queries: ClientQueries = _run_uncached
        self.handle_key = hashlib.sha256(b"handles" + storage.cursor_secret).digest()
        self._inflight_idem: dict[str, asyncio.Future[tuple[Any, int | None]]] = {}

    def register(self, router: SyscallRouter) -> None:
        """Add ``run`` (nested calls) and ``handle`` (function handles) to the router."""
        router.register(SyscallSpec(SyscallOp.RUN, ALL_KINDS, waiting=self._run_syscall))
        router.register(SyscallSpec(SyscallOp.HANDLE, ALL_KINDS, inline=self._handle_syscall, needs_txn=False))

    # --- calls from clients -------------------------------------------------------------------

    def resolve_client(self, function: str, admin: bool) -> tuple[Mount, str, dict[str, Any]]:
        """Find what a client (or the admin key) names: ``name``, ``module:name``, ``mount/path:name``."""
        dep = self._deployment()
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
        self.check_args_size(function, args)
        mount, name, fman = self.resolve_client(function, admin)
        if kind is not None and fman["kind"] != kind:
            raise CallRuleError(f"{function!r} is a {fman['kind']}, not a {kind}")
        if fman["kind"] == "mutation" and session:
            return await self._idempotent(f"idem/{session}/{request_id}", mount, name, args)
        if fman["kind"] == "query":
            return await self.client_queries(mount.path, name, args, lambda: self.run_query(mount, name, args))
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

    def check_args_size(self, function: str, args: Any) -> None:
        """The arguments' encoded size, depth, list lengths and dict sizes against the limits, each named."""
        values.check_limits(args, self.limits, f"arguments of {function!r}")
        size = len(values.pack(args))
        if size > self.limits.arguments_size_bytes:
            raise LimitExceeded("arguments_size_bytes", size, self.limits.arguments_size_bytes,
                                f"arguments of {function!r}")

    # --- top-level runs ------------------------------------------------------------------------

    async def run_top(self, mount: Mount, name: str, kind: str, args: dict[str, Any],
                      idem_key: str | None = None) -> tuple[Any, int | None]:
        """Run a function as its own top-level call: a query/mutation in a new transaction, or an action."""
        label = self.runner.label()
        if kind == "action":
            ex = self.runner.action_execution(label)
            return await self.invoker.invoke(mount, name, kind, args, ex, 1), None
        value, ts, _ex = await self.runner.run(
            kind, lambda ex: self.invoker.invoke(mount, name, kind, args, ex, 1), label=label, idem_key=idem_key)
        return value, ts

    async def run_query(self, mount: Mount, name: str, args: dict[str, Any]) -> tuple[Any, int | None, Any]:
        """Run a query as its own transaction: ``(value, snapshot ts, read set)``."""
        value, ts, ex = await self.runner.run(
            "query", lambda ex: self.invoker.invoke(mount, name, "query", args, ex, 1))
        assert ex.txn is not None
        return value, ts, ex.txn.reads

    # --- nested calls -----------------------------------------------------------------------------

    def resolve_ref(self, caller: Mount, ref: Any) -> tuple[Mount, str, dict[str, Any]]:
        """Resolve a reference relative to the calling mount (own functions, direct children's public ones, handles)."""
        dep = self._deployment()
        if dep is None:
            raise NotFoundError("nothing is deployed")
        if isinstance(ref, (RefPath, RefHandle)):
            ref = ref.model_dump()
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

    async def _run_syscall(self, inv: Invocation, args: RunArgs) -> Any:
        if inv.in_call:
            raise CallRuleError("one nested call at a time per invocation: await each call before the next")
        return await self.nested(inv, args)

    async def nested(self, inv: Invocation, args: RunArgs) -> Any:
        """``ctx.run_query`` / ``run_mutation`` / ``run_action`` of an invocation."""
        target, name, fman = self.resolve_ref(inv.mount, args.ref)
        kind = fman["kind"]
        if args.kind != kind:
            raise CallRuleError(f"{name!r} is a {kind}: call it with run_{kind}, not run_{args.kind}")
        if kind not in CALLABLE_FROM[inv.kind]:
            raise CallRuleError(f"cannot call a {kind} ({name!r}) from a {inv.kind} ({inv.function!r})")
        call_args = args.args
        self.check_args_size(name, call_args)
        inv.in_call = True
        inv.paused_since = time.monotonic()
        try:
            if inv.kind == "action":
                if kind == "action":
                    ex = self.runner.action_execution(inv.execution.label, inv.execution.job)
                    return await self.invoker.invoke(target, name, kind, call_args, ex, 1)
                value, _ts = await self.run_top(target, name, kind, call_args)
                return value
            if inv.depth + 1 > self.limits.call_depth:
                raise CallRuleError(
                    f"nested call depth exceeds call_depth={self.limits.call_depth} "
                    "(an infinite loop between components?)"
                )
            txn = inv.execution.txn
            assert txn is not None
            frame = txn.begin_nested()
            try:
                value = await self.invoker.invoke(target, name, kind, call_args, inv.execution, inv.depth + 1)
            except BaseException:
                txn.rollback_nested(frame)
                raise
            txn.commit_nested(frame)
            return value
        finally:
            inv.in_call = False
            inv.paused += time.monotonic() - inv.paused_since

    # --- handles -----------------------------------------------------------------------------------------

    def _handle_syscall(self, inv: Invocation, args: HandleArgs) -> str:
        ref = args.ref
        if ref.path != "" or inv.mount.function(ref.name) is None:
            raise NotFoundError(f"function_handle: mount {inv.mount.label!r} has no function {ref.name!r} of its own")
        return self.make_handle(inv.mount.path, ref.name)

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
