"""The coordinator's kernel (internal): mounts and deploys, calls, transactions, invocations, syscalls, logs.

Modules, in dependency order: ``logs``, ``mounts``, ``runner`` (executions and
the OCC loop), ``invocations`` (tokens, deadlines), ``syscalls`` (the router),
``database`` (the ``ctx.db`` syscalls), ``calls`` (routing, call rules,
handles), ``deploy`` (deploys and supervision), ``core`` (the :class:`Kernel`
that composes them).  The kernel imports no service and no door.
"""
