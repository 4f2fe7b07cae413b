"""What a network transport needs of a codec, so that any codec of that shape may be given.

:class:`~anybus.WireCodec` is anybus's own; :class:`~anybus.PipecatWireCodec` speaks
pipecat's wire format. Both have this shape, and the Redis buses take either.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._messages import BusMessage
    from ._wire import Envelope

__all__ = ["Codec", "check_codec"]


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


def check_codec(value: object) -> Codec | None:
    """``value``: None, or a codec (``encode(message, *, sender, seq)``, ``decode(data)``)."""
    if value is None:
        return None
    if isinstance(value, type):
        raise TypeError(
            f"codec takes a codec object, got the class {value.__name__}: write "
            f"codec={value.__name__}()"
        )
    encode: Callable[..., Any] | None = getattr(value, "encode", None)
    if not (callable(encode) and _takes_sender_and_seq(encode)) or not callable(
        getattr(value, "decode", None)
    ):
        raise TypeError(
            f"codec must be a codec (WireCodec(), PipecatWireCodec(), or an object with "
            f"encode(message, *, sender, seq) and decode(data)), got {value!r}; to use a "
            f"serializer, wrap it: codec=WireCodec(serializer=...)"
        )
    return value  # type: ignore[return-value]


def _takes_sender_and_seq(function: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: assume it does
        return True
    names = {p.name for p in parameters}
    return {"sender", "seq"} <= names or any(p.kind is p.VAR_KEYWORD for p in parameters)
