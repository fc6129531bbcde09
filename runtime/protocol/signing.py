"""Tamper-evident tokens: a msgpack payload in URL-safe base64, a dot, a truncated HMAC-SHA256 tag.

Function handles and file URLs are both such tokens, each under a key of its
own derived from the data dir's secret, so they survive restarts and one kind
can never be passed off as the other.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import msgpack

from runtime.errors import ValidationError

TAG_HEX = 32


def _tag(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()[:TAG_HEX]


def sign(key: bytes, payload: Any) -> str:
    """``payload`` (msgpack-able) as a signed token."""
    body = base64.urlsafe_b64encode(msgpack.packb(payload)).decode().rstrip("=")
    return f"{body}.{_tag(key, body)}"


def verify(key: bytes, token: str, what: str) -> Any | None:
    """The payload of a token this key signed; None if forged or altered; ValidationError if not a token at all."""
    body, _, tag = token.rpartition(".")
    if not body or not hmac.compare_digest(tag, _tag(key, body)):
        return None
    try:
        return msgpack.unpackb(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, msgpack.UnpackException):
        raise ValidationError(f"malformed {what}") from None
