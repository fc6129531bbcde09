"""The HTTP door: a JSON API, an OpenAPI document and a WebSocket for subscriptions, on the kernel's operations.

::

    POST /api/query | /api/mutation | /api/action   {"path": "fn" | "mount:fn", "args": {...}, "idempotency_key"?}
        200 {"value": ..., "commit_ts": ...}       error: {"type", "code", "message", "data"[, "fields"]}
    GET  /api/openapi.json                          the deployment's public functions (all, with the admin key)
    GET  /api/ws                                    WebSocket (JSON text frames), below

On the WebSocket a client sends ``{"op": "subscribe", "id": N, "path": ..., "args": ...}`` (answered
``{"type": "subscribed", "id": N}``), ``{"op": "unsubscribe", "id": N}``, or a call ``{"op": "query" |
"mutation" | "action", "id": N, "path": ..., "args": ..., "idempotency_key"?}`` (answered ``{"type":
"result", "id": N, "value", "commit_ts"}``); a refused message is ``{"type": "error", "id": N, "error"}``.
The daemon pushes ``{"type": "transition", "ts": T, "updates": [{"id": N, "ok": true, "value": V} |
{"id": N, "ok": false, "error": E}]}``: the first carries every new subscription's current value, later
ones what changed, all of the connection's subscriptions at one ``T``; a mutation's ``result`` comes after
the transition that shows its commit.

Calls go through :meth:`Kernel.client_call` exactly as the ZeroMQ door's do
(resolution, visibility, validation in the callee's worker, idempotency), and
subscriptions through the subscriptions service (one transition moves all of
a connection's subscriptions to one timestamp).  ``Authorization: Bearer KEY``
with the admin key reaches any function of any mount.  Values JSON cannot
carry are encoded as the CLI prints them: bytes are ``{"$bytes": BASE64}``,
both ways.  A request carrying a browser ``Origin`` other than the daemon's own
is refused (403) on every state-changing route and on the WebSocket upgrade.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import WSMsgType, web

from runtime.coordinator.doors import openapi
from runtime.coordinator.doors.admin import AdminOps
from runtime.coordinator.doors.clients import Subscriber
from runtime.coordinator.kernel.core import Kernel
from runtime.errors import (
    BulkheadError,
    LimitExceeded,
    NotFoundError,
    ProtocolError,
    ValidationError,
    error_of,
    from_wire,
)
from runtime.limits import Limits
from runtime.protocol import codec
from runtime.protocol.messages import Transition

DEFAULT_HTTP_LISTEN = "127.0.0.1:0"
KINDS = ("query", "mutation", "action")
IDEMPOTENCY_KEY_MAX = 100
CLOSE_TIMEOUT_S = 2.0
"""How long a stopping daemon waits for a WebSocket's close handshake and for calls still running."""
WS_QUEUE_FRAMES = 8
"""Transitions queued for one WebSocket before the subscriptions service is told "full" (it retries)."""

STATUS = {"invalid_value": 400, "protocol": 400, "limit_exceeded": 400, "call_rule": 400, "not_found": 404,
          "isolation": 403, "component_error": 422, "occ_conflict": 409, "snapshot_too_old": 409,
          "deploy_refused": 409, "worker_crashed": 503}
"""HTTP status of each error code; any other code (user_error, determinism, storage, internal) is 500."""

Sender = Callable[[bytes, Transition], Awaitable[str]]


# --- values: JSON <-> the value model ---------------------------------------------------------------


def to_json(value: Any) -> Any:
    """A value as JSON can carry it: bytes become ``{"$bytes": BASE64}``."""
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def from_json(value: Any, where: str = "args") -> Any:
    """Decode ``{"$bytes": BASE64}`` (a map with that one key) back to bytes, naming a bad one's path."""
    if isinstance(value, dict):
        if len(value) == 1 and "$bytes" in value:
            raw = value["$bytes"]
            try:
                if not isinstance(raw, str):
                    raise ValueError
                return base64.b64decode(raw, validate=True)
            except (ValueError, binascii.Error):
                raise ValidationError(f"{where}: {{\"$bytes\": ...}} needs a base64 string",
                                      issues=[f"{where}: invalid $bytes"]) from None
        return {k: from_json(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def error_body(exc: BaseException) -> dict[str, Any]:
    """The JSON error of a failure: the same fields the CLI prints on stderr."""
    err = error_of(exc)
    body: dict[str, Any] = {"type": type(err).__name__, "code": err.code, "message": err.message,
                            "data": to_json(getattr(err, "data", None))}
    extra = {k: v for k, v in err.fields.items() if k not in ("data", "traceback")}
    if extra:
        body["fields"] = to_json(extra)
    return body


def error_response(exc: BaseException) -> web.Response:
    body = error_body(exc)
    too_big = isinstance(exc, LimitExceeded) and exc.fields.get("limit") == "max_frame_bytes"
    return web.json_response(body, status=413 if too_big else STATUS.get(body["code"], 500))


def call_parts(body: Any, kind: str, admin: bool,
               extra: tuple[str, ...] = ()) -> tuple[str, dict[str, Any], str | None]:
    """``(function, args, idempotency session)`` of a call's JSON body, each bad part named.

    The kernel's idempotency record is keyed by the session: here a digest of the key *with* the
    function, the arguments and the caller's standing, so a key replays only the very call it was
    sent with (another caller guessing a key learns nothing it did not send).
    """
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object {\"path\": ..., \"args\": {...}}",
                              issues=["body: not an object"])
    unknown = sorted(set(body) - {"path", "args", "idempotency_key", *extra})
    if unknown:
        raise ValidationError(f"unknown field(s) {', '.join(map(repr, unknown))}: the body has 'path', "
                              "'args' and 'idempotency_key'", issues=[f"{u}: unknown field" for u in unknown])
    function = body.get("path")
    if not isinstance(function, str) or not 0 < len(function) <= 512:
        raise ValidationError("'path' must name a function: \"fn\" or \"mount:fn\"",
                              issues=["path: not a function name"])
    args = body.get("args", {})
    if not isinstance(args, dict):
        raise ValidationError(f"'args' must be an object of keyword arguments, not {type(args).__name__}",
                              issues=["args: not an object"])
    key = body.get("idempotency_key")
    if key is not None:
        if kind != "mutation":
            raise ValidationError(f"'idempotency_key' applies to mutations, not a {kind}",
                                  issues=["idempotency_key: only for /api/mutation"])
        if not isinstance(key, str) or not 0 < len(key) <= IDEMPOTENCY_KEY_MAX or not key.isprintable():
            raise ValidationError(f"'idempotency_key' must be 1..{IDEMPOTENCY_KEY_MAX} printable characters",
                                  issues=["idempotency_key: invalid"])
    session = None
    if key is not None:
        scope = json.dumps([key, function, args, admin], sort_keys=True, separators=(",", ":"))
        session = "http/" + hashlib.blake2b(scope.encode(), digest_size=24).hexdigest()
    return function, from_json(args), session


# --- the door -----------------------------------------------------------------------------------------


class HttpDoor:
    """Serves the API on one aiohttp site; :meth:`sender` routes transitions to its WebSockets."""

    def __init__(self, kernel: Kernel, admin: AdminOps, subscriptions: Subscriber, limits: Limits,
                 listen: str = DEFAULT_HTTP_LISTEN) -> None:
        self.kernel = kernel
        self.admin = admin
        self.subscriptions = subscriptions
        self.limits = limits
        self.host, self.port = parse_listen(listen)
        self.origin = ""
        """``http://HOST:PORT`` once serving."""
        self.origins: set[str] = set()
        """Browser origins admitted: the daemon's own address (and on loopback its other names)."""
        self.hosts: set[str] | None = None
        """``Host`` headers admitted when bound to loopback (a DNS-rebinding page names its own host)."""
        self._sockets: dict[bytes, _Socket] = {}
        self._runner: web.AppRunner | None = None

    async def serve(self) -> str:
        """Listen; return the base URL (``http://HOST:PORT``)."""
        app = web.Application(client_max_size=codec.max_frame_bytes(self.limits), middlewares=[self._guard])
        for kind in KINDS:
            app.router.add_post(f"/api/{kind}", self._call_handler(kind))
        app.router.add_get("/api/openapi.json", self._openapi)
        app.router.add_get("/api/ws", self._ws)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=CLOSE_TIMEOUT_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.origin = f"http://{shown}:{port}"
        if self.host in ("127.0.0.1", "::1", "localhost"):
            self.hosts = {f"{shown}:{port}", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}
        self.origins = {self.origin, *(f"http://{h}" for h in self.hosts or ())}
        return self.origin

    async def close(self) -> None:
        """Close every WebSocket and stop serving; a call still running gets ``CLOSE_TIMEOUT_S``."""
        await asyncio.gather(*(sock.ws.close() for sock in list(self._sockets.values())), return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    def sender(self, other: Sender) -> Sender:
        """A subscriptions sender that pushes to this door's WebSockets and to ``other`` for every other ident."""
        async def send(ident: bytes, frame: Transition) -> str:
            sock = self._sockets.get(ident)
            if sock is None:
                return await other(ident, frame)
            return sock.push(frame)
        return send

    # --- guards ------------------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Refuse a cross-origin browser request that changes state (any POST) or opens a WebSocket, and on
        loopback any request naming another ``Host`` (DNS rebinding)."""
        if self.hosts is not None and request.headers.get("Host") not in self.hosts:
            exc = BulkheadError(f"request refused: Host {request.headers.get('Host')!r} is not this daemon's "
                                f"({self.origin})")
            return web.json_response({**error_body(exc), "code": "origin"}, status=403)
        changes = request.method not in ("GET", "HEAD", "OPTIONS") or request.path == "/api/ws"
        origin = request.headers.get("Origin")
        if changes and origin is not None and origin not in self.origins:
            exc = BulkheadError(f"cross-origin request refused: Origin {origin!r} is not this daemon's "
                                f"({self.origin}); call the API from a page it serves, or from a non-browser client")
            return web.json_response({**error_body(exc), "code": "origin"}, status=403)
        try:
            return await handler(request)
        except web.HTTPException as exc:  # no such route, wrong method, not a WebSocket upgrade: JSON too
            if exc.status < 400:
                raise
            err = NotFoundError if exc.status == 404 else ProtocolError
            return web.json_response(error_body(err(f"{request.method} {request.path}: {exc.reason}; the API is "
                                                    "POST /api/query|mutation|action, GET /api/openapi.json, "
                                                    "GET /api/ws")), status=exc.status)

    def _is_admin(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization")
        if auth is None:
            return False
        scheme, _, key = auth.partition(" ")
        return scheme.lower() == "bearer" and self.admin.is_admin(key.strip())

    # --- calls -------------------------------------------------------------------------------------

    def _call_handler(self, kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            try:
                admin = self._is_admin(request)
                function, args, session = await self._parse_call(request, kind, admin)
                value, ts = await self.kernel.client_call(function, args, kind, admin, session, 0)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                return error_response(exc)
            return web.json_response({"value": to_json(value), "commit_ts": ts})
        return handle

    async def _parse_call(self, request: web.Request, kind: str,
                          admin: bool) -> tuple[str, dict[str, Any], str | None]:
        """Read and check a call's body (see :func:`call_parts`)."""
        ctype = request.content_type
        if ctype != "application/json":
            raise ProtocolError(f"the body must be JSON (Content-Type: application/json), not {ctype!r}")
        try:
            body = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            raise LimitExceeded("max_frame_bytes", request.content_length, codec.max_frame_bytes(self.limits),
                                "the request body") from None
        except (ValueError, RecursionError) as exc:
            raise ProtocolError(f"the body is not valid JSON: {exc}") from None
        return call_parts(body, kind, admin)

    # --- the OpenAPI document ----------------------------------------------------------------------

    async def _openapi(self, request: web.Request) -> web.Response:
        doc = openapi.document(self.kernel, self._is_admin(request), self.origin, KINDS, IDEMPOTENCY_KEY_MAX)
        return web.json_response(doc)

    # --- subscriptions over a WebSocket --------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=codec.max_frame_bytes(self.limits), heartbeat=20.0,
                                   timeout=CLOSE_TIMEOUT_S)
        if not ws.can_prepare(request).ok:
            return error_response(ProtocolError("GET /api/ws is a WebSocket: send the Upgrade: websocket handshake"))
        await ws.prepare(request)
        admin = self._is_admin(request)
        ident = b"ws:" + secrets.token_bytes(12)
        sock = self._sockets[ident] = _Socket(ws)
        subs = self.subscriptions
        keepalive = asyncio.create_task(self._keepalive(ident))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        sock.send({"type": "error", "error": error_body(ProtocolError("send JSON text frames"))})
                    continue
                subs.touch(ident)
                reply = self._ws_message(ident, msg.data, admin)
                if reply is not None:
                    sock.send(reply)
        finally:
            keepalive.cancel()
            for sub_id in list(sock.subs):
                subs.unsubscribe(ident, sub_id)
            self._sockets.pop(ident, None)
            sock.close()
        return ws

    def _ws_message(self, ident: bytes, data: str, admin: bool) -> dict[str, Any] | None:
        """``{"op": "subscribe", "id": N, "path": ..., "args": {...}}``, ``{"op": "unsubscribe", "id": N}``, or
        a call ``{"op": "query" | "mutation" | "action", "id": N, "path": ..., "args": ...}`` (answered later,
        by a ``result``, once the connection's subscriptions reflect its commit)."""
        msg_id: Any = None
        try:
            try:
                msg = json.loads(data)
            except (ValueError, RecursionError) as exc:
                raise ProtocolError(f"the message is not valid JSON: {exc}") from None
            if not isinstance(msg, dict):
                raise ValidationError("a message is a JSON object with 'op' and 'id'",
                                      issues=["message: not an object"])
            msg_id = msg.get("id")
            if type(msg_id) is not int or not 0 <= msg_id < 2**31:
                raise ValidationError("'id' must be an integer 0..2**31-1 naming the subscription or call",
                                      issues=["id: not an id"])
            op = msg.get("op")
            sock = self._sockets[ident]
            if op in KINDS:
                function, args, session = call_parts({k: v for k, v in msg.items() if k not in ("op", "id")},
                                                     op, admin)
                sock.spawn(self._ws_call(ident, sock, msg_id, op, function, args, session, admin))
                return None
            if op == "subscribe":
                function, args, _ = call_parts({k: v for k, v in msg.items() if k not in ("op", "id")},
                                               "query", admin)
                self.subscriptions.subscribe(ident, msg_id, function, args, admin)
                sock.subs.add(msg_id)
                return {"type": "subscribed", "id": msg_id}
            if op == "unsubscribe":
                self.subscriptions.unsubscribe(ident, msg_id)
                sock.subs.discard(msg_id)
                return {"type": "unsubscribed", "id": msg_id}
            raise ValidationError(f"unknown op {op!r}: 'subscribe', 'unsubscribe', 'query', 'mutation' or "
                                  "'action'", issues=["op: unknown"])
        except BulkheadError as exc:
            return {"type": "error", "id": msg_id, "error": error_body(exc)}

    async def _ws_call(self, ident: bytes, sock: _Socket, msg_id: int, kind: str, function: str,
                       args: dict[str, Any], session: str | None, admin: bool) -> None:
        """A call over the WebSocket: as the ZeroMQ door runs it, read-your-writes included."""
        try:
            value, ts = await self.kernel.client_call(function, args, kind, admin, session, 0)
            if ts is not None and kind != "query" and self.subscriptions.has_subscriptions(ident):
                await self.subscriptions.reflect(ident, ts)
            sock.send({"type": "result", "id": msg_id, "value": to_json(value), "commit_ts": ts})
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            sock.send({"type": "error", "id": msg_id, "error": error_body(exc)})

    async def _keepalive(self, ident: bytes) -> None:
        """An open WebSocket is a live client: keep its subscriptions from expiring while it is connected."""
        interval = max(0.5, self.limits.subscription_idle_s / 4)
        while True:
            self.subscriptions.touch(ident)
            await asyncio.sleep(interval)


class _Socket:
    """One WebSocket: its subscription ids and a queue of frames one writer task sends in order."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.subs: set[int] = set()
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()
        """Calls made over this socket, still running."""
        self.transitions = 0
        """Transitions queued and not yet written: past ``WS_QUEUE_FRAMES`` a push says "full"."""
        self.writer = asyncio.create_task(self._write())

    def send(self, frame: dict[str, Any]) -> None:
        """A reply (one per message the client sent, so never refused)."""
        self.queue.put_nowait(frame)

    def push(self, t: Transition) -> str:
        if self.ws.closed:
            return "gone"
        if self.transitions >= WS_QUEUE_FRAMES:
            return "full"
        self.transitions += 1
        self.queue.put_nowait({"type": "transition", "ts": t.ts, "updates": [
            {"id": u.sub, "ok": True, "value": to_json(u.value)} if u.ok
            else {"id": u.sub, "ok": False, "error": error_body(from_wire(u.error or {}))} for u in t.updates]})
        return "ok"

    async def _write(self) -> None:
        while True:
            frame = await self.queue.get()
            if frame["type"] == "transition":
                self.transitions -= 1
            try:
                await self.ws.send_str(json.dumps(frame))
            except (ConnectionError, RuntimeError):
                return

    def spawn(self, call: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(call)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        self.writer.cancel()


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (port 0: a free one) as the HTTP door's bind address; a bad one is named."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValidationError(f"--http {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:8080 (port 0: a free one)")
    return host.strip("[]"), int(port)
