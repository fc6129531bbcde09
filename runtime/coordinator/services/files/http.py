"""The files HTTP endpoint (127.0.0.1): ``GET /files/TOKEN`` serves a file, ``POST /upload/TOKEN`` stores one.

Part of the files service; the tokens are the store's signed URLs.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from runtime.coordinator.host import Host
from runtime.coordinator.services.files.store import FileStore
from runtime.errors import BulkheadError, IsolationError, LimitExceeded, NotFoundError, ValidationError
from runtime.limits import UPLOAD_CHUNK_BYTES


class FilesEndpoint:
    """The store's blobs over HTTP."""

    def __init__(self, host: Host, store: FileStore) -> None:
        self.host = host
        self.store = store
        self.limits = host.limits

    async def serve(self, host: str = "127.0.0.1") -> web.AppRunner:
        """Listen on ``host`` (a free port); the store's URLs name it from then on."""
        app = web.Application()
        app.router.add_get("/files/{token}", self._get)
        app.router.add_post("/upload/{token}", self._upload)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.store.base_url = f"http://{host}:{port}"
        return runner

    @staticmethod
    def _error(exc: BulkheadError, status: int) -> web.Response:
        return web.json_response({"error": exc.to_wire()}, status=status)

    async def _get(self, request: web.Request) -> web.StreamResponse:
        try:
            _kind, mount, storage_id = self.store.open_token(request.match_info["token"], "get")
            txn = self.host.read_only()
            try:
                doc = self.store.meta(txn, mount, storage_id)
            finally:
                txn.close()
        except (IsolationError, ValidationError) as exc:
            return self._error(exc, 403)
        if doc is None:
            return self._error(NotFoundError("this file was deleted"), 404)
        self.store.stats["downloads"] += 1
        headers = {"Content-Type": doc["content_type"] or "application/octet-stream", "ETag": doc["sha256"]}
        return web.FileResponse(self.store.blob_path(doc["sha256"]), headers=headers)

    async def _upload(self, request: web.Request) -> web.Response:
        try:
            _kind, mount, expires = self.store.open_token(request.match_info["token"], "upload")
            if self.host.clock.now() > expires:
                raise IsolationError("this upload URL has expired (upload_url_ttl_s); ask for a new one")
            dep = self.host.deployment
            if dep is None or mount not in dep.mounts:
                raise NotFoundError(f"mount {mount!r} is not deployed")
        except (IsolationError, ValidationError, NotFoundError) as exc:
            return self._error(exc, 403)
        try:
            tmp, sha, size = await asyncio.wait_for(
                self.store.write_stream(request.content.iter_chunked(UPLOAD_CHUNK_BYTES), self.limits.upload_max_bytes),
                self.limits.upload_timeout_s)
        except LimitExceeded as exc:
            self.store.stats["aborted_uploads"] += 1
            return self._error(exc, 413)
        except (TimeoutError, ConnectionError, OSError, asyncio.CancelledError) as exc:
            self.store.stats["aborted_uploads"] += 1
            if isinstance(exc, asyncio.CancelledError):
                raise
            return self._error(BulkheadError(f"the upload did not complete: {type(exc).__name__}"), 400)
        except Exception as exc:
            self.store.stats["aborted_uploads"] += 1
            return self._error(BulkheadError(f"the upload did not complete: {type(exc).__name__}: {exc}"), 400)
        content_type = request.headers.get("Content-Type") or None
        try:
            storage_id = await self.store.commit_blob(tmp, sha, size, mount, content_type)
        except BulkheadError as exc:
            return self._error(exc, 500)
        self.store.stats["uploads"] += 1
        return web.json_response({"storage_id": storage_id, "sha256": sha, "size": size})
