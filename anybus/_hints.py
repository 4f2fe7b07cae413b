"""The annotations of dataclass fields, as the field codec reads them: resolved once per class.

Annotations are resolved from the code of the classes in this process, never from the data
being decoded: they decide which enum or dataclass a value is rebuilt as.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
import weakref
from collections.abc import Iterator
from enum import Enum
from typing import Any, Union

__all__ = ["Field", "decode_order", "hint_name", "is_union", "plan", "short"]


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


def decode_order(arms: tuple[Any, ...]) -> Iterator[Any]:
    """Union arms with enums and dataclasses first, so a str does not shadow a str enum."""
    specific = [
        arm
        for arm in arms
        if isinstance(arm, type) and (issubclass(arm, Enum) or dataclasses.is_dataclass(arm))
    ]
    yield from specific
    yield from (arm for arm in arms if arm not in specific)
