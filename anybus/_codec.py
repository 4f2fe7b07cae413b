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
    encode: Callable[..., Any] | None = getattr(value, "encode", None)
    takes = set(_parameters(encode)) if callable(encode) else set()
    if not {"sender", "seq"} <= takes or not callable(getattr(value, "decode", None)):
        raise TypeError(
            f"codec must be a codec such as WireCodec() or PipecatWireCodec(), got {value!r}; "
            f"a serializer goes inside one: codec=WireCodec(serializer={value!r})"
        )
    return value  # type: ignore[return-value]


def _parameters(function: Callable[..., Any]) -> list[str]:
    try:
        return list(inspect.signature(function).parameters)
    except (TypeError, ValueError):  # a builtin without a signature
        return []
