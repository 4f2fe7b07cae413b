"""The field codec's schema: each dataclass's annotations compiled into msgspec types, once.

For every message class (and every dataclass its annotations name) a :class:`Plan` holds two
msgspec Structs with the class's init fields: one msgspec *decodes* into (unknown fields
forbidden, the class's own defaults left to its constructor) and one it *converts* a message
into to encode it (``from_attributes``), plus a JSON and a MessagePack decoder for the first,
built once. msgspec checks every value against the annotation; the positions it cannot check
alone go through the hooks of :mod:`anybus._specs`. A decoded Struct is turned into the class
by calling the class, so ``__post_init__`` runs as for any other instance.

Only the classes named by the annotations (and the adapters of the registry) are compiled or
built: nothing in a payload chooses a type. msgspec's errors are translated here into the
codec's own wording (``RichMessage.points[0].x: expected float, got str``).
"""

from __future__ import annotations

import collections.abc as abc
import dataclasses
import types
import typing
import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import Enum, Flag
from typing import Any, Final, Literal, Union

import msgspec

from ._adapters import Adapters
from ._hints import decode_order, hint_name, is_union, plan, short
from ._markers import (
    SEQUENCES,
    Encoding,
    Fields,
    convert_in,
    convert_out,
    decode_hook,
    enter_nested,
    explain,
    is_marker,
    leave_nested,
    marker,
)
from ._plain import MAX_DEPTH, Problem, literal_map
from ._specs import (
    AdaptedSpec,
    AnySpec,
    EnumSpec,
    FloatSpec,
    LiteralSpec,
    MapSpec,
    Spec,
    TaggedSpec,
    UnsupportedSpec,
)

__all__ = ["Plan", "compile_hint", "plan_for"]

_MAPPINGS: Final = (dict, abc.Mapping, abc.MutableMapping)
_NATIVE: Final = (str, int, bool, uuid.UUID, Decimal)
_UNSET: Final = msgspec.UNSET


def plan_for(cls: type, adapters: Adapters) -> Plan:
    """The compiled :class:`Plan` of dataclass ``cls`` under ``adapters``, cached.

    Raises:
        Exception: whatever resolving the annotations raised (``NameError`` for a name not
            defined at module level, typically); nothing is cached then.
    """
    found: Plan | None = adapters.plans.get(cls)
    if found is None:
        found = adapters.plans[cls] = Plan(cls, adapters)
    return found


class Plan(Fields):
    """One dataclass, compiled: its Structs, its decoders, and how to rebuild it."""

    def __init__(self, cls: type, adapters: Adapters) -> None:
        self.cls = cls
        self.qualname = cls.__qualname__
        fields = plan(cls)
        self.hints = {f.name: f.hint for f in fields}
        self.names = tuple(f.name for f in fields)
        self.required = tuple(f.name for f in fields if f.required)
        compiled = {f.name: compile_hint(f.hint, adapters) for f in fields}
        self.encode_struct: Any = msgspec.defstruct(
            self.qualname, [(name, compiled[name][0]) for name in self.names], kw_only=True
        )
        self.decode_struct: Any = msgspec.defstruct(
            self.qualname,
            [
                (f.name, compiled[f.name][1])
                if f.required
                else (f.name, compiled[f.name][1], _UNSET)
                for f in fields
            ],
            kw_only=True,
            forbid_unknown_fields=True,
        )
        self.json = msgspec.json.Decoder(self.decode_struct, dec_hook=decode_hook)
        self.msgpack = msgspec.msgpack.Decoder(self.decode_struct, dec_hook=decode_hook)

    def to_struct(self, obj: Any, state: Encoding) -> Any:
        """``obj`` (an instance of the class) as its encode Struct.

        Raises:
            Problem: a field holds what its annotation does not allow.
        """
        try:
            return msgspec.convert(
                obj, self.encode_struct, from_attributes=True, dec_hook=state.hook
            )
        except msgspec.ValidationError as exc:
            raise explain(exc, obj, self, encoding=True) from None

    def build(self, struct: Any) -> Any:
        """Call the class with the fields of a decoded Struct (those it received).

        Raises:
            Problem: the constructor raised.
        """
        kwargs = {
            name: value
            for name, value in zip(self.names, msgspec.structs.astuple(struct), strict=True)
            if value is not _UNSET
        }
        try:
            return self.cls(**kwargs)
        except Exception as exc:
            raise Problem(f"{self.qualname}(...) raised {short(exc, 200)}") from None

    def from_plain(self, data: Any) -> Any:
        """An instance built from plain data (a dict of fields), checked field by field.

        Raises:
            Problem: the data does not fit the class, or its constructor raised.
        """
        fields = literal_map(data)
        unknown = fields.keys() - set(self.names)
        if unknown:
            shown = ", ".join(short(name, 40) for name in sorted(unknown)[:3])
            raise Problem(f"unknown field(s) {shown} for {self.qualname}")
        missing = [name for name in self.required if name not in fields]
        if missing:
            raise Problem(f"missing required field(s) {', '.join(missing)}")
        try:
            struct = msgspec.convert(fields, self.decode_struct, dec_hook=decode_hook)
        except msgspec.ValidationError as exc:
            raise explain(exc, fields, self, encoding=False) from None
        return self.build(struct)


class DataclassSpec(Spec):
    """A nested dataclass: exactly its class on encode, built field by field on decode."""

    def __init__(self, hint: type, adapters: Adapters) -> None:
        self.hint = hint
        self.adapters = adapters

    def encode(self, value: Any, state: Encoding) -> Any:
        if type(value) is not self.hint:
            if isinstance(value, self.hint):
                raise Problem(f"holds a {type(value).__qualname__!r}, not its annotation")
            raise Problem(
                f"holds a {type(value).__qualname__!r} but is annotated {hint_name(self.hint)}"
            )
        if state.depth >= MAX_DEPTH:
            raise Problem(f"nested over {MAX_DEPTH} levels deep (a reference cycle?)")
        state.depth += 1
        try:
            return self._plan().to_struct(value, state)
        finally:
            state.depth -= 1

    def decode(self, data: Any) -> Any:
        depth = enter_nested()
        try:
            return self._plan().from_plain(data)
        finally:
            leave_nested(depth)

    def _plan(self) -> Plan:
        try:
            return plan_for(self.hint, self.adapters)
        except Exception as exc:
            problem = f"cannot resolve the annotations of {self.hint.__qualname__}: {exc!r}"
            raise Problem(problem) from None


class UnionSpec(Spec):
    """A union msgspec cannot decode alone: the arms are tried in turn."""

    def __init__(self, hint: Any, arms: dict[Any, tuple[Any, Any]], optional: bool) -> None:
        self.hint = hint
        self.arms = arms
        self.optional = optional

    def encode(self, value: Any, state: Encoding) -> Any:
        if value is None and self.optional:
            return None
        exact = [arm for arm in self.arms if type(value) is arm]
        for arm in exact or list(self.arms):
            try:
                return convert_in(value, self.arms[arm][0], arm, state)
            except Problem:
                continue
        raise Problem(
            f"holds a {type(value).__qualname__!r} but is annotated {hint_name(self.hint)}"
        )

    def decode(self, data: Any) -> Any:
        if data is None and self.optional:
            return None
        for arm in decode_order(tuple(self.arms)):
            try:
                return convert_out(data, self.arms[arm][1], arm)
            except Problem:
                continue
        raise Problem(f"{type(data).__qualname__} does not fit {hint_name(self.hint)}")


# --- compiling annotations ----------------------------------------------------------------------


def compile_hint(hint: Any, adapters: Adapters) -> tuple[Any, Any]:
    """The msgspec types (to encode, to decode) for the annotation ``hint``."""
    if hint is Any or hint is object or isinstance(hint, typing.TypeVar):
        return _same(AnySpec(hint))
    if hint is None or hint is types.NoneType:
        return None, None
    if isinstance(hint, typing.NewType):
        return compile_hint(hint.__supertype__, adapters)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return compile_hint(args[0], adapters)
    if is_union(origin):
        return _union(hint, args, adapters)
    if origin is Literal:
        return _same(LiteralSpec(hint, args))
    cls = origin if origin is not None else hint
    if not isinstance(cls, type) or getattr(cls, "_is_protocol", False):
        return _same(AnySpec(hint))  # a form the codec does not check: plain data
    if cls in adapters:
        adapter = adapters[cls]
        return _same(AdaptedSpec(adapter, compile_hint(adapter.plain_type, adapters)))
    if cls in _NATIVE:
        return cls, cls
    if cls is float:
        return marker(FloatSpec()), float
    if cls in (bytes, bytearray, datetime, date):
        return _same(TaggedSpec(cls))
    if issubclass(cls, Enum):
        return marker(EnumSpec(cls)), cls if _native_enum(cls) else marker(EnumSpec(cls))
    if dataclasses.is_dataclass(cls):
        return _same(DataclassSpec(cls, adapters))
    if cls in SEQUENCES:
        encode, decode = compile_hint(args[0] if args else Any, adapters)
        return list[encode], list[decode]  # type: ignore[valid-type]
    if cls is tuple:
        return _tuple(args, adapters)
    if cls in _MAPPINGS:
        key, item = args if len(args) == 2 else (Any, Any)
        key_enum = key if isinstance(key, type) and issubclass(key, Enum) else None
        item_types = None if item is Any or item is object else compile_hint(item, adapters)
        return _same(MapSpec(hint, key_enum, item, item_types))
    return _same(UnsupportedSpec(hint))


def _same(spec: Spec) -> tuple[Any, Any]:
    kind = marker(spec)
    return kind, kind


def _native_enum(cls: type[Enum]) -> bool:
    """Whether msgspec decodes ``cls`` itself: all values str, or all int (flags aside)."""
    kinds = {type(member.value) for member in cls}
    return not issubclass(cls, Flag) and len(cls) > 0 and (kinds == {str} or kinds == {int})


def _tuple(args: tuple[Any, ...], adapters: Adapters) -> tuple[Any, Any]:
    if not args or (len(args) == 2 and args[1] is Ellipsis):
        encode, decode = compile_hint(args[0] if args else Any, adapters)
        return tuple[encode, ...], tuple[decode, ...]  # type: ignore[valid-type]
    if args == ((),):
        return tuple[()], tuple[()]
    pairs = [compile_hint(arg, adapters) for arg in args]
    return (
        tuple.__class_getitem__(tuple(pair[0] for pair in pairs)),
        tuple.__class_getitem__(tuple(pair[1] for pair in pairs)),
    )


def _union(hint: Any, args: tuple[Any, ...], adapters: Adapters) -> tuple[Any, Any]:
    arms = [arm for arm in args if arm is not None and arm is not types.NoneType]
    optional = len(arms) < len(args)
    compiled = {arm: compile_hint(arm, adapters) for arm in arms}
    if len(arms) == 1:
        encode, decode = compiled[arms[0]]
        if not optional:
            return encode, decode
        return Union[encode, None], Union[decode, None]  # noqa: UP007 - types built at run time
    spec = UnionSpec(hint, compiled, optional)
    result = []
    for side in (0, 1):
        kinds = [compiled[arm][side] for arm in arms] + ([None] if optional else [])
        result.append(_native_union(kinds) or marker(spec))
    return result[0], result[1]


def _native_union(kinds: list[Any]) -> Any:
    """``Union[kinds]`` if msgspec can check it itself, else ``None``."""
    if any(is_marker(kind) for kind in kinds):
        return None
    union: Any = Union[tuple(kinds)]  # noqa: UP007 - built at run time
    try:
        msgspec.json.Decoder(union)
        msgspec.msgpack.Decoder(union)
    except TypeError:
        return None
    return union
