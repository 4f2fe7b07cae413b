"""The envelope's body as msgspec writes and reads it, and the trace context it may carry.

See :mod:`anybus._wire` for the envelope around it. The body is ``{"type", "sender", "seq",
"id", "name", "fields"}``, plus ``"time_ms"`` in a signed message and ``"trace"`` in a message
sent while tracing; :class:`Head` reads it with the fields left as bytes for the message
class's own decoder.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

import msgspec

from ._exceptions import MessageRejected
from ._hints import short
from ._hooks import TraceContext
from ._plain import scalar_hook

__all__ = [
    "BODY_KEYS",
    "HEAD_JSON",
    "HEAD_MSGPACK",
    "MAX_HEADER_NAME",
    "MAX_HEADER_VALUE",
    "MAX_SEQ",
    "MAX_TRACE_HEADERS",
    "MSGPACK_ENCODER",
    "OPTIONAL_KEYS",
    "Body",
    "Head",
    "Trace",
    "header_travels",
    "trace_from",
]

BODY_KEYS: Final = frozenset({"type", "sender", "seq", "id", "name", "fields"})
OPTIONAL_KEYS: Final = frozenset({"time_ms", "trace"})
MAX_SEQ: Final = 2**64 - 1
#: A trace context's bounds: headers, and the length of a header's name and of its value.
MAX_TRACE_HEADERS: Final = 8
MAX_HEADER_NAME: Final = 64
MAX_HEADER_VALUE: Final = 512
#: The latest send time a trace context may give: 2**63 - 1 ns after the epoch (year 2262).
_MAX_SENT_NS: Final = 2**63 - 1

#: Trace headers are printable ASCII (W3C trace context and baggage are): anything else is
#: refused here, before a propagator could trip over it.
_PRINTABLE: Final = r"^[\x20-\x7e]*$"
_PRINTABLE_TEXT: Final = re.compile(_PRINTABLE)
_HeaderName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_HEADER_NAME, pattern=_PRINTABLE)
]
_HeaderValue = Annotated[str, msgspec.Meta(max_length=MAX_HEADER_VALUE, pattern=_PRINTABLE)]


class Trace(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """A message's trace context on the wire: ``[headers, sent_ns]``."""

    headers: Annotated[dict[_HeaderName, _HeaderValue], msgspec.Meta(max_length=MAX_TRACE_HEADERS)]
    sent_ns: Annotated[int, msgspec.Meta(ge=0, le=_MAX_SENT_NS)]


class Body(msgspec.Struct):
    """The body, to encode: ``fields`` is the message's encode Struct."""

    type: str
    sender: str
    seq: int
    id: str
    name: str
    fields: Any
    time_ms: int | msgspec.UnsetType = msgspec.UNSET  # signed messages only
    trace: Trace | msgspec.UnsetType = msgspec.UNSET  # sent while tracing


class Head(msgspec.Struct, forbid_unknown_fields=True):
    """The body, as first decoded: the fields are left as bytes for the class's decoder."""

    type: str
    sender: Annotated[str, msgspec.Meta(min_length=1)]
    seq: Annotated[int, msgspec.Meta(ge=0)]  # and at most MAX_SEQ (msgspec stops at int64)
    id: str
    name: str
    fields: msgspec.Raw
    time_ms: Annotated[int, msgspec.Meta(ge=0)] | None = None
    trace: Trace | None = None


MSGPACK_ENCODER: Final = msgspec.msgpack.Encoder(enc_hook=scalar_hook)
HEAD_JSON: Final = msgspec.json.Decoder(Head)
HEAD_MSGPACK: Final = msgspec.msgpack.Decoder(Head)


def header_travels(name: object, value: object) -> bool:
    """Whether a receiver accepts this trace header: printable ASCII text, of bounded length
    (what :class:`Trace` checks, for the serializers msgspec does not read)."""
    return (
        type(name) is str
        and type(value) is str
        and 0 < len(name) <= MAX_HEADER_NAME
        and len(value) <= MAX_HEADER_VALUE
        and _PRINTABLE_TEXT.match(name) is not None
        and _PRINTABLE_TEXT.match(value) is not None
    )


def trace_from(value: object) -> TraceContext | None:
    """A trace context read by a serializer of the user's: ``[headers, sent_ns]``, bounded."""
    if value is None:
        return None
    if not (
        type(value) is list
        and len(value) == 2
        and type(value[0]) is dict
        and len(value[0]) <= MAX_TRACE_HEADERS
        and all(header_travels(k, v) for k, v in value[0].items())
        and type(value[1]) is int
        and 0 <= value[1] <= _MAX_SENT_NS
    ):
        raise MessageRejected("malformed", f"bad trace context: {short(value, 80)}")
    return TraceContext(value[0], value[1])
