"""The field positions msgspec cannot check alone: each spec encodes and decodes one.

A spec sits behind a marker type (see :mod:`anybus._markers`) in the msgspec types that
:mod:`anybus._schema` compiles: tags (``bytes``, ``datetime``, ``date``), maps with ``$dict``
escapes, values annotated ``Any``, enums and literals checked strictly on encode, adapted
types, and annotations the wire cannot carry.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from ._hints import hint_name, short
from ._markers import Encoding, convert_in, convert_out
from ._plain import (
    Problem,
    check_map,
    from_plain,
    from_plain_map,
    key_segment,
    literal_map,
    tag,
    to_plain,
    untag,
)

if TYPE_CHECKING:
    from ._adapters import TypeAdapter

__all__ = [
    "AdaptedSpec",
    "AnySpec",
    "EnumSpec",
    "FloatSpec",
    "LiteralSpec",
    "MapSpec",
    "Spec",
    "TaggedSpec",
    "UnsupportedSpec",
]


def _held(value: object, hint: Any) -> Problem:
    return Problem(f"holds a {type(value).__qualname__!r} but is annotated {hint_name(hint)}")


class Spec:
    """One annotated position that msgspec hands to the codec's hooks."""

    hint: Any = Any

    def describe(self) -> str:
        """The annotation, for the marker's name."""
        return hint_name(self.hint)

    def encode(self, value: Any, state: Encoding) -> Any:
        """``value`` in its wire form (plain data or a msgspec Struct).

        Raises:
            Problem: the value cannot be encoded.
        """
        raise NotImplementedError

    def decode(self, data: Any) -> Any:
        """The value ``data`` (already parsed, or converted by msgspec) stands for.

        Raises:
            Problem: the data does not fit.
        """
        raise NotImplementedError


class AnySpec(Spec):
    """``Any`` (and forms the codec does not check): plain data, tags resolved."""

    def __init__(self, hint: Any = Any) -> None:
        self.hint = hint

    def encode(self, value: Any, state: Encoding) -> Any:
        return to_plain(value, state.binary, 1, state.finite)

    def decode(self, data: Any) -> Any:
        return from_plain(data, 1)


class FloatSpec(Spec):
    """A ``float`` field, encoding: an int or a float, and infinities noticed."""

    hint = float

    def encode(self, value: Any, state: Encoding) -> Any:
        kind = type(value)
        if kind is not float and (kind is bool or not isinstance(value, int | float)):
            raise _held(value, float)
        value = value if kind is float or kind is int else to_plain(value, False, 1, [True])
        if value - value != 0.0:
            state.finite[0] = False
        return value


class TaggedSpec(Spec):
    """``bytes``, ``datetime`` or ``date``: a tag (bytes raw for a binary serializer)."""

    def __init__(self, hint: type) -> None:
        self.hint = hint
        self.kinds: tuple[type, ...] = {
            bytes: (bytes, bytearray),
            bytearray: (bytes, bytearray),
            datetime: (datetime,),
            date: (date,),
        }[hint]

    def encode(self, value: Any, state: Encoding) -> Any:
        if not isinstance(value, self.kinds):
            raise _held(value, self.hint)
        return tag(value, state.binary)

    def decode(self, data: Any) -> Any:
        value = data
        if type(data) is dict:
            value = untag(data)
            if value is None:
                literal_map(data)  # a reserved key says more than "got dict"
                value = data
        elif type(data) is not bytes:  # raw bytes: a binary serializer's; nothing else is
            raise Problem(f"expected {self._expected()}, got {type(data).__qualname__}")
        if isinstance(value, self.kinds):
            return value
        raise Problem(f"expected {self._expected()}, got {type(value).__qualname__}")

    def _expected(self) -> str:
        return "bytes" if self.hint is bytearray else self.hint.__qualname__


class EnumSpec(Spec):
    """An enum: a member on encode (its value goes on the wire); built from its value."""

    def __init__(self, hint: type[Enum]) -> None:
        self.hint = hint

    def encode(self, value: Any, state: Encoding) -> Any:
        if not isinstance(value, self.hint):
            raise _held(value, self.hint)
        raw = value.value
        if raw is None or type(raw) in (str, int, float, bool):
            return raw
        raise Problem(f"enum value {short(raw)} is not a str, int, float or bool")

    def decode(self, data: Any) -> Any:
        name = self.hint.__qualname__
        if isinstance(data, list | dict):
            raise Problem(f"expected a {name}, got {type(data).__name__}")
        try:
            return self.hint(data)
        except Exception:
            raise Problem(f"{short(data)} is not a {name}") from None


class LiteralSpec(Spec):
    """``Literal[...]``: one of the values, of the same type."""

    def __init__(self, hint: Any, values: tuple[Any, ...]) -> None:
        self.hint = hint
        self.values = values

    def _match(self, value: Any) -> tuple[bool, Any]:
        for arg in self.values:
            raw = arg.value if isinstance(arg, Enum) else arg
            if value is arg or (value == raw and type(value) is type(raw)):
                return True, arg
        return False, None

    def encode(self, value: Any, state: Encoding) -> Any:
        found, arg = self._match(value)
        if not found:
            raise _held(value, self.hint)
        return arg.value if isinstance(arg, Enum) else arg

    def decode(self, data: Any) -> Any:
        plain = from_plain(data, 1)
        found, arg = self._match(plain)
        if not found:
            raise Problem(f"{short(plain)} is not one of {hint_name(self.hint)}")
        return arg


class MapSpec(Spec):
    """``dict[K, V]`` (and ``Mapping``): str keys (or enum keys), ``$dict`` escapes, values
    converted by msgspec, or walked for ``Any``."""

    def __init__(self, hint: Any, key_enum: type[Enum] | None, item: Any, types: Any) -> None:
        self.hint = hint
        self.key_enum = key_enum
        self.item = item  # the annotation of the values
        self.types = types  # (encode type, decode type) of the values, or None for Any

    def encode(self, value: Any, state: Encoding) -> Any:
        if not isinstance(value, dict):
            raise _held(value, self.hint)
        if self.types is None:
            return check_map(value, state.binary, 1, state.finite, self.key_enum)
        plain: dict[str, Any] = {}
        for key, item in value.items():
            name = key
            if type(key) is not str:
                if self.key_enum is not None and type(key) is self.key_enum:
                    name = key.value
                if type(name) is not str:
                    raise Problem(f"has a {type(key).__qualname__!r} key; keys must be str")
            try:
                plain[name] = convert_in(item, self.types[0], self.item, state)
            except Problem as exc:
                raise exc.under(key_segment(name)) from None
        return {"$dict": plain} if any(key[:1] == "$" for key in plain) else plain

    def decode(self, data: Any) -> Any:
        mapping = literal_map(data)
        if self.types is None and self.key_enum is None:
            return from_plain_map(mapping, 1)
        out: dict[Any, Any] = {}
        for key, item in mapping.items():
            name: Any = key
            if self.key_enum is not None:
                try:
                    name = self.key_enum(key)
                except Exception:
                    raise Problem(
                        f"not a {self.key_enum.__qualname__} key", key_segment(key)
                    ) from None
            try:
                if self.types is None:
                    out[name] = from_plain(item, 2)
                else:
                    out[name] = convert_out(item, self.types[1], self.item)
            except Problem as exc:
                raise exc.under(key_segment(key)) from None
        return out


class AdaptedSpec(Spec):
    """A type with a :class:`~anybus.TypeAdapter`: its plain form, checked like a field."""

    def __init__(self, adapter: TypeAdapter, types: tuple[Any, Any]) -> None:
        self.hint = adapter.cls
        self.adapter = adapter
        self.types = types

    def encode(self, value: Any, state: Encoding) -> Any:
        if not isinstance(value, self.hint):
            raise _held(value, self.hint)
        try:
            plain = self.adapter.to_plain(value)
        except Exception as exc:
            raise Problem(f"the {self.describe()} adapter's to_plain raised {short(exc)}") from exc
        return convert_in(plain, self.types[0], self.adapter.plain_type, state)

    def decode(self, data: Any) -> Any:
        plain = convert_out(data, self.types[1], self.adapter.plain_type)
        try:
            value = self.adapter.from_plain(plain)
        except Exception as exc:
            detail = short(exc, 200)
            raise Problem(f"the {self.describe()} adapter's from_plain raised {detail}") from None
        if not isinstance(value, self.hint):
            raise Problem(
                f"the {self.describe()} adapter's from_plain returned a "
                f"{type(value).__qualname__!r}, not a {self.describe()!r}"
            )
        return value


class UnsupportedSpec(Spec):
    """An annotation the wire cannot carry (``set[int]``, a class without an adapter)."""

    def __init__(self, hint: Any) -> None:
        self.hint = hint

    def _name(self) -> str:
        origin = getattr(self.hint, "__origin__", self.hint)
        return getattr(origin, "__qualname__", hint_name(self.hint))

    def encode(self, value: Any, state: Encoding) -> Any:
        raise Problem(
            f"is annotated {hint_name(self.hint)}, which the codec cannot carry; register an "
            f"adapter on both sides: anybus.register_adapter({self._name()}, to_plain=..., "
            f"from_plain=...)"
        )

    def decode(self, data: Any) -> Any:
        raise Problem(
            f"expected {hint_name(self.hint)}, which has no adapter on this side, "
            f"got {type(data).__qualname__}"
        )
