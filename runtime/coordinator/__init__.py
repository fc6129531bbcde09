"""The coordinator daemon (internal; it never imports user code).

Layout, lowest first — each layer imports only itself and what is below it
(``tests/test_layers.py`` enforces this, and that there are no cycles):

* ``kernel/`` — mounts and deploys (``deploy``: supervision too), call routing
  and the call rules (``calls``), the transaction runner and its retry lane
  (``runner``), invocations and deadlines (``invocations``), the syscall router
  (``syscalls``), the ``ctx.db`` syscalls (``database``), logs; ``core.Kernel``
  composes them.  ``host.Host`` is the narrow view services get.
* ``services/`` — the scheduler (jobs, static crons), subscriptions, the query
  cache, files (store and HTTP endpoint).  Each registers its syscalls and hooks
  through ``Host``; no service imports another, or a door.
* ``doors/`` — how the outside gets in: the ZeroMQ client socket, the admin
  operations.  A door is handed the ports it needs; it imports no service.
* ``daemon`` — wiring only: builds the kernel, installs each service (one
  line each), opens each door.
"""
