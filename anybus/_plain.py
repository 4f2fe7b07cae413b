"""anybus's plain-data format: the values that need no annotation, and the tags for the others.

Plain data is what the serializers carry: dicts with str keys, lists, str, int, float, bool,
``None`` (and raw ``bytes`` for binary serializers). Other values travel as *tags*, one-key
dicts whose key starts with ``$``:

* ``{"$bytes": "<base64>"}``, ``{"$datetime": "<ISO 8601>"}``, ``{"$date": "<ISO 8601>"}``;
* ``{"$dict": {...}}`` wraps a user dict that has a key starting with ``$``, so user data can
  never be read as a tag. A plain dict holding a ``$`` key is therefore invalid input.

:func:`to_plain` and :func:`from_plain` walk the values of fields annotated ``Any`` (or
``dict[str, Any]``, and so on): the one place where the codec looks at values rather than
annotations. msgspec does everything else (see :mod:`anybus._schema`). Both copy only what
they change: a payload without tags is handed on as it is.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import types
from datetime import date, datetime, timedelta, timezone
from enum import Enum
from typing import Any, Final

from ._hints import short

__all__ = [
    "MAX_DEPTH",
    "Problem",
    "check_map",
    "from_plain",
    "from_plain_map",
    "key_segment",
    "literal_map",
    "scalar_hook",
    "tag",
    "to_plain",
    "untag",
]

#: Deeper nesting is refused on both sides (it also catches reference cycles when encoding).
MAX_DEPTH: Final = 64

_TAGS: Final = ("$bytes", "$datetime", "$date")
#: Types handed on as they are, encoding (floats are checked for infinities) and decoding.
_AS_IS: Final = frozenset({str, int, bool, types.NoneType})
_PLAIN: Final = frozenset({str, int, float, bool, types.NoneType, bytes})
SUPPORTED: Final = (
    "None, bool, int, float, str, bytes, datetime, date, list, tuple, dict with str keys, "
    "and enums, dataclasses and adapted types named by the field's annotation"
)


class Problem(ValueError):
    """A value that cannot be encoded or decoded: where (a path such as ``.point.x`` or
    ``['k'][0]``, relative to where it was raised) and what is wrong.

    A ``ValueError``, so that msgspec, calling the codec's hooks, wraps it with the path it
    knows and keeps it as the ``__cause__``.
    """

    def __init__(self, problem: str, path: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.path = path

    def under(self, segment: str) -> Problem:
        """Prepend ``segment`` to the path, unwinding; return ``self`` to re-raise."""
        self.path = segment + self.path
        return self


def key_segment(key: object) -> str:
    """A dict key as it appears in a path: ``['name']``."""
    return f"[{short(key, 40)}]"


def tag(value: Any, binary: bool) -> Any:
    """The tag for a bytes, datetime or date value (raw bytes when ``binary``), else ``None``."""
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
        return raw if binary else {"$bytes": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    return None


def to_plain(value: Any, binary: bool, depth: int, finite: list[bool]) -> Any:
    """``value`` (of a field annotated ``Any``) as plain data; ``finite[0]`` is set false when
    a float is infinite or NaN (JSON cannot carry those: the codec then writes them as
    Python's ``json`` does).

    Raises:
        Problem: a value the receiver could not rebuild, or nesting over ``MAX_DEPTH``.
    """
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind is float:
        if value - value != 0.0:  # inf - inf and nan - nan are nan
            finite[0] = False
        return value
    if depth > MAX_DEPTH:
        raise Problem(f"nested over {MAX_DEPTH} levels deep (a reference cycle?)")
    if kind is dict:
        return check_map(value, binary, depth, finite, None)
    if kind is list or kind is tuple:
        out: list[Any] | None = None
        for index, item in enumerate(value):
            kind = type(item)
            # Plain items are handed on without a call: most items of a payload are.
            if kind in _AS_IS or (kind is float and item - item == 0.0):
                new = item
            else:
                try:
                    new = to_plain(item, binary, depth + 1, finite)
                except Problem as exc:
                    raise exc.under(f"[{index}]") from None
            if out is None:
                if new is item:
                    continue
                out = list(value[:index])
            out.append(new)
        return value if out is None else out
    return _other(value, binary, depth, finite)


def _other(value: Any, binary: bool, depth: int, finite: list[bool]) -> Any:
    if isinstance(value, Enum):
        # A str, int or float enum the annotation does not name travels as its plain value.
        if isinstance(value, str | int | float):
            return _scalar(value)
        raise Problem(
            f"holds enum member {value!s} but is not annotated with {type(value).__qualname__}, "
            f"so the receiver could not rebuild it"
        )
    if isinstance(value, str | int | float):  # subclasses: whatever their __str__ says
        return to_plain(_scalar(value), binary, depth, finite)
    tagged = tag(value, binary)
    if tagged is not None:
        return tagged
    if isinstance(value, dict):
        return check_map(dict(value), binary, depth, finite, None)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        raise Problem(f"holds a {type(value).__qualname__!r}, not its annotation")
    raise Problem(
        f"unsupported type {type(value).__qualname__!r}; supported: {SUPPORTED}. Name the "
        f"type in the field's annotation and register an adapter for it: "
        f"anybus.register_adapter({type(value).__qualname__}, to_plain=..., from_plain=...)"
    )


def scalar_hook(value: Any) -> Any:
    """msgspec's ``enc_hook``: subclasses of str, int and float travel as the plain value.

    Raises:
        NotImplementedError: for anything else (msgspec reports the type).
    """
    if isinstance(value, str | int | float):
        return _scalar(value)
    raise NotImplementedError(f"cannot encode a {type(value).__qualname__!r}")


def _scalar(value: str | int | float) -> str | int | float:
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    return float.__float__(value)


def check_map(
    value: dict[Any, Any],
    binary: bool,
    depth: int,
    finite: list[bool],
    key_enum: type[Enum] | None,
) -> Any:
    """A dict of ``Any`` values as plain data: str keys (or members of ``key_enum`` with str
    values), wrapped in ``{"$dict": ...}`` when a key starts with ``$``."""
    out: dict[str, Any] | None = None
    escape = False
    for key, item in value.items():
        name = key
        if type(key) is not str:
            if key_enum is not None and type(key) is key_enum and type(key.value) is str:
                name = key.value
            elif isinstance(key, str) and not isinstance(key, Enum):
                name = str.__str__(key)
            else:
                raise Problem(f"has a {type(key).__qualname__!r} key; keys must be str")
        if name[:1] == "$":
            escape = True
        kind = type(item)
        if kind in _AS_IS or (kind is float and item - item == 0.0):
            new = item
        else:
            try:
                new = to_plain(item, binary, depth + 1, finite)
            except Problem as exc:
                raise exc.under(key_segment(name)) from None
        if out is None:
            if new is item and name is key:
                continue
            out = _head(value, key)
        out[name] = new
    result = value if out is None else out
    return {"$dict": result} if escape else result


def _head(mapping: dict[Any, Any], stop: Any) -> dict[Any, Any]:
    """The items of ``mapping`` before the key ``stop``, in a new dict."""
    head = {}
    for key, item in mapping.items():
        if key is stop:
            break
        head[key] = item
    return head


#: A UTC offset with a fraction of a second, which ``datetime.fromisoformat`` (3.11) drops.
_FINE_OFFSET: Final = re.compile(r"([+-])(\d{2}):(\d{2}):(\d{2})\.(\d{6})$")


def _datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    fine = _FINE_OFFSET.search(text)
    if fine is not None and value.tzinfo is not None:
        sign, hours, minutes, seconds, micros = fine.groups()
        offset = timedelta(
            hours=int(hours), minutes=int(minutes), seconds=int(seconds), microseconds=int(micros)
        )
        value = value.replace(tzinfo=timezone(-offset if sign == "-" else offset))
    return value


def untag(data: dict[Any, Any]) -> Any:
    """The value of a ``$bytes``/``$datetime``/``$date`` tag, or ``None`` if ``data`` is not one.

    Raises:
        Problem: the tag holds something else than a valid str.
    """
    if len(data) != 1:
        return None
    ((key, text),) = data.items()
    if key not in _TAGS:
        return None
    if type(text) is not str:
        raise Problem(f"{key} tag holds a {type(text).__qualname__}, not a str")
    try:
        if key == "$bytes":
            return base64.b64decode(text, validate=True)
        if key == "$datetime":
            return _datetime(text)
        return date.fromisoformat(text)
    except (ValueError, binascii.Error):
        raise Problem(f"{key} tag holds an invalid value {short(text)}") from None


def literal_map(data: Any) -> dict[str, Any]:
    """The mapping a dict (or a ``$dict`` escape) stands for, keys checked.

    Raises:
        Problem: not a dict, a key that is not a str, or a ``$`` key outside an escape.
    """
    if type(data) is not dict:
        raise Problem(f"expected a dict, got {type(data).__qualname__}")
    escaped = len(data) == 1 and "$dict" in data
    if escaped:
        data = data["$dict"]
        if type(data) is not dict:
            raise Problem(f"$dict tag holds a {type(data).__qualname__}")
    for key in data:
        if type(key) is not str:
            raise Problem(f"has a {type(key).__qualname__} key; keys must be str")
        if key[:1] == "$" and not escaped:
            raise Problem(f"has a reserved key {short(key, 40)}")
    return data


def from_plain(data: Any, depth: int) -> Any:
    """Plain data (of a field annotated ``Any``) with its tags resolved: lists stay lists.

    Raises:
        Problem: a malformed tag, a reserved key, a value no serializer builds (a msgpack
            timestamp or extension), or nesting over ``MAX_DEPTH``.
    """
    kind = type(data)
    if kind in _PLAIN:
        return data
    if depth > MAX_DEPTH:
        raise Problem(f"nested over {MAX_DEPTH} levels deep")
    if kind is list:
        out: list[Any] | None = None
        for index, item in enumerate(data):
            if type(item) in _PLAIN:
                new = item
            else:
                try:
                    new = from_plain(item, depth + 1)
                except Problem as exc:
                    raise exc.under(f"[{index}]") from None
            if out is None:
                if new is item:
                    continue
                out = data[:index]
            out.append(new)
        return data if out is None else out
    if kind is dict:
        return _from_plain_dict(data, depth)
    raise Problem(f"unexpected {kind.__qualname__} in the data")


def _from_plain_dict(data: dict[Any, Any], depth: int) -> Any:
    """A dict met in ``Any`` data: keys and values checked in one pass."""
    out: dict[str, Any] | None = None
    for key, item in data.items():
        if type(key) is not str or key[:1] == "$":  # a tag, an escape, or refused
            tagged = untag(data)
            if tagged is not None:
                return tagged
            return from_plain_map(literal_map(data), depth)
        new = item if type(item) in _PLAIN else _resolved(key, item, depth)
        if out is None:
            if new is item:
                continue
            out = _head(data, key)
        out[key] = new
    return data if out is None else out


def _resolved(key: str, item: Any, depth: int) -> Any:
    """``item`` (at ``key``) resolved by :func:`from_plain`, its errors placed under the key."""
    try:
        return from_plain(item, depth + 1)
    except Problem as exc:
        raise exc.under(key_segment(key)) from None


def from_plain_map(data: dict[str, Any], depth: int) -> dict[str, Any]:
    """A checked mapping (see :func:`literal_map`) with its ``Any`` values resolved."""
    out: dict[str, Any] | None = None
    for key, item in data.items():
        new = item if type(item) in _PLAIN else _resolved(key, item, depth)
        if out is None:
            if new is item:
                continue
            out = _head(data, key)
        out[key] = new
    return data if out is None else out
