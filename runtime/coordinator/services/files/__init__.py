"""File storage (internal service): ``store`` (blobs, metadata, signed URLs, the ctx.storage syscalls) and
``http`` (the endpoint that serves and receives them)."""
