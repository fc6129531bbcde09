"""File storage per mount: content-addressed blobs on disk, metadata in ``_storage``, signed URLs.

* **Blobs** live in ``DATA/files/ab/abcdef...`` named by their sha256.  A blob
  is written to ``DATA/files/tmp``, fsynced, renamed into place and its
  directory fsynced *before* the metadata that names it commits; a crash in
  between leaves an unreferenced blob, which the start-up sweep removes.
* **Metadata** is a document of the mount's ``_storage`` system table
  (``sha256``, ``size``, ``content_type``); its Id is the storage id.  An id of
  another mount's ``_storage`` is refused like any foreign Id.
* **URLs** are bearer URLs on the daemon's HTTP endpoint (127.0.0.1):
  ``GET /files/TOKEN`` serves a file until it is deleted, ``POST /upload/TOKEN``
  stores the request body (the token expires after ``upload_url_ttl_s``) and
  answers ``{"storage_id": ...}``.  Tokens are HMAC-signed by the daemon.
* A blob is removed when the last metadata naming it is deleted (checked
  across every mount, under a per-blob lock shared with uploads).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from runtime import systables
from runtime.coordinator.host import Execution, Host, Invocation, SyscallSpec
from runtime.errors import BulkheadError, IsolationError, LimitExceeded, NotFoundError, ValidationError
from runtime.protocol import signing
from runtime.protocol.syscalls import (
    StorageDeleteArgs,
    StorageGetArgs,
    StorageStoreArgs,
    StorageUploadUrlArgs,
    StorageUrlArgs,
    SyscallOp,
)
from runtime.transactions.ranges import IndexRange
from runtime.transactions.transaction import Transaction

TABLE = systables.FILES


class FileStore:
    """Blobs, their metadata and the signed URLs of one daemon."""

    def __init__(self, host: Host, root: Path) -> None:
        self.host = host
        self.limits = host.limits
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        self._key = hashlib.sha256(b"files" + host.storage.cursor_secret).digest()
        self._locks: dict[str, asyncio.Lock] = {}
        self.base_url = ""
        """``http://127.0.0.1:PORT`` once the endpoint serves."""
        self.stats = {"uploads": 0, "downloads": 0, "aborted_uploads": 0, "blobs_removed": 0}

    # --- blobs -------------------------------------------------------------------------------

    def blob_path(self, sha: str) -> Path:
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValidationError(f"{sha!r} is not a sha256")
        return self.root / sha[:2] / sha

    def _lock(self, sha: str) -> asyncio.Lock:
        return self._locks.setdefault(sha, asyncio.Lock())

    def _tmp_file(self) -> tuple[Path, int]:
        path = self.tmp / f"up-{os.getpid()}-{time.monotonic_ns()}-{os.urandom(4).hex()}"
        return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def _place(self, tmp: Path, sha: str) -> None:
        """Move a synced temp file to its content address (a blob already there is the same bytes)."""
        final = self.blob_path(sha)
        final.parent.mkdir(mode=0o700, exist_ok=True)
        if final.exists():
            tmp.unlink()
        else:
            os.replace(tmp, final)
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    async def write_stream(self, chunks: AsyncIterator[bytes], limit: int) -> tuple[Path, str, int]:
        """Write chunks to a synced temp file; return ``(temp path, sha256, size)``. On any error nothing stays."""
        path, fd = self._tmp_file()
        digest, size = hashlib.sha256(), 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise LimitExceeded("upload_max_bytes", size, limit, "uploaded file")
                digest.update(chunk)
                await asyncio.to_thread(os.write, fd, chunk)
            await asyncio.to_thread(os.fsync, fd)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return path, digest.hexdigest(), size

    async def write_bytes_async(self, data: bytes) -> tuple[Path, str, int]:
        """:meth:`write_bytes` off the event loop (it writes and fsyncs up to a frame's worth)."""
        return await asyncio.to_thread(self.write_bytes, data)

    def write_bytes(self, data: bytes) -> tuple[Path, str, int]:
        path, fd = self._tmp_file()
        try:
            os.write(fd, data)
            os.fsync(fd)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
        return path, hashlib.sha256(data).hexdigest(), len(data)

    async def commit_blob(self, tmp: Path, sha: str, size: int, mount: str, content_type: str | None) -> str:
        """Place the blob, then commit its metadata in ``mount``'s ``_storage``; return the storage id."""
        async with self._lock(sha):
            try:
                await asyncio.to_thread(self._place, tmp, sha)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise

            async def body(ex: Execution) -> str:
                assert ex.txn is not None
                return ex.txn.insert(mount, TABLE, {"sha256": sha, "size": size, "content_type": content_type})

            try:
                value, _ts, _ex = await self.host.run_transaction("mutation", body)
            except BulkheadError:
                await self._collect(sha, locked=True)  # the commit did not happen: nothing names the blob
                raise
            # (cancelled at shutdown: the commit may still land, so the blob stays; the start-up sweep decides)
        return str(value)

    async def _collect(self, sha: str, locked: bool = False) -> None:
        """Remove the blob if no mount's ``_storage`` names it any more."""
        async def run() -> None:
            if not self._referenced(sha):
                try:
                    self.blob_path(sha).unlink()
                    self.stats["blobs_removed"] += 1
                except FileNotFoundError:
                    pass

        if locked:
            await run()
        else:
            async with self._lock(sha):
                await run()

    def _referenced(self, sha: str) -> bool:
        txn = self.host.read_only()
        try:
            for table in txn.catalog.tables.values():
                if table.name == TABLE:
                    docs, _l, _d = txn.scan(table.mount, TABLE, "by_sha", IndexRange.from_ops([["eq", "sha256", sha]]),
                                            "asc", 1)
                    if docs:
                        return True
            return False
        finally:
            txn.close()

    def sweep(self) -> int:
        """At start: drop temp files and blobs no metadata names (a crash between blob and commit)."""
        for p in self.tmp.iterdir():
            p.unlink(missing_ok=True)
        removed = 0
        for sub in self.root.iterdir():
            if sub == self.tmp or not sub.is_dir():
                continue
            for blob in sub.iterdir():
                if not self._referenced(blob.name):
                    blob.unlink(missing_ok=True)
                    removed += 1
        return removed

    # --- tokens --------------------------------------------------------------------------------

    def _sign(self, payload: list[Any]) -> str:
        return signing.sign(self._key, payload)

    def open_token(self, token: str, kind: str) -> list[Any]:
        payload = signing.verify(self._key, token, "file URL")
        if payload is None:
            raise IsolationError("this file URL was not issued by this daemon (forged or altered)")
        if not isinstance(payload, list) or not payload or payload[0] != kind:
            raise ValidationError(f"this URL is not a {kind} URL")
        return payload

    # --- what ctx.storage does (coordinator side) --------------------------------------------

    def upload_url(self, mount: str) -> str:
        expires = self.host.clock.now() + self.limits.upload_url_ttl_s
        return f"{self.base_url}/upload/{self._sign(['upload', mount, expires])}"

    def meta(self, txn: Transaction, mount: str, storage_id: Any) -> dict[str, Any] | None:
        if not isinstance(storage_id, str):
            raise ValidationError(f"a storage id is a string, not {storage_id!r}")
        table = txn.table_of_id(mount, storage_id)  # an id of another mount is refused here
        if table.name != TABLE:
            raise ValidationError(f"{storage_id!r} is not a storage id (an Id of table {table.name!r})")
        return txn.get(mount, storage_id)

    def url(self, txn: Transaction, mount: str, storage_id: Any) -> str | None:
        if self.meta(txn, mount, storage_id) is None:
            return None
        return f"{self.base_url}/files/{self._sign(['get', mount, storage_id])}"

    def delete(self, txn: Transaction, ex: Execution, mount: str, storage_id: Any) -> None:
        doc = self.meta(txn, mount, storage_id)
        if doc is None:
            raise NotFoundError(f"no file {storage_id!r} in this mount's storage")
        txn.delete(mount, storage_id)
        ex.after_commit.append(lambda: self._spawn_collect(doc["sha256"]))

    def _spawn_collect(self, sha: str) -> None:
        asyncio.create_task(self._collect(sha))

    def read(self, txn: Transaction, mount: str, storage_id: Any) -> Path | None:
        """Where the file's bytes are (checked: this mount's, within the return size limit), or None."""
        doc = self.meta(txn, mount, storage_id)
        if doc is None:
            return None
        room = self.limits.return_size_bytes - 4096
        if doc["size"] > room:
            raise LimitExceeded("return_size_bytes", doc["size"], room,
                                "file read by ctx.storage.get (use ctx.storage.get_url for big files)")
        return self.blob_path(doc["sha256"])  # the caller reads it off the loop

    # --- the syscalls --------------------------------------------------------------------------

    def install(self) -> None:
        """Register the ``ctx.storage`` syscalls and the files status with the host."""
        actions_only = ("ctx.storage.{what} is for actions only (queries and mutations use get_url, "
                        "and mutations generate_upload_url and delete)")
        changes = "a {kind} cannot change file storage; mutations and actions can"
        reg = self.host.register_syscall
        reg(SyscallSpec(SyscallOp.STORAGE_URL, frozenset({"query", "mutation"}), inline=self._url_syscall,
                        action=self._url_from_action))
        reg(SyscallSpec(SyscallOp.STORAGE_GET, frozenset(), actions_only.format(what="get"),
                        action=self._get_from_action))
        reg(SyscallSpec(SyscallOp.STORAGE_STORE, frozenset(), actions_only.format(what="store"),
                        action=self._store_from_action))
        reg(SyscallSpec(SyscallOp.STORAGE_UPLOAD_URL, frozenset({"mutation"}), changes, inline=self._upload_url_syscall,
                        action=self._upload_url_from_action))
        reg(SyscallSpec(SyscallOp.STORAGE_DELETE, frozenset({"mutation"}), changes, inline=self._delete_syscall,
                        action=self._delete_from_action))
        self.host.register_status("files", lambda: dict(self.stats, http=self.base_url))

    def _url_syscall(self, inv: Invocation, args: StorageUrlArgs) -> str | None:
        assert inv.execution.txn is not None
        return self.url(inv.execution.txn, inv.mount.path, args.id)

    def _upload_url_syscall(self, inv: Invocation, args: StorageUploadUrlArgs) -> str:
        return self.upload_url(inv.mount.path)

    def _delete_syscall(self, inv: Invocation, args: StorageDeleteArgs) -> None:
        assert inv.execution.txn is not None
        self.delete(inv.execution.txn, inv.execution, inv.mount.path, args.id)

    async def _url_from_action(self, inv: Invocation, args: StorageUrlArgs) -> str | None:
        async def body(ex: Execution) -> str | None:
            assert ex.txn is not None
            return self.url(ex.txn, inv.mount.path, args.id)

        value, _ts, _ex = await self.host.run_transaction("query", body)
        return value  # type: ignore[no-any-return]

    async def _get_from_action(self, inv: Invocation, args: StorageGetArgs) -> bytes | None:
        async def body(ex: Execution) -> Path | None:
            assert ex.txn is not None
            return self.read(ex.txn, inv.mount.path, args.id)

        path, _ts, _ex = await self.host.run_transaction("query", body)
        return None if path is None else await asyncio.to_thread(path.read_bytes)

    async def _store_from_action(self, inv: Invocation, args: StorageStoreArgs) -> str:
        tmp, sha, size = await self.write_bytes_async(args.data)
        return await self.commit_blob(tmp, sha, size, inv.mount.path, args.content_type)

    async def _upload_url_from_action(self, inv: Invocation, args: StorageUploadUrlArgs) -> str:
        return self.upload_url(inv.mount.path)

    async def _delete_from_action(self, inv: Invocation, args: StorageDeleteArgs) -> None:
        async def body(ex: Execution) -> None:
            assert ex.txn is not None
            self.delete(ex.txn, ex, inv.mount.path, args.id)

        await self.host.run_transaction("mutation", body)
