"""Serializers: plain data (dicts, lists, str, int, float, bool, None) to bytes and back.

A serializer never sees a message: :mod:`anybus._fields` first turns the message's fields into
plain data, and the wire codec frames the serializer's bytes in an envelope. The codec trusts a
serializer to do one thing: parse bytes into plain data without running any code named in them.
Both serializers here only build dicts, lists and scalars.

:class:`~anybus.WireCodec` knows these two: with either, it encodes and decodes a whole message
in one msgspec call (msgspec's JSON and MessagePack), without building the plain data first.
The bytes are the same as the serializers' own.
"""

from __future__ import annotations

import importlib
import json
import math
from types import ModuleType
from typing import Any, Protocol, final, runtime_checkable

import msgspec

from ._plain import scalar_hook

__all__ = ["JSONSerializer", "MsgpackSerializer", "Serializer"]


@runtime_checkable
class Serializer(Protocol):
    """What :class:`~anybus.WireCodec` needs from a serializer.

    ``encode`` receives a dict of plain data: str keys; values that are dicts, lists, str,
    int, float, bool or ``None``, and ``bytes`` only if the serializer sets a class attribute
    ``binary = True`` (otherwise bytes arrive already tagged as base64 text). ``decode`` must
    give back the same plain data, building nothing else: it is fed untrusted bytes. Both
    ends of a connection must use serializers with the same :attr:`name`.
    """

    @property
    def name(self) -> str:
        """Short name written in every envelope, such as ``"json"`` (at most 255 ASCII bytes)."""

    def encode(self, obj: dict[str, Any]) -> bytes:
        """Serialize plain data to bytes; raise any exception for what it cannot represent."""

    def decode(self, data: bytes) -> Any:
        """Parse bytes back into plain data; raise any exception for bytes it cannot parse."""


#: msgspec's JSON, shared by the serializer and the wire codec's one-call path.
JSON_ENCODER = msgspec.json.Encoder(enc_hook=scalar_hook)
JSON_DECODER = msgspec.json.Decoder()


def dumps_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON as the standard library writes it, infinities and NaN included
    (``Infinity``, ``NaN``), which msgspec would write as ``null``."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _finite(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        return math.isfinite(value)
    if kind is dict:
        return all(_finite(item) for item in value.values())
    if kind is list or kind is tuple:
        return all(_finite(item) for item in value)
    return True


@final
class JSONSerializer:
    """The default serializer: compact UTF-8 JSON, written and parsed by msgspec.

    ``bytes`` travel as base64 text (a third more bytes); use :class:`MsgpackSerializer` for
    binary-heavy messages. Strings must be valid Unicode (a lone surrogate cannot be encoded).
    Infinite and NaN floats are written ``Infinity`` and ``NaN``, as Python's :mod:`json`
    writes them (and earlier anybus versions did), and read back.
    """

    name = "json"
    binary = False

    def encode(self, obj: dict[str, Any]) -> bytes:
        """Serialize ``obj`` to compact UTF-8 JSON."""
        data = JSON_ENCODER.encode(obj)
        if b"null" in data and not _finite(obj):  # msgspec wrote an infinity as null
            return dumps_json(obj)
        return data

    def decode(self, data: bytes) -> Any:
        """Parse UTF-8 JSON; raises ``ValueError`` for anything else."""
        try:
            return JSON_DECODER.decode(data)
        except msgspec.DecodeError:  # Infinity and NaN: parsed as Python's json does
            return json.loads(bytes(data).decode("utf-8"))

    def __repr__(self) -> str:
        return "JSONSerializer()"


@final
class MsgpackSerializer:
    """A compact binary serializer on `msgpack <https://msgpack.org/>`_; ``bytes`` travel raw.

    Needs the optional dependency: ``pip install 'anybus[msgpack]'``; its own ``encode`` and
    ``decode`` use it (:class:`~anybus.WireCodec` writes and reads the same bytes with msgspec).
    Integers must fit in 64 bits. Extension types, including msgpack's own timestamps, are
    never built from input (they reach the field decoder as unknown values and are rejected).

    Raises:
        ImportError: on instantiation, when msgpack is not installed.
    """

    name = "msgpack"
    binary = True

    def __init__(self) -> None:
        try:
            self._msgpack: ModuleType = importlib.import_module("msgpack")
        except ImportError as exc:
            raise ImportError(
                "MsgpackSerializer needs msgpack, which is not installed: "
                "pip install 'anybus[msgpack]'"
            ) from exc

    def encode(self, obj: dict[str, Any]) -> bytes:
        """Serialize ``obj`` to msgpack."""
        data: bytes = self._msgpack.packb(obj, use_bin_type=True, datetime=False)
        return data

    def decode(self, data: bytes) -> Any:
        """Parse msgpack: str keys only, no extension hooks, no trailing bytes."""
        return self._msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=True, timestamp=0
        )

    def __repr__(self) -> str:
        return "MsgpackSerializer()"
