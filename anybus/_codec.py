"""What a network transport needs of a codec, so that any codec of that shape may be given.

:class:`~anybus.WireCodec` is anybus's own; :class:`~anybus.PipecatWireCodec` speaks
pipecat's wire format. Both have this shape, and the Redis buses take either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._messages import BusMessage
    from ._wire import Envelope

__all__ = ["Codec"]


class Codec(Protocol):
    """Turns messages into bytes for the network, and bytes from it back into envelopes."""

    @property
    def max_size(self) -> int:
        """The largest encoded message, in bytes."""
        ...

    def encode(self, message: BusMessage, *, sender: str, seq: int) -> bytes:
        """The bytes of ``message`` from ``sender``, numbered ``seq``.

        Raises:
            SerializationError: the message cannot be encoded.
        """
        ...

    def decode(self, data: bytes) -> Envelope:
        """The envelope ``data`` holds.

        Raises:
            MessageRejected: ``data`` is refused, with the reason.
        """
        ...
