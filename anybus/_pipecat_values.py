"""pipecat's JSON values to the field codec's plain data and back (see ``_pipecat_wire``).

pipecat writes a typed value as a tag, ``{"__type__": <import path>, "__data__": ...}``: an enum
as its member's name, a dataclass or pydantic model as its fields (``None`` ones left out),
bytes as base64 under the name ``"bytes"``; str and int enums, dicts and lists are plain JSON.
:class:`Inbound` reads such JSON where an annotation says what each value is: a tag is read
only where the field's annotation names a class of that pipecat name (or a
:class:`~anybus.PipecatFrame`, which keeps its JSON as it is); a tag anywhere else, a payload
dict's items say, is refused (``Unknown``). Nothing named in the data is ever imported.
:class:`Outbound` writes a message's fields, already checked by the field codec, as pipecat
does. Datetimes and dates, which pipecat cannot carry, travel as ``"datetime"`` and ``"date"``
tags that pipecat drops (with a warning) and anybus reads back.
"""

from __future__ import annotations

import base64
import collections.abc as abc
import dataclasses
import functools
import sys
import types
import typing
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any, Final, Literal, Union

from ._exceptions import SerializationError
from ._pipecat_messages import FrameDirection, PipecatFrame, WorkerRegistryEntry

__all__ = ["VALUE_TYPES", "Inbound", "Invalid", "Outbound", "Unknown", "short", "tag_of"]

MAX_DEPTH: Final = 64
_SCALAR_TAGS: Final = {"bytes": "$bytes", "datetime": "$datetime", "date": "$date"}
_SEQUENCES: Final = (list, tuple, abc.Sequence, abc.MutableSequence, abc.Collection, abc.Iterable)
_MAPPINGS: Final = (dict, abc.Mapping, abc.MutableMapping)

#: The pipecat names of anybus's value types that pipecat writes as tags.
VALUE_TYPES: Final[Mapping[type, str]] = {
    FrameDirection: "pipecat.processors.frame_processor.FrameDirection",
    WorkerRegistryEntry: "pipecat.registry.types.WorkerRegistryEntry",
}


def short(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: safe to log whatever a peer sent."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**20 else "<a long int>"
    return text if len(text) <= limit else f"{text[: limit - 4]}...{text[-1]}"


class _Stub:
    def __init__(self, annotations: dict[str, Any]) -> None:
        self.__annotations__ = annotations


@functools.cache
def _field_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of the init fields of dataclass ``cls``, each class's own
    resolved in the module that defined it (``__module__`` may have been rewritten since)."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    hints: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        own = {k: v for k, v in vars(base).get("__annotations__", {}).items() if k in names}
        if own:
            namespace = getattr(vars(base).get("__init__"), "__globals__", None)
            if namespace is None:
                namespace = vars(sys.modules[base.__module__])
            hints.update(typing.get_type_hints(_Stub(own), namespace, dict(vars(base))))
    return hints


def _computed(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls) if not f.init)


class Invalid(Exception):
    """The data does not fit the annotation (the codec rejects it: ``invalid-fields``)."""


class Unknown(Exception):
    """A typed value of a class no annotation names here (``unknown-type``)."""


def tag_of(data: Any, path: str) -> tuple[str, Any] | None:
    """``(type name, data)`` of a pipecat tag, or ``None`` for anything else."""
    if type(data) is not dict or "__type__" not in data or "__data__" not in data:
        return None
    if len(data) != 2:
        raise Invalid(f"{path}: a typed value with other keys: {short(sorted(data), 80)}")
    name = data["__type__"]
    if type(name) is not str:
        raise Invalid(f"{path}: __type__ is a {type(name).__qualname__}, not a str")
    return name, data["__data__"]


def _escaped(mapping: dict[str, Any]) -> dict[str, Any]:
    """A dict as the field codec reads it: one with a ``$`` key is wrapped in ``$dict``."""
    return {"$dict": mapping} if any(key.startswith("$") for key in mapping) else mapping


def _origin(hint: Any) -> Any:
    return typing.get_origin(hint) or hint


class Inbound:
    """pipecat's JSON to the field codec's plain data, led by the annotations."""

    def __init__(self, names: Mapping[type, str]) -> None:
        self.names = names

    def name_of(self, cls: type) -> str:
        return self.names.get(cls) or f"anybus:{cls.__qualname__}"

    def named(self, hint: Any, name: str) -> bool:
        cls = _origin(hint)
        return isinstance(cls, type) and (
            (issubclass(cls, Enum) or dataclasses.is_dataclass(cls)) and self.name_of(cls) == name
        )

    def value(self, data: Any, hint: Any, path: str, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise Invalid(f"{path}: nested over {MAX_DEPTH} levels deep")
        if data is None:
            return None
        origin = typing.get_origin(hint)
        if origin is Union or origin is types.UnionType:
            return self.union(data, hint, path, depth)
        cls = _origin(hint)
        if hint is Any or origin is Literal or not isinstance(cls, type) or cls is object:
            return self.untyped(data, path, depth)
        tag = tag_of(data, path)
        if cls is PipecatFrame:
            if tag is None or type(tag[1]) is not dict:
                raise Invalid(f"{path}: a pipecat frame must be a typed value with a dict")
            return {"type": tag[0], "data": self.opaque(tag[1], path, depth + 1)}
        if tag is not None:
            name, inner = tag
            if name in _SCALAR_TAGS:
                return self.scalar_tag(name, inner, path)
            if not self.named(cls, name):
                raise Unknown(f"{path}: a {short(name, 80)} where {cls.__qualname__} belongs")
            if issubclass(cls, Enum):
                member = cls.__members__.get(inner) if type(inner) is str else None
                if member is None:
                    raise Invalid(f"{path}: {short(inner)} is not a {cls.__qualname__}")
                return member.value
            if type(inner) is not dict:
                raise Invalid(f"{path}: {name} holds a {type(inner).__qualname__}, not a dict")
            return self.fields(cls, inner, path, depth)
        if dataclasses.is_dataclass(cls) and type(data) is dict:
            return self.fields(cls, data, path, depth)
        args = typing.get_args(hint)
        if cls in _MAPPINGS and type(data) is dict:
            item = args[1] if len(args) == 2 else Any
            return self.mapping(data, item, path, depth)
        if cls in _SEQUENCES and type(data) is list:
            if cls is tuple and args and args[-1] is not Ellipsis:
                items = [*args, *[Any] * max(len(data) - len(args), 0)]
            else:
                items = [args[0] if args else Any] * len(data)
            return [
                self.value(x, h, f"{path}[{i}]", depth + 1)
                for i, (x, h) in enumerate(zip(data, items, strict=False))
            ]
        return self.untyped(data, path, depth)

    def union(self, data: Any, hint: Any, path: str, depth: int) -> Any:
        arms = [arm for arm in typing.get_args(hint) if arm is not types.NoneType]
        if len(arms) == 1:
            return self.value(data, arms[0], path, depth)
        tag = tag_of(data, path)
        if tag is not None:
            for arm in arms:
                if self.named(arm, tag[0]):
                    return self.value(data, arm, path, depth)
            if PipecatFrame in arms and tag[0] not in _SCALAR_TAGS:
                return self.value(data, PipecatFrame, path, depth)
        for arm in arms:
            cls = _origin(arm)
            if (type(data) is list and cls in _SEQUENCES) or (
                type(data) is dict and (cls in _MAPPINGS or dataclasses.is_dataclass(cls))
            ):
                return self.value(data, arm, path, depth)
        return self.untyped(data, path, depth)

    def untyped(self, data: Any, path: str, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise Invalid(f"{path}: nested over {MAX_DEPTH} levels deep")
        if type(data) is list:
            return [self.untyped(x, f"{path}[{i}]", depth + 1) for i, x in enumerate(data)]
        if type(data) is not dict:
            return data
        tag = tag_of(data, path)
        if tag is None:
            return self.mapping(data, Any, path, depth)
        if tag[0] in _SCALAR_TAGS:
            return self.scalar_tag(*tag, path)
        raise Unknown(f"{path}: a typed value {short(tag[0], 80)} where no annotation names one")

    def mapping(self, data: dict[str, Any], item: Any, path: str, depth: int) -> dict[str, Any]:
        return _escaped(
            {k: self.value(v, item, f"{path}[{short(k, 40)}]", depth + 1) for k, v in data.items()}
        )

    def fields(self, cls: type, data: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        hints, computed = _field_hints(cls), _computed(cls)
        prefix = f"{path}." if path else ""
        return _escaped(
            {
                key: self.value(value, hints.get(key, Any), prefix + key, depth + 1)
                for key, value in data.items()
                if key not in computed
            }
        )

    @staticmethod
    def scalar_tag(name: str, text: Any, path: str) -> dict[str, Any]:
        if type(text) is not str:
            raise Invalid(f"{path}: a {name} tag holds a {type(text).__qualname__}, not a str")
        return {_SCALAR_TAGS[name]: text}

    def opaque(self, data: Any, path: str, depth: int) -> Any:
        """JSON kept as it is (a frame's fields), escaped so that the field codec keeps it."""
        if depth > MAX_DEPTH:
            raise Invalid(f"{path}: nested over {MAX_DEPTH} levels deep")
        if type(data) is dict:
            return _escaped({k: self.opaque(v, path, depth + 1) for k, v in data.items()})
        if type(data) is list:
            return [self.opaque(x, path, depth + 1) for x in data]
        return data


class Outbound:
    """Message fields (already checked by the field codec) to pipecat's JSON."""

    def __init__(self, names: Mapping[type, str], message_type: str) -> None:
        self.names = names
        self.message_type = message_type

    def error(self, path: str, problem: str) -> SerializationError:
        return SerializationError(
            f"cannot encode {self.message_type}.{path} for pipecat: {problem}",
            message_type=self.message_type,
            field=path,
        )

    def fields(self, obj: object, path: str, depth: int) -> dict[str, Any]:
        prefix = f"{path}." if path else ""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):  # type: ignore[arg-type]
            value = getattr(obj, f.name)
            if f.init and value is not None:  # pipecat leaves None fields out
                out[f.name] = self.value(value, prefix + f.name, depth + 1)
        return out

    def value(self, value: Any, path: str, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.error(path, f"nested over {MAX_DEPTH} levels deep")
        if value is None or type(value) in (str, int, float, bool):
            return value
        if isinstance(value, PipecatFrame):
            return {"__type__": value.type, "__data__": self.json(value.data, path, depth)}
        if isinstance(value, Enum):
            if isinstance(value, str | int | float):  # pipecat writes these as plain values
                return value.value
            return {"__type__": self.name_of(type(value)), "__data__": value.name}
        if isinstance(value, str | int | float):
            return value
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {
                "__type__": self.name_of(type(value)),
                "__data__": self.fields(value, path, depth),
            }
        if isinstance(value, bytes | bytearray):
            return {"__type__": "bytes", "__data__": base64.b64encode(value).decode("ascii")}
        if isinstance(value, date):  # a datetime too: pipecat has no tag for either
            kind = "datetime" if isinstance(value, datetime) else "date"
            return {"__type__": kind, "__data__": value.isoformat()}
        if isinstance(value, dict):
            if "__type__" in value and "__data__" in value:
                raise self.error(
                    path, "a dict with keys '__type__' and '__data__' is a typed value"
                )
            out = {}
            for key, item in value.items():
                key = key.value if isinstance(key, Enum) else key
                out[str(key)] = self.value(item, f"{path}[{short(key, 40)}]", depth + 1)
            return out
        if isinstance(value, list | tuple):
            return [self.value(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
        raise self.error(path, f"pipecat's JSON cannot carry a {type(value).__qualname__!r}")

    def json(self, value: Any, path: str, depth: int) -> Any:
        """A frame's fields, which must be JSON already."""
        if depth > MAX_DEPTH:
            raise self.error(path, f"nested over {MAX_DEPTH} levels deep")
        if value is None or isinstance(value, str | int | float):  # bool is an int
            return value
        if isinstance(value, dict):
            return {
                str(k): self.json(v, f"{path}[{short(k, 40)}]", depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.json(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
        raise self.error(
            path,
            f"a frame's data is JSON, not a {type(value).__qualname__!r}; write typed values "
            f'as pipecat does (bytes: {{"__type__": "bytes", "__data__": "<base64>"}})',
        )

    def name_of(self, cls: type) -> str:
        return self.names.get(cls) or f"anybus:{cls.__qualname__}"
