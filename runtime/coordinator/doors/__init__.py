"""Doors of the coordinator (internal): how the outside reaches the kernel.

``clients`` (the ZeroMQ ROUTER socket clients and the CLI talk to),
``admin`` (the operations behind the admin key), ``http`` (the JSON API and
the WebSocket for subscriptions) with ``openapi`` (its document).  Next: the
dashboard.  A door talks to the kernel and to the narrow ports it is handed;
it never imports a service.
"""
