"""The field codec: a message's fields to plain data and back, guided by the class annotations.

Plain data is what every serializer carries: dicts with str keys, lists, str, int, float, bool,
``None`` (and raw ``bytes`` for binary serializers). Other values travel as *tags*, one-key dicts
whose key starts with ``$``:

* ``{"$bytes": "<base64>"}``, ``{"$datetime": "<ISO 8601>"}``, ``{"$date": "<ISO 8601>"}``;
* ``{"$dict": {...}}`` wraps a user dict that has a key starting with ``$``, so user data can
  never be read as a tag. A plain dict holding a ``$`` key is therefore invalid input.

Enum members and nested dataclasses are written as their value and as a dict of their fields;
the class to rebuild them is taken from the dataclass field's annotation, never from the data.
Tuples travel as lists and come back as tuples where the annotation says ``tuple``. Decoding
checks the data against the annotations and raises :class:`~anybus.MessageRejected` with
reason ``invalid-fields``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import types
import typing
from datetime import date, datetime
from enum import Enum
from typing import Any, Literal, TypeVar

from ._exceptions import MessageRejected, SerializationError
from ._hints import (
    MAPPINGS,
    SEQUENCES,
    decode_order,
    fits,
    hint_name,
    is_union,
    items_hints,
    mapping_hints,
    plan,
    short,
)
from ._messages import BusMessage

__all__ = ["MAX_DEPTH", "decode_fields", "encode_fields"]

_M = TypeVar("_M", bound=BusMessage)

#: Deeper nesting is refused on both sides (it also catches reference cycles when encoding).
MAX_DEPTH = 64

_SCALARS = (str, int, float, bool)
_TAGS = ("$bytes", "$datetime", "$date")
_SUPPORTED = (
    "None, bool, int, float, str, bytes, datetime, date, list, tuple, dict with str keys, "
    "and enums and dataclasses named by the field's annotation"
)


class _Encoder:
    def __init__(self, message_type: str, binary: bool) -> None:
        self.message_type = message_type
        self.binary = binary

    def error(self, path: str, problem: str) -> SerializationError:
        where = f"{self.message_type}.{path}" if path else self.message_type
        return SerializationError(
            f"cannot encode {where}: {problem}", message_type=self.message_type, field=path
        )

    def dataclass(self, obj: object, path: str, depth: int) -> dict[str, Any]:
        cls = type(obj)
        try:
            fields = plan(cls)
        except Exception as exc:
            problem = f"cannot resolve the annotations of {cls.__qualname__}: {exc!r}"
            raise self.error(path, problem) from exc
        prefix = f"{path}." if path else ""
        return {
            f.name: self.value(getattr(obj, f.name), f.hint, prefix + f.name, depth + 1)
            for f in fields
        }

    def value(self, value: Any, hint: Any, path: str, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.error(path, f"nested over {MAX_DEPTH} levels deep (a reference cycle?)")
        if hint is not Any:
            hint = self.narrow(value, hint, path)
        kind = type(value)
        if value is None or kind in _SCALARS:
            return value
        if isinstance(value, Enum):
            return self.enum(value, hint, path)
        # Subclasses of the scalars travel as the plain value (whatever their __str__ says).
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, int):
            return int.__int__(value)
        if isinstance(value, float):
            return float.__float__(value)
        if isinstance(value, bytes | bytearray):
            raw = bytes(value)
            return raw if self.binary else {"$bytes": base64.b64encode(raw).decode("ascii")}
        if isinstance(value, datetime):
            return {"$datetime": value.isoformat()}
        if isinstance(value, date):
            return {"$date": value.isoformat()}
        if isinstance(value, list | tuple):
            hints = items_hints(hint, len(value))
            if hints is None:
                raise self.error(path, f"has {len(value)} items, annotated {hint_name(hint)}")
            return [
                self.value(item, item_hint, f"{path}[{index}]", depth + 1)
                for index, (item, item_hint) in enumerate(zip(value, hints, strict=False))
            ]
        if isinstance(value, dict):
            return self.mapping(value, hint, path, depth)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            if hint is not kind:
                raise self.error(path, f"holds a {kind.__qualname__!r}, not its annotation")
            return self.dataclass(value, path, depth)
        raise self.error(path, f"unsupported type {kind.__qualname__!r}; supported: {_SUPPORTED}")

    def narrow(self, value: object, hint: Any, path: str) -> Any:
        """The arm of the annotation that applies to ``value``."""
        if is_union(typing.get_origin(hint)):
            arms = typing.get_args(hint)
            if type(value) in arms:
                return type(value)
            for arm in arms:
                if fits(value, arm):
                    return arm
        elif fits(value, hint):
            return hint
        problem = f"holds a {type(value).__qualname__!r} but is annotated {hint_name(hint)}"
        raise self.error(path, problem)

    def enum(self, value: Enum, hint: Any, path: str) -> Any:
        if hint is type(value):
            raw = value.value
            if raw is None or type(raw) in _SCALARS:
                return raw
            raise self.error(path, f"enum value {short(raw)} is not a str, int, float or bool")
        # A str, int or float enum the annotation does not name travels as its plain value.
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, int):
            return int.__int__(value)
        if isinstance(value, float):
            return float.__float__(value)
        raise self.error(
            path,
            f"holds enum member {value!s} but is not annotated with {type(value).__qualname__}, "
            f"so the receiver could not rebuild it",
        )

    def mapping(self, value: dict[Any, Any], hint: Any, path: str, depth: int) -> Any:
        key_hint, item_hint = mapping_hints(hint)
        out: dict[str, Any] = {}
        escape = False
        for key, item in value.items():
            if type(key) is key_hint and isinstance(key, Enum) and type(key.value) is str:
                key = key.value
            elif not isinstance(key, str):
                raise self.error(path, f"has a {type(key).__qualname__!r} key; keys must be str")
            key = str.__str__(key)
            escape = escape or key.startswith("$")
            out[key] = self.value(item, item_hint, f"{path}[{short(key, 40)}]", depth + 1)
        return {"$dict": out} if escape else out


def encode_fields(message: BusMessage, *, binary: bool = False) -> dict[str, Any]:
    """Turn the init fields of ``message`` into plain data (``id`` and ``name`` are not init
    fields: the envelope carries them). With ``binary`` true, bytes stay raw, untagged.

    Raises:
        SerializationError: a field value cannot be represented; the error names the class,
            the field (with the path into it) and the offending type.
    """
    return _Encoder(type(message).__qualname__, binary).dataclass(message, "", 0)


class _Invalid(Exception):
    pass


_NOT_A_TAG: Any = object()


class _Decoder:
    def __init__(self, message_type: str) -> None:
        self.message_type = message_type

    def error(self, path: str, problem: str) -> _Invalid:
        where = f"{self.message_type}.{path}" if path else self.message_type
        return _Invalid(f"{short(where, 120)[1:-1]}: {problem}")

    def value(self, data: Any, hint: Any, path: str, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.error(path, f"nested over {MAX_DEPTH} levels deep")
        if hint is Any or hint is object:
            return self.plain(data, path, depth)
        if hint is None or hint is types.NoneType:
            if data is None:
                return None
            raise self.error(path, f"expected None, got {type(data).__qualname__}")
        origin = typing.get_origin(hint)
        if is_union(origin):
            return self.union(data, hint, path, depth)
        if origin is Literal:
            plain = self.plain(data, path, depth)
            if any(plain == arg and type(plain) is type(arg) for arg in typing.get_args(hint)):
                return plain
            raise self.error(path, f"{short(plain)} is not one of {hint_name(hint)}")
        cls = origin if origin is not None else hint
        if not isinstance(cls, type):
            return self.plain(data, path, depth)
        if issubclass(cls, Enum):
            if isinstance(data, list | dict):
                raise self.error(path, f"expected a {cls.__qualname__}, got {type(data).__name__}")
            try:
                return cls(data)
            except Exception:
                raise self.error(path, f"{short(data)} is not a {cls.__qualname__}") from None
        if dataclasses.is_dataclass(cls):
            return self.dataclass(cls, self.literal_map(data, path), path, depth)
        if cls in SEQUENCES:
            if type(data) is not list:
                raise self.error(path, f"expected a list, got {type(data).__qualname__}")
            hints = items_hints(hint, len(data))
            if hints is None:
                raise self.error(path, f"{len(data)} items do not fit {hint_name(hint)}")
            items = [
                self.value(item, item_hint, f"{path}[{index}]", depth + 1)
                for index, (item, item_hint) in enumerate(zip(data, hints, strict=False))
            ]
            return tuple(items) if cls is tuple else items
        if cls in MAPPINGS:
            key_hint, item_hint = mapping_hints(hint)
            return self.mapping(self.literal_map(data, path), key_hint, item_hint, path, depth)
        plain = self.plain(data, path, depth)
        if not fits(plain, cls):
            raise self.error(path, f"expected {cls.__qualname__}, got {type(plain).__qualname__}")
        return plain

    def union(self, data: Any, hint: Any, path: str, depth: int) -> Any:
        arms = [arm for arm in decode_order(typing.get_args(hint)) if arm is not types.NoneType]
        if data is None and len(arms) < len(typing.get_args(hint)):
            return None
        if len(arms) == 1:  # Optional[X]: X's own error says more
            return self.value(data, arms[0], path, depth)
        for arm in arms:
            try:
                return self.value(data, arm, path, depth)
            except _Invalid:
                continue
        raise self.error(path, f"{type(data).__qualname__} does not fit {hint_name(hint)}")

    def plain(self, data: Any, path: str, depth: int) -> Any:
        """Decode without an annotation: lists stay lists, tags are resolved."""
        kind = type(data)
        if data is None or kind in _SCALARS or kind is bytes:
            return data
        if kind is list:
            return [self.value(x, Any, f"{path}[{i}]", depth + 1) for i, x in enumerate(data)]
        if kind is dict:
            tagged = self.tag(data, path)
            if tagged is not _NOT_A_TAG:
                return tagged
            return self.mapping(self.literal_map(data, path), Any, Any, path, depth)
        raise self.error(path, f"unexpected {kind.__qualname__} in the data")

    def tag(self, data: dict[Any, Any], path: str) -> Any:
        """The value of a ``$bytes``/``$datetime``/``$date`` tag, or ``_NOT_A_TAG``."""
        if len(data) != 1:
            return _NOT_A_TAG
        ((key, text),) = data.items()
        if key not in _TAGS:
            return _NOT_A_TAG
        if type(text) is not str:
            raise self.error(path, f"{key} tag holds a {type(text).__qualname__}, not a str")
        try:
            if key == "$bytes":
                return base64.b64decode(text, validate=True)
            if key == "$datetime":
                return datetime.fromisoformat(text)
            return date.fromisoformat(text)
        except (ValueError, binascii.Error):
            raise self.error(path, f"{key} tag holds an invalid value {short(text)}") from None

    def literal_map(self, data: Any, path: str) -> dict[str, Any]:
        """The mapping a dict (or a ``$dict`` escape) stands for, keys checked."""
        if type(data) is not dict:
            raise self.error(path, f"expected a dict, got {type(data).__qualname__}")
        escaped = len(data) == 1 and "$dict" in data
        if escaped:
            data = data["$dict"]
            if type(data) is not dict:
                raise self.error(path, f"$dict tag holds a {type(data).__qualname__}")
        for key in data:
            if type(key) is not str:
                raise self.error(path, f"has a {type(key).__qualname__} key; keys must be str")
            if key.startswith("$") and not escaped:
                raise self.error(path, f"has a reserved key {short(key, 40)}")
        return typing.cast(dict[str, Any], data)

    def mapping(
        self, data: dict[str, Any], key_hint: Any, item_hint: Any, path: str, depth: int
    ) -> dict[Any, Any]:
        enum_keys = isinstance(key_hint, type) and issubclass(key_hint, Enum)
        out: dict[Any, Any] = {}
        for key, item in data.items():
            item_path = f"{path}[{short(key, 40)}]"
            if enum_keys:
                try:
                    key = key_hint(key)
                except Exception:
                    raise self.error(item_path, f"not a {key_hint.__qualname__} key") from None
            out[key] = self.value(item, item_hint, item_path, depth + 1)
        return out

    def dataclass(self, cls: type, data: dict[str, Any], path: str, depth: int) -> Any:
        try:
            fields = plan(cls)
        except Exception as exc:
            problem = f"cannot resolve the annotations of {cls.__qualname__}: {exc!r}"
            raise self.error(path, problem) from None
        unknown = data.keys() - {f.name for f in fields}
        if unknown:
            shown = ", ".join(short(name, 40) for name in sorted(unknown)[:3])
            raise self.error(path, f"unknown field(s) {shown} for {cls.__qualname__}")
        missing = [f.name for f in fields if f.required and f.name not in data]
        if missing:
            raise self.error(path, f"missing required field(s) {', '.join(missing)}")
        prefix = f"{path}." if path else ""
        kwargs = {
            f.name: self.value(data[f.name], f.hint, prefix + f.name, depth + 1)
            for f in fields
            if f.name in data
        }
        try:
            return cls(**kwargs)
        except Exception as exc:
            raise self.error(path, f"{cls.__qualname__}(...) raised {short(exc, 200)}") from None


def decode_fields(cls: type[_M], fields: Any, *, message_id: str, name: str) -> _M:
    """Build a ``cls`` message from plain data, then set its ``id`` and ``name``.

    Only ``cls`` and the enums and dataclasses its annotations name are ever instantiated.

    Raises:
        MessageRejected: with reason ``invalid-fields`` when the data does not fit ``cls``:
            unknown or missing fields, values of the wrong type, or a constructor that raised.
    """
    decoder = _Decoder(cls.__qualname__)
    try:
        message = decoder.dataclass(cls, decoder.literal_map(fields, ""), "", 0)
    except _Invalid as exc:
        raise MessageRejected("invalid-fields", str(exc)) from None
    except RecursionError:
        raise MessageRejected("invalid-fields", "fields nested too deeply") from None
    except Exception as exc:  # pragma: no cover - a bug here must not crash a transport's reader
        raise MessageRejected("invalid-fields", f"decoding raised {short(exc, 200)}") from exc
    object.__setattr__(message, "id", message_id)
    object.__setattr__(message, "name", name)
    return typing.cast(_M, message)
