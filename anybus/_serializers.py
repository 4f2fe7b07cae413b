"""Serializers: plain data (dicts, lists, str, int, float, bool, None) to bytes and back.

A serializer never sees a message: :mod:`anybus._fields` first turns the message's fields into
plain data, and the wire codec frames the serializer's bytes in an envelope. The codec trusts a
serializer to do one thing: parse bytes into plain data without running any code named in them.
Both serializers here only build dicts, lists and scalars.
"""

from __future__ import annotations

import importlib
import json
from types import ModuleType
from typing import Any, Protocol, final, runtime_checkable

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


@final
class JSONSerializer:
    """The default serializer: the standard library's :mod:`json`, compact, UTF-8.

    ``bytes`` travel as base64 text (a third more bytes); use :class:`MsgpackSerializer` for
    binary-heavy messages. Strings must be valid Unicode (a lone surrogate cannot be encoded).
    """

    name = "json"
    binary = False

    def encode(self, obj: dict[str, Any]) -> bytes:
        """Serialize ``obj`` to compact UTF-8 JSON."""
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def decode(self, data: bytes) -> Any:
        """Parse UTF-8 JSON; raises ``ValueError`` for anything else."""
        return json.loads(data.decode("utf-8"))

    def __repr__(self) -> str:
        return "JSONSerializer()"


@final
class MsgpackSerializer:
    """A compact binary serializer on `msgpack <https://msgpack.org/>`_; ``bytes`` travel raw.

    Needs the optional dependency: ``pip install 'anybus[msgpack]'``. Integers must fit in
    64 bits. Extension types, including msgpack's own timestamps, are never built from input
    (they reach the field decoder as unknown values and are rejected).

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
