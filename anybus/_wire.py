"""The wire format: a signed envelope around a serialized message, and the counter of rejects.

Layout of one encoded message (every length is one unsigned byte)::

    +------+---+---+------------+---+--------+------------------+-------------------------+
    | "AB" | V | S | serializer | K | key id | HMAC-SHA256      | body                    |
    |  2   | 1 | 1 |  S bytes   | 1 | K bytes| 32 bytes, if K>0 | serializer-encoded dict |
    +------+---+---+------------+---+--------+------------------+-------------------------+

``V`` is the format version (1), ``K`` is 0 for an unsigned message. The HMAC is computed over
every other byte of the message (the header without the HMAC, then the body), so everything
that is decoded is covered. The body is ``{"type", "sender", "seq", "id", "name", "fields"}``,
and a signed one adds ``"time_ms"``: when it was encoded (the network buses' readers refuse a
stale or repeated signed message as a replay: see :mod:`anybus._sequence`). A message sent
while tracing is on (:mod:`anybus.otel`) adds ``"trace"``: ``[headers, sent_ns]``, the W3C
trace context (at most 8 headers of text) and the send time, covered by the signature too.

With anybus's own serializers the body is written in one msgspec call, and read in two: the
envelope (its fields left as raw bytes), then the fields, straight into the registered class.
Any input that this path does not take is decoded again the slow way, through the serializer
and :func:`~anybus._fields.decode_fields`, which gives the reason of the rejection.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, final

import msgspec

from ._envelope import (
    BODY_KEYS,
    HEAD_JSON,
    HEAD_MSGPACK,
    MAX_SEQ,
    MSGPACK_ENCODER,
    OPTIONAL_KEYS,
    Body,
    Trace,
    trace_from,
)
from ._exceptions import MessageRejected, SerializationError
from ._fields import decode_bytes, decode_fields, encode_fields, encode_struct
from ._hints import short
from ._hooks import TRACE_KEY, TraceContext, state
from ._message_types import MessageRegistry, adapters_of, default_registry
from ._messages import BusMessage
from ._plain import scalar_hook
from ._rejections import RejectionCounter
from ._serializers import JSON_ENCODER, JSONSerializer, MsgpackSerializer, Serializer, dumps_json
from ._wire_options import check_label, check_wire_options

__all__ = ["Envelope", "RejectionCounter", "WireCodec"]

MAGIC: Final = b"AB"
FORMAT_VERSION: Final = 1
MAC_SIZE: Final = 32


@final
@dataclass(frozen=True, slots=True)
class Envelope:
    """A message decoded from the wire, with what its envelope said.

    Attributes:
        message: the message, with the sender's ``id`` and ``name``.
        sender: the bus instance id of the sending bus.
        seq: the sender's sequence number.
        type_name: the registered type name the message was sent under.
        key_id: the id of the key whose signature was verified, or ``None`` when the decoding
            codec has no signing keys.
        timestamp: when the sender encoded it, in seconds since the epoch by the sender's
            clock; ``None`` when the envelope has none (an unsigned message).
    """

    message: BusMessage
    sender: str
    seq: int
    type_name: str
    key_id: str | None
    timestamp: float | None = None


@final
class WireCodec:
    """Turns messages into signed, size-checked bytes for a transport, and back.

    Args:
        serializer: turns plain data into bytes; :class:`~anybus.JSONSerializer` by default.
            Both ends must use the same one.
        registry: the message types that may be encoded and decoded; only names registered
            here are ever decoded. ``anybus.default_registry`` by default.
        max_size: the largest encoded message in bytes, checked by ``encode`` and by
            ``decode`` (before any parsing).
        signing_keys: key id to secret. When given, ``encode`` signs with HMAC-SHA256 and
            ``decode`` only accepts messages signed with one of these keys. List the old key
            next to the new one while rotating.
        signing_key_id: the key ``encode`` signs with; may be left out when there is one key.
        replay_window: with signing keys, the network buses refuse a signed message as
            ``replayed`` when its timestamp is further than this many seconds from their clock,
            or when it repeats a message they took; ``None`` turns replay protection off.
        clock: the wall clock, in seconds since the epoch, that timestamps signed messages
            and that measures their age (``time.time``).

    Raises:
        ValueError: ``max_size`` is below 64, a key id is not 1 to 255 printable ASCII
            characters, a secret is empty, ``signing_key_id`` names no key, or
            ``replay_window`` is not a positive number of seconds.
        TypeError: a secret is not ``bytes``.
    """

    def __init__(
        self,
        serializer: Serializer | None = None,
        registry: MessageRegistry = default_registry,
        *,
        max_size: int = 1_048_576,
        signing_keys: Mapping[str, bytes] | None = None,
        signing_key_id: str | None = None,
        replay_window: float | None = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._replay_window, self._keys, signing_key_id = check_wire_options(
            serializer=serializer,
            registry=registry,
            max_size=max_size,
            replay_window=replay_window,
            clock=clock,
            signing_keys=signing_keys,
            signing_key_id=signing_key_id,
        )
        self._clock = clock
        self._serializer: Serializer = JSONSerializer() if serializer is None else serializer
        self._registry = registry
        self._max_size = max_size
        self._binary = bool(getattr(self._serializer, "binary", False))
        # anybus's own serializers: the whole body in one msgspec call (see the module's doc).
        self._native = type(self._serializer) in (JSONSerializer, MsgpackSerializer)
        serializer_name = check_label(self._serializer.name, "serializer name")
        self._signing_key_id = signing_key_id
        key_bytes = b"" if signing_key_id is None else signing_key_id.encode("ascii")
        self._header_start = MAGIC + bytes([FORMAT_VERSION, len(serializer_name)])
        self._header_start += serializer_name
        self._header = self._header_start + bytes([len(key_bytes)]) + key_bytes

    @property
    def serializer(self) -> Serializer:
        """The serializer of the message bodies."""
        return self._serializer

    @property
    def registry(self) -> MessageRegistry:
        """The registry of the message types this codec encodes and decodes."""
        return self._registry

    @property
    def max_size(self) -> int:
        """The largest encoded message, in bytes."""
        return self._max_size

    @property
    def signing_key_id(self) -> str | None:
        """The id of the key ``encode`` signs with, or ``None`` when not signing."""
        return self._signing_key_id

    @property
    def key_ids(self) -> frozenset[str]:
        """The ids of the keys ``decode`` accepts (empty: signatures are not checked)."""
        return frozenset(self._keys)

    @property
    def replay_window(self) -> float | None:
        """How far, in seconds, a signed message's timestamp may be from the receiver's clock
        (``None``: replay protection is off)."""
        return self._replay_window if self._keys else None

    @property
    def clock(self) -> Callable[[], float]:
        """The wall clock of the timestamps and of their freshness."""
        return self._clock

    def encode(self, message: BusMessage, *, sender: str, seq: int) -> bytes:
        """Encode ``message`` in an envelope from bus instance ``sender`` with number ``seq``.

        Raises:
            SerializationError: the message's type is not registered (local messages never
                are), a field holds a value that cannot be encoded (the error names the
                field and its type), or the result is larger than ``max_size``.
            TypeError: ``message`` is not a :class:`~anybus.BusMessage`.
            ValueError: ``sender`` is not a non-empty str, or ``seq`` is not an int in
                ``0..2**64-1``.
        """
        if not isinstance(message, BusMessage):
            raise TypeError(f"message must be a BusMessage, got {message!r}")
        if not isinstance(sender, str) or not sender:
            raise ValueError(f"sender must be a non-empty str, got {sender!r}")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
            raise ValueError(f"seq must be an int in 0..2**64-1, got {seq!r}")
        cls_name = type(message).__qualname__
        try:
            type_name = self._registry.name_of(type(message))
        except LookupError as exc:
            raise SerializationError(f"cannot encode {exc}", message_type=cls_name) from None
        try:
            data = self._encode_body(message, type_name, sender, seq)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(
                f"cannot encode {cls_name}: the {self._serializer.name} serializer "
                f"failed with {exc!r}",
                message_type=cls_name,
            ) from exc
        size = len(self._header) + (MAC_SIZE if self._signing_key_id else 0) + len(data)
        if size > self._max_size:
            raise SerializationError(
                f"encoded {cls_name} is {size} bytes, over the max_size of {self._max_size} "
                f"bytes; send less data per message, or raise max_size on every bus",
                message_type=cls_name,
            )
        if self._signing_key_id is None:
            return self._header + data
        mac = self._mac(self._keys[self._signing_key_id], self._header, data)
        return self._header + mac + data

    def _encode_body(self, message: BusMessage, type_name: str, sender: str, seq: int) -> bytes:
        time_ms = int(self._clock() * 1000) if self._signing_key_id else msgspec.UNSET
        # Only while tracing: a message received traced and sent on by a process that does
        # not trace goes out as an untraced one would (same bytes, no stale send time).
        context: TraceContext | None = message.__dict__.get(TRACE_KEY) if state.tracing else None
        trace: Trace | msgspec.UnsetType = msgspec.UNSET
        if context is not None:
            trace = Trace(dict(context.headers), context.sent_ns)
        if self._native:
            adapters = adapters_of(self._registry)
            fields, finite = encode_struct(message, adapters, binary=self._binary)
            body = Body(type_name, sender, seq, message.id, message.name, fields, time_ms, trace)
            if self._binary:
                return MSGPACK_ENCODER.encode(body)
            if finite:
                return JSON_ENCODER.encode(body)
            return dumps_json(msgspec.to_builtins(body, enc_hook=scalar_hook))
        plain: dict[str, Any] = {
            "type": type_name,
            "sender": sender,
            "seq": seq,
            "id": message.id,
            "name": message.name,
            "fields": encode_fields(message, binary=self._binary, registry=self._registry),
        }
        if time_ms is not msgspec.UNSET:
            plain["time_ms"] = time_ms
        if context is not None:
            plain["trace"] = [dict(context.headers), context.sent_ns]
        data = self._serializer.encode(plain)
        if not isinstance(data, bytes):
            raise TypeError(f"encode() returned {type(data).__qualname__}, not bytes")
        return data

    def decode(self, data: bytes) -> Envelope:
        """Check, verify and decode bytes from the wire; nothing unregistered is imported.

        Raises:
            MessageRejected: the bytes are refused; ``.reason`` is ``oversized`` (checked
                before parsing), ``malformed``, ``version``, ``unsigned``, ``forged``,
                ``unknown-type`` or ``invalid-fields``.
            TypeError: ``data`` is not bytes (a ``bytearray`` or ``memoryview`` will do).
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be the bytes off the wire, got {type(data).__name__}")
        if len(data) > self._max_size:
            raise MessageRejected(
                "oversized", f"{len(data)} bytes, over the max_size of {self._max_size} bytes"
            )
        data = bytes(data)
        if data[:2] != MAGIC:
            raise MessageRejected("malformed", f"not an anybus envelope: starts {data[:8]!r}")
        if len(data) < 5:
            raise MessageRejected("malformed", f"truncated header: {len(data)} bytes")
        if data[2] != FORMAT_VERSION:
            raise MessageRejected(
                "version", f"envelope format version {data[2]}, this side reads {FORMAT_VERSION}"
            )
        end = 4 + data[3]
        name, key_length = data[4:end], data[end : end + 1]
        if not key_length:
            raise MessageRejected("malformed", f"truncated header: {len(data)} bytes")
        if name != self._header_start[4:]:
            raise MessageRejected(
                "malformed",
                f"encoded with serializer {short(name)[1:]}, this side reads "
                f"{self._serializer.name!r}",
            )
        key_end = end + 1 + key_length[0]
        header, mac, body = data[:key_end], b"", data[key_end:]
        if len(header) < key_end:
            raise MessageRejected("malformed", f"truncated header: {len(data)} bytes")
        key_id: str | None = None
        if key_length[0]:
            mac, body = body[:MAC_SIZE], body[MAC_SIZE:]
            if len(mac) < MAC_SIZE:
                raise MessageRejected("malformed", f"truncated signature: {len(data)} bytes")
            if self._keys:
                key_id = self._verify(header[end + 1 :], mac, header, body)
        elif self._keys:
            raise MessageRejected("unsigned", "no signature, and signing keys are configured")
        return self._decode_body(body, key_id)

    def _verify(self, raw_key_id: bytes, mac: bytes, header: bytes, body: bytes) -> str:
        key_id = raw_key_id.decode("ascii", errors="replace")
        secret = self._keys.get(key_id)
        if secret is None:
            raise MessageRejected("forged", f"signed with unknown key id {short(key_id)}")
        if not hmac.compare_digest(mac, self._mac(secret, header, body)):
            raise MessageRejected("forged", f"bad signature for key id {key_id!r}")
        return key_id

    @staticmethod
    def _mac(secret: bytes, header: bytes, body: bytes) -> bytes:
        digest = hmac.new(secret, header, hashlib.sha256)
        digest.update(body)
        return digest.digest()

    def _decode_body(self, body: bytes, key_id: str | None) -> Envelope:
        if self._native:
            try:
                head = (HEAD_MSGPACK if self._binary else HEAD_JSON).decode(body)
                if head.seq > MAX_SEQ:
                    raise ValueError(head.seq)
                message = decode_bytes(
                    self._registry.lookup(head.type),
                    head.fields,
                    adapters_of(self._registry),
                    binary=self._binary,
                    message_id=head.id,
                    name=head.name,
                )
                if head.trace is not None:
                    context = TraceContext(head.trace.headers, head.trace.sent_ns)
                    message.__dict__[TRACE_KEY] = context
                timestamp = None if head.time_ms is None else head.time_ms / 1000
                return Envelope(message, head.sender, head.seq, head.type, key_id, timestamp)
            except Exception:  # decoded again below, to say why it is refused
                pass
        try:
            parsed = self._serializer.decode(body)
        except Exception as exc:
            raise MessageRejected(
                "malformed", f"{self._serializer.name} body does not parse: {short(exc)}"
            ) from None
        # "time_ms" (signed messages) and "trace" (traced ones) may be there, the rest must be.
        if type(parsed) is not dict or parsed.keys() - OPTIONAL_KEYS != BODY_KEYS:
            shown = sorted(map(str, parsed))[:8] if type(parsed) is dict else type(parsed)
            raise MessageRejected("malformed", f"body is not an envelope body: {short(shown)}")
        type_name, sender, seq = parsed["type"], parsed["sender"], parsed["seq"]
        message_id, name, time_ms = parsed["id"], parsed["name"], parsed.get("time_ms")
        if not (
            type(type_name) is str
            and type(sender) is str
            and sender
            and type(seq) is int
            and 0 <= seq <= MAX_SEQ
            and type(message_id) is str
            and type(name) is str
            and (time_ms is None or (type(time_ms) is int and 0 <= time_ms <= MAX_SEQ))
        ):
            raise MessageRejected(
                "malformed",
                f"bad envelope values: type={short(type_name, 40)} sender={short(sender, 40)} "
                f"seq={short(seq, 30)} id={short(message_id, 40)} name={short(name, 40)} "
                f"time_ms={short(time_ms, 30)}",
            )
        try:
            cls = self._registry.lookup(type_name)
        except LookupError as exc:
            raise MessageRejected("unknown-type", str(exc)) from None
        trace = trace_from(parsed.get("trace"))
        message = decode_fields(
            cls, parsed["fields"], message_id=message_id, name=name, registry=self._registry
        )
        if trace is not None:
            message.__dict__[TRACE_KEY] = trace
        timestamp = None if time_ms is None else time_ms / 1000
        return Envelope(message, sender, seq, type_name, key_id, timestamp)

    def __repr__(self) -> str:
        signing = f"signing_key_id={self._signing_key_id!r}" if self._keys else "unsigned"
        replays = f", replay_window={self.replay_window} s" if self.replay_window else ""
        return (
            f"<WireCodec [{self._serializer.name}, max_size={self._max_size}, {signing}, "
            f"{len(self._keys)} key(s), {len(self._registry)} types{replays}]>"
        )
