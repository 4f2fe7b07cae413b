"""Markers: the msgspec types through which msgspec hands a field position to the codec.

:mod:`anybus._schema` compiles annotations into msgspec types. Where the wire format is
anybus's own (tags, ``$dict`` escapes, values annotated ``Any``) or where the codec must be
stricter than msgspec (an enum field must hold a member; a dataclass field an instance of
exactly its class), the compiled type is a *marker*: a class whose every value is an instance,
so that msgspec hands the raw value to the hook and keeps what the hook returns. Each marker
carries a spec (see :mod:`anybus._specs`) that encodes and decodes its position.

This module also turns msgspec's errors into the codec's own wording
(``RichMessage.points[0].x: expected float, got str``).
"""

from __future__ import annotations

import collections.abc as abc
import re
import threading
import types
import typing
from enum import Enum
from typing import Any, Final

import msgspec

from ._hints import hint_name, is_union, short
from ._plain import MAX_DEPTH, Problem

__all__ = [
    "SEQUENCES",
    "Encoding",
    "Fields",
    "convert_in",
    "convert_out",
    "decode_hook",
    "enter_nested",
    "explain",
    "is_marker",
    "leave_nested",
    "marker",
]

#: Annotations whose values are lists on the wire (tuples for ``tuple``).
SEQUENCES: Final = (list, abc.Sequence, abc.MutableSequence, abc.Iterable, abc.Collection)
_AT: Final = re.compile(r" - at `(\$[^`]*)`$")
_SEGMENT: Final = re.compile(r"\.(\w+)|\[(\d+)\]")


class Fields:
    """What error paths are followed through: a compiled dataclass's field annotations."""

    hints: dict[str, Any]


class _EveryValue(type):
    """The metaclass of markers: ``isinstance(anything, marker)`` is true, so msgspec accepts
    whatever the hook returns for a marker position (it checks hook results that way)."""

    def __instancecheck__(cls, instance: object) -> bool:
        return True


def marker(spec: Any) -> Any:
    """A new marker type for ``spec``."""
    return _EveryValue(f"<{spec.describe()}>", (), {"__slots__": (), "spec": spec})


def is_marker(kind: object) -> bool:
    """Whether a compiled type is a marker."""
    return isinstance(kind, _EveryValue)


class Encoding:
    """The state of one encode: binary or text serializer, and what the hooks noticed."""

    __slots__ = ("binary", "depth", "finite")

    def __init__(self, binary: bool) -> None:
        self.binary = binary
        #: Cleared when a float is infinite or NaN: JSON then needs Python's ``json``.
        self.finite = [True]
        self.depth = 0

    def hook(self, kind: Any, value: Any) -> Any:
        """msgspec's ``dec_hook`` while encoding (``convert(..., from_attributes=True)``)."""
        spec = getattr(kind, "spec", None)
        if spec is None:
            raise NotImplementedError(kind)
        return spec.encode(value, self)


_nesting = threading.local()


def decode_hook(kind: Any, data: Any) -> Any:
    """msgspec's ``dec_hook`` while decoding."""
    spec = getattr(kind, "spec", None)
    if spec is None:
        raise NotImplementedError(kind)
    return spec.decode(data)


def enter_nested() -> int:
    """Count one more nested dataclass being decoded (in this thread); return the old count.

    Raises:
        Problem: over ``MAX_DEPTH`` dataclasses deep.
    """
    depth: int = getattr(_nesting, "depth", 0)
    if depth >= MAX_DEPTH:
        raise Problem(f"nested over {MAX_DEPTH} levels deep")
    _nesting.depth = depth + 1
    return depth


def leave_nested(depth: int) -> None:
    """Undo :func:`enter_nested`."""
    _nesting.depth = depth


def convert_in(value: Any, kind: Any, hint: Any, state: Encoding) -> Any:
    """``value`` converted to the compiled encode type ``kind`` of annotation ``hint``.

    Raises:
        Problem: the value does not fit.
    """
    if is_marker(kind):
        return kind.spec.encode(value, state)
    try:
        return msgspec.convert(value, kind, from_attributes=True, dec_hook=state.hook)
    except msgspec.ValidationError as exc:
        raise explain(exc, value, hint, encoding=True) from None


def convert_out(data: Any, kind: Any, hint: Any) -> Any:
    """Plain ``data`` converted to the compiled decode type ``kind`` of annotation ``hint``.

    Raises:
        Problem: the data does not fit.
    """
    if is_marker(kind):
        return kind.spec.decode(data)
    try:
        return msgspec.convert(data, kind, dec_hook=decode_hook)
    except msgspec.ValidationError as exc:
        raise explain(exc, data, hint, encoding=False) from None


def explain(
    exc: msgspec.ValidationError, data: Any, where: Fields | Any, *, encoding: bool
) -> Problem:
    """A :class:`Problem` for a msgspec error raised converting ``data`` (a plain dict, or the
    object being encoded) to ``where`` (a compiled dataclass or an annotation)."""
    message = str(exc)
    cause = exc.__cause__
    rest = message
    if isinstance(cause, Problem) and message.startswith(str(cause)):
        rest = message[len(str(cause)) :]
    found = _AT.search(rest)
    path = found.group(1)[1:] if found else ""
    if isinstance(cause, Problem):
        return Problem(cause.problem, path + cause.path)
    text = message[: found.start()] if found and rest is message else message
    try:
        value, hint = _follow(data, where, path)
    except (LookupError, AttributeError, TypeError):
        return Problem(text[:1].lower() + text[1:], path)
    return Problem(
        _encode_problem(value, hint) if encoding else _decode_problem(value, hint), path
    )


def _follow(data: Any, where: Fields | Any, path: str) -> tuple[Any, Any]:
    """The value and the annotation at ``path`` (``.name`` and ``[index]`` segments)."""
    value, hint = data, where
    for name, index in _SEGMENT.findall(path):
        if name:
            if not isinstance(hint, Fields):
                raise LookupError(name)
            value = value[name] if type(value) is dict else getattr(value, name)
            hint = hint.hints[name]
        else:
            value, hint = value[int(index)], _item_hint(hint, int(index))
    if isinstance(hint, Fields):
        raise LookupError(path)
    return value, hint


def _strip_none(hint: Any) -> Any:
    if is_union(typing.get_origin(hint)):
        arms = [arm for arm in typing.get_args(hint) if arm is not types.NoneType]
        if len(arms) == 1:
            return arms[0]
    return hint


def _item_hint(hint: Any, index: int) -> Any:
    hint = _strip_none(hint)
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and args and not (len(args) == 2 and args[1] is ...):
        return args[index]
    return args[0] if args else Any


def _decode_problem(data: Any, hint: Any) -> str:
    hint = _strip_none(hint)
    got = type(data).__qualname__
    if hint is None or hint is types.NoneType:
        return f"expected None, got {got}"
    origin = typing.get_origin(hint)
    if is_union(origin):
        return f"{got} does not fit {hint_name(hint)}"
    cls = origin if origin is not None else hint
    if isinstance(cls, type) and issubclass(cls, Enum):
        if isinstance(data, list | dict):
            return f"expected a {cls.__qualname__}, got {type(data).__name__}"
        return f"{short(data)} is not a {cls.__qualname__}"
    if cls in SEQUENCES or cls is tuple:
        if type(data) is not list:
            return f"expected a list, got {got}"
        return f"{len(data)} items do not fit {hint_name(hint)}"
    return f"expected {hint_name(cls)}, got {got}"


def _encode_problem(value: Any, hint: Any) -> str:
    bare = _strip_none(hint)
    args = typing.get_args(bare)
    if (
        typing.get_origin(bare) is tuple
        and isinstance(value, list | tuple)
        and args
        and not (len(args) == 2 and args[1] is ...)
        and len(args) != len(value)
    ):
        return f"has {len(value)} items, annotated {hint_name(bare)}"
    return f"holds a {type(value).__qualname__!r} but is annotated {hint_name(hint)}"
