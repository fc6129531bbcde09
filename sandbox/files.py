"""``ctx.storage`` on the worker side: file storage operations as syscalls."""

from __future__ import annotations

from runtime.errors import CallRuleError, ValidationError
from sandbox.invocation import WorkerInvocation


class StorageReader:
    """``ctx.storage`` of a query: URLs of this mount's files."""

    def __init__(self, inv: WorkerInvocation) -> None:
        self._inv = inv

    async def get_url(self, storage_id: str) -> str | None:
        """A bearer URL serving the file (valid until it is deleted), or None if there is no such file."""
        url: str | None = await self._inv.syscall("storage_url", {"id": storage_id})
        return url

    async def store(self, data: bytes, content_type: str | None = None) -> str:
        """Actions only: queries and mutations are deterministic and do no file I/O."""
        raise CallRuleError("ctx.storage.store is for actions only (a mutation gives clients an upload URL: "
                            "ctx.storage.generate_upload_url())")

    async def get(self, storage_id: str) -> bytes | None:
        """Actions only (queries and mutations hand out ``get_url`` instead)."""
        raise CallRuleError("ctx.storage.get is for actions only (queries and mutations use ctx.storage.get_url)")


class StorageWriter(StorageReader):
    """``ctx.storage`` of a mutation: also upload URLs and deletion."""

    async def generate_upload_url(self) -> str:
        """A URL to POST a file's bytes to (it answers ``{"storage_id": ...}``); it expires (upload_url_ttl_s)."""
        url: str = await self._inv.syscall("storage_upload_url", {})
        return url

    async def delete(self, storage_id: str) -> None:
        """Delete a file of this mount (its URL stops working)."""
        await self._inv.syscall("storage_delete", {"id": storage_id})


class StorageActionWriter(StorageWriter):
    """``ctx.storage`` of an action: also store and read bytes."""

    async def store(self, data: bytes, content_type: str | None = None) -> str:
        """Store bytes as a file of this mount; return its storage id (big files: use an upload URL)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValidationError(f"ctx.storage.store takes bytes, not {type(data).__name__}")
        storage_id: str = await self._inv.syscall("storage_store", {"data": bytes(data),
                                                                    "content_type": content_type})
        return storage_id

    async def get(self, storage_id: str) -> bytes | None:
        """The file's bytes, or None if there is no such file."""
        data: bytes | None = await self._inv.syscall("storage_get", {"id": storage_id})
        return data


# --- the ctx classes ------------------------------------------------------------------------------------------
