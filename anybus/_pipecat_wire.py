"""pipecat's wire format, spoken by an anybus bus: a mixed fleet of pipecat and anybus processes.

A stock pipecat ``RedisBus`` publishes each message as the JSON its ``JSONMessageSerializer``
writes::

    {"__type__": "pipecat.bus.messages.BusJobRequestMessage",
     "__data__": {"id": 17, "name": "BusJobRequestMessage#2", "source": "caller",
                  "target": "worker", "job_id": "...", "payload": {"file": "a.wav"}}}

Every dataclass field is written, ``id`` (an int) and ``name`` included, but those that are
``None``; typed values are tags (see ``_pipecat_values``). pipecat's serializer imports whatever
module a ``__type__`` names. :class:`PipecatWireCodec` does not: a message's ``__type__`` is
looked up in a :class:`~anybus.MessageRegistry` of pipecat names, and a typed value is read
only where its field's annotation names its class.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping
from enum import Enum
from typing import Final, final

from . import _messages as messages
from ._exceptions import MessageRejected, SerializationError
from ._fields import decode_fields, encode_fields
from ._message_types import MessageRegistry
from ._messages import BusMessage
from ._pipecat_messages import (
    BusFlushProgressMessage,
    BusFrameMessage,
    BusTTSSpeakMessage,
    BusWorkerRegistryMessage,
)
from ._pipecat_values import VALUE_TYPES, Inbound, Invalid, Outbound, Unknown, short
from ._wire import Envelope

__all__ = ["PipecatWireCodec", "pipecat_registry"]

#: The sender of every message that came from the pipecat side (see ``PipecatWireCodec``).
PIPECAT_SENDER: Final = "pipecat"
#: The target of a Redis bus's subscription probes (``anybus.redis._pubsub.PROBE_TARGET``).
PROBE_TARGET: Final = "anybus:probe"
_MAX_SEQ: Final = 2**64 - 1
_PROBES_REMEMBERED: Final = 64
_ID_PREFIX: Final = "pipecat:"

#: pipecat's ``pipecat.bus.messages``, but for the local ones (never on a wire).
_PIPECAT_MESSAGES: Final[tuple[type[BusMessage], ...]] = (
    messages.BusMessage,
    messages.BusDataMessage,
    messages.BusSystemMessage,
    BusFrameMessage,
    BusTTSSpeakMessage,
    BusFlushProgressMessage,
    messages.BusActivateWorkerMessage,
    messages.BusDeactivateWorkerMessage,
    messages.BusEndMessage,
    messages.BusEndWorkerMessage,
    messages.BusCancelMessage,
    messages.BusCancelWorkerMessage,
    BusWorkerRegistryMessage,
    messages.BusWorkerReadyMessage,
    messages.BusWorkerErrorMessage,
    messages.BusJobRequestMessage,
    messages.BusJobResponseMessage,
    messages.BusJobResponseUrgentMessage,
    messages.BusJobUpdateMessage,
    messages.BusJobUpdateUrgentMessage,
    messages.BusJobUpdateRequestMessage,
    messages.BusJobCancelMessage,
    messages.BusJobStreamStartMessage,
    messages.BusJobStreamDataMessage,
    messages.BusJobStreamEndMessage,
)
#: anybus's own messages, which pipecat does not have.
_ANYBUS_ONLY: Final[tuple[type[BusMessage], ...]] = (
    messages.BusWorkerPresenceMessage,
    messages.BusWorkerPresenceQueryMessage,
    messages.BusWorkerGoodbyeMessage,
)

#: The message types a :class:`PipecatWireCodec` encodes and decodes, under pipecat's names:
#: every message of pipecat's ``pipecat.bus.messages`` that anybus has (all but the local
#: ones) as ``"pipecat.bus.messages.<Name>"``, and anybus's own presence messages as
#: ``"anybus:<Name>"``, a name pipecat's serializer drops without importing anything.
#: Register your own messages here, under the import path of their pipecat class.
pipecat_registry = MessageRegistry()
for _cls in _PIPECAT_MESSAGES:
    pipecat_registry.register(_cls, f"pipecat.bus.messages.{_cls.__name__}")
for _cls in _ANYBUS_ONLY:
    pipecat_registry.register(_cls, f"anybus:{_cls.__name__}")
del _cls


@final
class PipecatWireCodec:
    """Speaks pipecat's wire format: stock pipecat processes (a pipecat ``RedisBus`` with its
    default ``JSONMessageSerializer``) and anybus processes on one channel.

    Give it to a :class:`~anybus.redis.RedisBus` in place of a :class:`~anybus.WireCodec`::

        bus = RedisBus(url, channel="pipecat:bus", codec=PipecatWireCodec())

    Only the types of ``registry`` travel, under their pipecat names. Nothing named in a
    payload is imported: an unregistered ``__type__`` is rejected (``unknown-type``), as is
    a typed value where the field's annotation does not name its class; bytes that do not
    parse, or do not have pipecat's shape, are ``malformed``; fields that do not fit the
    class are ``invalid-fields``. The bus counts each like any bad input.

    What anybus's own format has and pipecat's does not: signatures (this codec signs and
    checks nothing: anyone who can publish on the channel is trusted), and the envelope's
    sender and sequence number. Every message from the pipecat side (a pipecat process's,
    or another anybus process's on this channel) is given the sender ``"pipecat"`` and the
    next number of this codec's own count, so the bus sees no gaps and no repeats, and
    reports none; losses on this channel go unnoticed. One codec serves one bus: a second
    bus's messages would make both see gaps (``encode`` refuses a second sender).

    Message ids are pipecat's ints on the wire: a message from pipecat gets the id
    ``"pipecat:<int>@<source>"``, which goes back out as that int; any other id goes out
    as a 63-bit hash of itself. ``None`` fields are left out, as pipecat does (a field
    whose default is not ``None`` then arrives as its default).

    Args:
        registry: the message types, under their pipecat names; :data:`~anybus.pipecat_registry`
            by default.
        value_types: pipecat names of enums and dataclasses that fields hold, added to
            anybus's own (``FrameDirection``, ``WorkerRegistryEntry``); a class not named
            travels as ``"anybus:<qualified name>"``.
        max_size: the largest encoded message in bytes, checked by ``encode`` and by
            ``decode`` (before any parsing).

    Raises:
        ValueError: ``max_size`` is below 64, or a value type's name is not a non-empty str.
        TypeError: a value type is not an enum or a dataclass.
    """

    def __init__(
        self,
        registry: MessageRegistry | None = None,
        *,
        value_types: Mapping[type, str] | None = None,
        max_size: int = 1_048_576,
    ) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 64:
            raise ValueError(f"max_size must be an int of at least 64 bytes, got {max_size!r}")
        names = dict(VALUE_TYPES)
        for cls, name in (value_types or {}).items():
            if not isinstance(cls, type) or not (
                issubclass(cls, Enum) or dataclasses.is_dataclass(cls)
            ):
                raise TypeError(f"value_types keys must be enums or dataclasses, got {cls!r}")
            if not isinstance(name, str) or not name or not name.isprintable():
                raise ValueError(f"value_types[{cls.__qualname__}] must be a name, got {name!r}")
            names[cls] = name
        self._names: Mapping[type, str] = names
        self._registry = pipecat_registry if registry is None else registry
        self._max_size = max_size
        self._inbound = Inbound(names)
        self._bus: str | None = None  # the sender of the first encode: the bus it serves
        self._count = 0  # messages decoded from the pipecat side
        self._probes: OrderedDict[bytes, tuple[str, int]] = OrderedDict()

    @property
    def registry(self) -> MessageRegistry:
        """The registry of the message types this codec encodes and decodes."""
        return self._registry

    @property
    def max_size(self) -> int:
        """The largest encoded message, in bytes."""
        return self._max_size

    def encode(self, message: BusMessage, *, sender: str, seq: int) -> bytes:
        """Encode ``message`` as pipecat's JSON serializer would (``sender`` and ``seq`` do
        not travel: pipecat has no place for them).

        Raises:
            SerializationError: the message's type is not registered, a field holds a value
                that cannot be encoded (a dict with the keys ``__type__`` and ``__data__``,
                which pipecat would read as a typed value, for one), or the result is larger
                than ``max_size``.
            TypeError: ``message`` is not a :class:`~anybus.BusMessage`.
            ValueError: ``sender`` is not a non-empty str or is not the bus this codec
                serves, or ``seq`` is not an int in ``0..2**64-1``.
        """
        if not isinstance(message, BusMessage):
            raise TypeError(f"message must be a BusMessage, got {message!r}")
        if not isinstance(sender, str) or not sender:
            raise ValueError(f"sender must be a non-empty str, got {sender!r}")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= _MAX_SEQ:
            raise ValueError(f"seq must be an int in 0..2**64-1, got {seq!r}")
        if self._bus is None:
            self._bus = sender
        elif sender != self._bus:
            raise ValueError(
                f"sender {sender!r} is not {self._bus!r}, the bus this codec serves: it counts "
                f"what its bus receives, so give each bus a PipecatWireCodec of its own"
            )
        cls_name = type(message).__qualname__
        try:
            type_name = self._registry.name_of(type(message))
        except LookupError as exc:
            raise SerializationError(f"cannot encode {exc}", message_type=cls_name) from None
        encode_fields(message)  # the field codec's checks, against the annotations
        fields = Outbound(self._names, cls_name).fields(message, "", 0)
        data = {"id": _pipecat_id(message), "name": message.name, **fields}
        # ASCII, as pipecat writes it (other characters as \u escapes).
        payload = json.dumps({"__type__": type_name, "__data__": data}, separators=(",", ":"))
        encoded = payload.encode("ascii")
        if len(encoded) > self._max_size:
            raise SerializationError(
                f"encoded {cls_name} is {len(encoded)} bytes, over the max_size of "
                f"{self._max_size} bytes; send less data per message, or raise max_size",
                message_type=cls_name,
            )
        if message.target == PROBE_TARGET:  # its echo must be known as this bus's own
            self._probes[encoded] = (sender, seq)
            if len(self._probes) > _PROBES_REMEMBERED:
                self._probes.popitem(last=False)
        return encoded

    def decode(self, data: bytes) -> Envelope:
        """Check and decode pipecat's JSON; nothing named in it is imported.

        The envelope's sender is ``"pipecat"`` and its number the next of this codec's
        count (but for the echo of this bus's own subscription probe), its ``key_id``
        ``None``.

        Raises:
            MessageRejected: the bytes are refused; ``.reason`` is ``oversized`` (checked
                before parsing), ``malformed``, ``unknown-type`` or ``invalid-fields``.
            TypeError: ``data`` is not bytes (a ``bytearray`` or ``memoryview`` will do).
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be the bytes off the wire, got {type(data).__name__}")
        if len(data) > self._max_size:
            raise MessageRejected(
                "oversized", f"{len(data)} bytes, over the max_size of {self._max_size} bytes"
            )
        data = bytes(data)
        try:
            parsed = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise MessageRejected("malformed", f"not JSON: {short(exc)}") from None
        if type(parsed) is not dict or parsed.keys() != {"__type__", "__data__"}:
            shown = sorted(map(str, parsed))[:8] if type(parsed) is dict else type(parsed)
            raise MessageRejected("malformed", f"not a pipecat message: {short(shown)}")
        type_name, fields = parsed["__type__"], parsed["__data__"]
        if type(type_name) is not str or type(fields) is not dict:
            raise MessageRejected(
                "malformed", f"bad __type__ {short(type_name, 80)} or __data__ {type(fields)}"
            )
        try:
            cls = self._registry.lookup(type_name)
        except LookupError as exc:
            raise MessageRejected("unknown-type", str(exc)) from None
        raw_id, name = fields.pop("id", None), fields.pop("name", None)
        if type(raw_id) is not int or type(name) is not str:
            raise MessageRejected(
                "invalid-fields",
                f"{cls.__qualname__}: id must be an int and name a str, got "
                f"{short(raw_id, 30)} and {short(name, 60)}",
            )
        source = fields.get("source")
        message_id = f"{_ID_PREFIX}{raw_id}@{source if type(source) is str else ''}"
        try:
            plain = self._inbound.fields(cls, fields, "", 0)
        except Unknown as exc:
            raise MessageRejected("unknown-type", f"{cls.__qualname__}.{exc}") from None
        except Invalid as exc:
            raise MessageRejected("invalid-fields", f"{cls.__qualname__}.{exc}") from None
        except RecursionError:
            raise MessageRejected("invalid-fields", "fields nested too deeply") from None
        except Exception as exc:  # annotations that do not resolve: a bug of this side
            detail = f"cannot read the annotations of {cls.__qualname__}: {short(exc, 200)}"
            raise MessageRejected("invalid-fields", detail) from None
        message = decode_fields(cls, plain, message_id=message_id, name=name)
        own = self._probes.pop(data, None)
        if own is not None:
            return Envelope(message, own[0], own[1], type_name, None)
        self._count += 1
        return Envelope(message, PIPECAT_SENDER, self._count, type_name, None)

    def __repr__(self) -> str:
        return (
            f"<PipecatWireCodec [json, max_size={self._max_size}, unsigned, "
            f"{len(self._registry)} types]>"
        )


def _pipecat_id(message: BusMessage) -> int:
    """The int that stands for ``message.id`` on pipecat's wire."""
    if message.id.startswith(_ID_PREFIX):
        number, _, source = message.id[len(_ID_PREFIX) :].partition("@")
        if source == message.source and number.isascii() and number.isdigit():
            return int(number)
    digest = hashlib.blake2b(message.id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
