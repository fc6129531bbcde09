"""Internal: the wire between coordinator, workers and clients, in one place.

* :mod:`~runtime.protocol.messages` — one frozen ``msgspec.Struct`` per frame
  kind, a ``type`` tag, a ``request_id`` and the protocol ``version``;
* :mod:`~runtime.protocol.codec` — msgpack framing with the frame size checked
  before decoding, one typed msgspec pass (unknown fields, types, ranges and
  lengths), no ext types, then the nesting depth, keys and element counts of
  the ``Any`` payload fields.

The pydantic models of :mod:`~runtime.protocol.deploy`, ``admin`` and
``syscalls`` validate what frames carry (manifests, admin and syscall
arguments); the frame envelope itself is msgspec.
"""

from runtime.protocol.codec import decode_frame, encode_frame
from runtime.protocol.messages import PROTOCOL_VERSION, Message, MessageType

__all__ = ["PROTOCOL_VERSION", "Message", "MessageType", "decode_frame", "encode_frame"]
