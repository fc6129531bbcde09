"""Internal: the wire between coordinator, workers and clients, in one place.

* :mod:`~runtime.protocol.messages` — one pydantic model per frame kind, a
  ``type`` tag, a ``request_id`` and the protocol ``version``;
* :mod:`~runtime.protocol.codec` — msgpack framing with the frame size checked
  before decoding, explicit ``max_*_len`` limits while decoding, no ext types,
  and the nesting depth checked before pydantic sees the value.
"""

from runtime.protocol.codec import decode_frame, encode_frame
from runtime.protocol.messages import PROTOCOL_VERSION, Message, MessageType

__all__ = ["PROTOCOL_VERSION", "Message", "MessageType", "decode_frame", "encode_frame"]
