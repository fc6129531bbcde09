"""The admin operations: status, deploy, data browsing, logs, the clock, stop — behind the admin key.

Any door may serve them (the ZeroMQ client socket today, the HTTP API next);
each op takes plain arguments and returns plain data.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.coordinator.kernel import envstore
from runtime.coordinator.kernel.core import Kernel
from runtime.errors import IsolationError, NotFoundError, ProtocolError, ValidationError
from runtime.protocol.admin import ADMIN_ARGS, ClockArgs, DataArgs, DeployArgs, EnvArgs, LogsArgs, parse_admin_args
from runtime.storage import keys
from runtime.transactions.ranges import ALL

ISOLATION_LAYERS = ("process_per_mount", "restricted_imports", "rlimits", "namespaces", "no_new_privs",
                    "not_dumpable", "landlock", "seccomp", "host_sockets", "separate_uids", "zygote")


class AdminOps:
    """What the admin key may do; ``ping`` needs no key."""

    def __init__(self, kernel: Kernel, admin_key: str, data_dir: Path, endpoint: Callable[[], str],
                 stop: Callable[[], None], key_file: str, started: float) -> None:
        self.kernel = kernel
        self.admin_key = admin_key
        self.data_dir = data_dir
        self.endpoint = endpoint
        self.stop = stop
        self.key_file = key_file
        self.started = started
        self.api: str | None = None
        """The HTTP API's base URL, once it serves (status shows it)."""

    def is_admin(self, auth: str | None) -> bool:
        return auth is not None and hmac.compare_digest(auth.encode(), self.admin_key.encode())

    async def run(self, op: str, args: dict[str, Any], auth: str | None) -> Any:
        if op == "ping":
            return {"pid": os.getpid()}
        if not self.is_admin(auth):
            raise IsolationError(f"admin operation {op!r} needs the admin key (from {self.key_file})")
        if op not in ADMIN_ARGS:
            raise ProtocolError(f"unknown admin op {op!r}")
        parsed = parse_admin_args(op, args)
        if isinstance(parsed, DeployArgs):
            return await self.kernel.deploy(parsed.app.model_dump())
        if isinstance(parsed, DataArgs):
            return self.data(parsed.mount, parsed.table, parsed.limit)
        if isinstance(parsed, EnvArgs):
            return await self.env(parsed)
        if isinstance(parsed, LogsArgs):
            return {"entries": self.kernel.logs.since(parsed.after, parsed.limit)}
        if isinstance(parsed, ClockArgs):
            clock = self.kernel.clock
            if parsed.advance is not None:
                return {"now": clock.advance(parsed.advance)}
            return {"now": clock.now(), "controllable": clock.controllable}
        if op == "status":
            return self.status()
        asyncio.get_running_loop().call_later(0.05, self.stop)  # "stop"
        return {"stopping": True}

    async def env(self, args: EnvArgs) -> Any:
        """Deployment environment values: ``list`` masks them, ``get`` returns one, ``set``/``unset`` store
        and restart only that mount's worker (``restarted``)."""
        deployer = self.kernel.deployer
        store = deployer.env
        dep = self.kernel.deployment
        mounts = dep.mounts if dep is not None else {}
        if args.action == "list":
            with_values = set(store.mounts())
            paths = [args.mount] if args.mount is not None else sorted(with_values | {
                p for p, m in mounts.items() if m.manifest.get("env_vars") or m.env})
            out = {}
            for path in paths:
                m = mounts.get(path)
                if m is None and path not in with_values and args.mount is not None:
                    raise NotFoundError(f"no mount {path!r} is deployed and none has variables set")
                declared = m.manifest.get("env_vars", {}) if m else {}
                defaults = {n: v["default"] for n, v in declared.items() if v.get("default") is not None}
                out[path] = envstore.describe(store.values(path), m.env if m else {}, defaults, declared)
            return {"mounts": out}
        mount = args.mount if args.mount is not None else ""
        if args.name is None:
            raise ValidationError(f"env {args.action} needs a variable name")
        envstore.check_name(args.name)
        if args.action == "get":
            values = store.values(mount)
            if args.name not in values:
                raise NotFoundError(f"{args.name!r} is not set for mount {mount or '(app)'!r} "
                                    "(`bulkhead env list` shows what is)")
            return {"mount": mount, "name": args.name, "value": values[args.name]}
        if args.action == "set":
            if args.value is None:
                raise ValidationError("env set needs a value")
            changed = store.set(mount, args.name, args.value)
        else:
            if args.name in deployer.required_env(mount):
                raise ValidationError(f"{args.name!r} is required by mount {mount or '(app)'!r}: set another value "
                                      "instead, or deploy code that no longer requires it")
            changed = store.unset(mount, args.name)
            if not changed:
                raise NotFoundError(f"{args.name!r} is not set for mount {mount or '(app)'!r}")
        restarted = await deployer.env_changed(mount) if changed else False
        return {"mount": mount, "name": args.name, "changed": changed, "restarted": restarted}

    def status(self) -> dict[str, Any]:
        kernel = self.kernel
        return {
            "pid": os.getpid(), "data_dir": str(self.data_dir), "client": self.endpoint(), "api": self.api,
            "uptime_s": round(time.time() - self.started, 3), "last_commit_ts": kernel.committer.last_ts,
            **kernel.status(),
            "isolation": self.isolation_summary(),
            "deployment": kernel.describe(),
        }

    def isolation_summary(self) -> dict[str, str]:
        """Each layer: "on" if every worker has it, else what the weakest worker reported."""
        dep = self.kernel.deployment
        out = {n: "off: nothing deployed" for n in ISOLATION_LAYERS}
        if dep is None or not dep.mounts:
            return out
        for n in ISOLATION_LAYERS:
            states = [m.worker.layers.get(n, "off: not applied") for m in dep.mounts.values()]
            off = [s for s in states if not s.startswith("on")]
            out[n] = off[0] if off else "on"
        uids = [m.worker.layers.get("separate_uids", "") for m in dep.mounts.values()]
        if out["separate_uids"] == "on" and len(set(uids)) != len(uids):
            out["separate_uids"] = "off: two mounts share a uid"
        return out

    def data(self, mount: str | None, table: str | None, limit: int = 100) -> Any:
        """Tables of every mount, tables of one mount, or the first documents of one table."""
        storage = self.kernel.storage
        catalog = storage.catalog
        # System tables (_scheduled, _crons, _storage) are listed when they hold documents; name one to read it.
        if mount is None:
            rows: list[dict[str, Any]]
            with storage.snapshot() as snap:
                rows = [{"mount": t.mount, "table": t.name, "documents": snap.count_table(t.number),
                         "read_only": t.read_only, "indexes": {n: list(i.fields) for n, i in t.indexes.items()}}
                        for t in sorted(catalog.tables.values(), key=lambda t: (t.mount, t.name))]
            return [r for r in rows if r["documents"] or not r["table"].startswith("_")]
        if table is None:
            tables = catalog.mount_tables(mount)
            dep = self.kernel.deployment
            if not tables and mount not in (dep.mounts if dep else {}):
                raise NotFoundError(f"no mount {mount!r}")
            with storage.snapshot() as snap:
                rows = [{"table": t.name, "documents": snap.count_table(t.number), "read_only": t.read_only}
                        for t in tables]
            return [r for r in rows if r["documents"] or not r["table"].startswith("_")]
        info = catalog.table(mount, table)
        ix = info.indexes[keys.BY_CREATION_TIME]
        lo, hi = ALL.bounds(ix)
        with storage.snapshot() as snap:
            return [doc for _k, doc, _s in itertools.islice(snap.scan(info.number, ix, lo, hi, False), limit)]
