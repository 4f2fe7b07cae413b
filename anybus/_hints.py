"""The annotations of dataclass fields, as the field codec reads them: resolved once per class,
and checked shallowly against values.

Annotations are resolved from the code of the classes in this process, never from the data
being decoded: they decide which enum or dataclass a value is rebuilt as.
"""

from __future__ import annotations

import collections.abc as abc
import dataclasses
import itertools
import sys
import types
import typing
import weakref
from collections.abc import Iterable, Iterator
from enum import Enum
from typing import Any, Literal, Union

__all__ = [
    "MAPPINGS",
    "SEQUENCES",
    "Field",
    "decode_order",
    "fits",
    "hint_name",
    "is_union",
    "items_hints",
    "mapping_hints",
    "plan",
    "short",
]

#: Annotation origins decoded as a list (a tuple for ``tuple``), and as a dict.
SEQUENCES = (list, tuple, abc.Sequence, abc.MutableSequence, abc.Iterable, abc.Collection)
MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """One init field of a dataclass: its name, resolved annotation, and whether it is needed."""

    name: str
    hint: Any
    required: bool


class _Annotations:
    """Stands in for the annotations of one class while they are resolved."""

    def __init__(self, annotations: dict[str, Any]) -> None:
        self.__annotations__ = annotations


def _type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints(cls)`` for the dataclass fields, resolving each class's own
    annotations in the module that defined it, even where ``__module__`` was rewritten for
    display (as ``anybus/__init__.py`` does): a generated ``__init__`` keeps that module."""
    names = {f.name for f in dataclasses.fields(cls)}
    hints: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        own = {k: v for k, v in vars(base).get("__annotations__", {}).items() if k in names}
        if own:
            namespace = getattr(vars(base).get("__init__"), "__globals__", None)
            if namespace is None:
                namespace = vars(sys.modules[base.__module__])
            localns = dict(vars(base))
            hints.update(typing.get_type_hints(_Annotations(own), namespace, localns))
    return hints


_plans: weakref.WeakKeyDictionary[type, tuple[Field, ...]] = weakref.WeakKeyDictionary()


def plan(cls: type) -> tuple[Field, ...]:
    """The init fields of dataclass ``cls`` with their resolved annotations, cached per class.

    Fields declared with ``init=False`` are left out: ``__post_init__`` computes them.

    Raises:
        Exception: whatever resolving the annotations raised (``NameError`` for a name that
            is not defined at module level, typically); nothing is cached then.
    """
    fields = _plans.get(cls)
    if fields is None:
        hints = _type_hints(cls)
        fields = tuple(
            Field(
                f.name,
                hints.get(f.name, Any),
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            )
            for f in dataclasses.fields(cls)
            if f.init
        )
        _plans[cls] = fields
    return fields


def short(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: safe to log whatever a peer sent."""
    try:
        text = repr(value)
    except Exception:  # an int too long to convert, for instance
        text = f"<{type(value).__qualname__}>"
    return text if len(text) <= limit else f"{text[: limit - 4]}...{text[-1]}"


def hint_name(hint: Any) -> str:
    """An annotation as people write it: ``Point``, ``list[int] | None``."""
    return hint.__qualname__ if isinstance(hint, type) else repr(hint).replace("typing.", "")


def is_union(origin: Any) -> bool:
    """Whether an annotation's origin is a union (``X | Y`` or ``Optional[X]``)."""
    return origin is Union or origin is types.UnionType


def fits(value: object, hint: Any) -> bool:
    """Shallow check of a value against an annotation; forms it cannot check always fit."""
    if hint is Any or hint is object:
        return True
    if hint is None or hint is types.NoneType:
        return value is None
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value in typing.get_args(hint)
    if is_union(origin):
        return any(fits(value, arm) for arm in typing.get_args(hint))
    cls = origin if origin is not None else hint
    if not isinstance(cls, type):
        return True
    if cls is float:
        return isinstance(value, int | float)
    if cls is bytes:
        return isinstance(value, bytes | bytearray)
    if cls in SEQUENCES:
        return isinstance(value, list | tuple)
    if cls in MAPPINGS:
        return isinstance(value, dict)
    try:
        return isinstance(value, cls)
    except TypeError:  # a protocol that is not runtime-checkable, for example
        return True


def items_hints(hint: Any, length: int) -> Iterable[Any] | None:
    """Annotations of a sequence's items, or ``None`` if a fixed-length tuple does not match."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        return args if len(args) == length else None
    if origin in SEQUENCES and args:
        return itertools.repeat(args[0])
    return itertools.repeat(Any)


def mapping_hints(hint: Any) -> tuple[Any, Any]:
    """Annotations of a mapping's keys and values (``Any`` when not given)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in MAPPINGS and len(args) == 2:
        return args[0], args[1]
    return Any, Any


def decode_order(arms: tuple[Any, ...]) -> Iterator[Any]:
    """Union arms with enums and dataclasses first, so a str does not shadow a str enum."""
    specific = [
        arm
        for arm in arms
        if isinstance(arm, type) and (issubclass(arm, Enum) or dataclasses.is_dataclass(arm))
    ]
    yield from specific
    yield from (arm for arm in arms if arm not in specific)
