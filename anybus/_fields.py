"""The field codec: a message's fields to plain data and back, guided by the class annotations.

The work is msgspec's: each class is compiled once into msgspec types (:mod:`anybus._schema`),
and msgspec checks every value against its annotation, in C, on both sides. What is anybus's
own is the plain-data format of the wire (:mod:`anybus._plain`: ``$bytes``, ``$datetime`` and
``$date`` tags, ``$dict`` escapes) and the wording of its errors.

Types come from the annotations of classes this process loaded, and from the adapters of the
registry (:func:`~anybus.register_adapter`), never from the data: the only classes built while
decoding are the message class and the enums, dataclasses and adapted types its annotations
name.

**msgspec is a core dependency**, not an extra: every network bus needs this codec, the
guarantees of the wire (hostile input is refused, field by field, with a reason) rest on it,
and it is one small compiled wheel without dependencies of its own. An extra would have meant
either network buses that fail at import without it, or a second, slower codec kept beside it.

:func:`encode_fields` and :func:`decode_fields` are the plain-data contract (any serializer,
other wire formats); :class:`~anybus.WireCodec` encodes and decodes its own serializers' bytes
in one msgspec call through :func:`encode_struct` and :func:`decode_bytes`.
"""

from __future__ import annotations

import typing
from typing import Any, TypeVar

import msgspec

from ._adapters import Adapters
from ._exceptions import MessageRejected, SerializationError
from ._hints import short
from ._markers import Encoding
from ._message_types import MessageRegistry, adapters_of, default_registry
from ._messages import BusMessage
from ._plain import MAX_DEPTH, Problem, scalar_hook
from ._schema import Plan, plan_for

__all__ = ["MAX_DEPTH", "decode_bytes", "decode_fields", "encode_fields", "encode_struct"]

_M = TypeVar("_M", bound=BusMessage)


def _adapters(registry: MessageRegistry | None) -> Adapters:
    return adapters_of(default_registry if registry is None else registry)


def _encode_plan(cls: type, adapters: Adapters) -> Plan:
    try:
        return plan_for(cls, adapters)
    except Exception as exc:
        raise SerializationError(
            f"cannot encode {cls.__qualname__}: cannot resolve the annotations of "
            f"{cls.__qualname__}: {exc!r}",
            message_type=cls.__qualname__,
        ) from exc


def encode_struct(
    message: BusMessage, adapters: Adapters, *, binary: bool
) -> tuple[msgspec.Struct, bool]:
    """The fields of ``message`` as a msgspec Struct ready to encode, and whether its floats
    are all finite (JSON has no infinity: the caller then writes them as Python's ``json``).

    Raises:
        SerializationError: a field value cannot be represented; the error names the class,
            the field (with the path into it) and the offending type.
    """
    cls = type(message)
    state = Encoding(binary)
    try:
        struct = _encode_plan(cls, adapters).to_struct(message, state)
    except Problem as exc:
        path = exc.path.removeprefix(".")
        where = f"{cls.__qualname__}.{path}" if path else cls.__qualname__
        raise SerializationError(
            f"cannot encode {where}: {exc.problem}", message_type=cls.__qualname__, field=path
        ) from None
    except RecursionError:
        raise SerializationError(
            f"cannot encode {cls.__qualname__}: nested too deeply (a reference cycle?)",
            message_type=cls.__qualname__,
        ) from None
    return struct, state.finite[0]


def encode_fields(
    message: BusMessage, *, binary: bool = False, registry: MessageRegistry | None = None
) -> dict[str, Any]:
    """Turn the init fields of ``message`` into plain data (``id`` and ``name`` are not init
    fields: the envelope carries them). With ``binary`` true, bytes stay raw, untagged.
    ``registry`` (``default_registry`` when ``None``) gives the type adapters.

    Raises:
        SerializationError: a field value cannot be represented; the error names the class,
            the field (with the path into it) and the offending type.
    """
    struct, _ = encode_struct(message, _adapters(registry), binary=binary)
    plain = msgspec.to_builtins(
        struct, builtin_types=(bytes,) if binary else None, enc_hook=scalar_hook
    )
    return typing.cast(dict[str, Any], _lists(plain))


def _lists(value: Any) -> Any:
    """Plain data with every tuple (msgspec keeps them) turned into a list."""
    kind = type(value)
    if kind is dict:
        return {key: _lists(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [_lists(item) for item in value]
    return value


def _rejected(cls: type, exc: BaseException) -> MessageRejected:
    if isinstance(exc, Problem):
        where = f"{cls.__qualname__}{exc.path}" if exc.path else cls.__qualname__
        return MessageRejected("invalid-fields", f"{short(where, 120)[1:-1]}: {exc.problem}")
    if isinstance(exc, RecursionError):
        return MessageRejected("invalid-fields", "fields nested too deeply")
    return MessageRejected("invalid-fields", f"decoding raised {short(exc, 200)}")


def _identify(message: Any, message_id: str, name: str) -> None:
    object.__setattr__(message, "id", message_id)
    object.__setattr__(message, "name", name)


def decode_fields(
    cls: type[_M],
    fields: Any,
    *,
    message_id: str,
    name: str,
    registry: MessageRegistry | None = None,
) -> _M:
    """Build a ``cls`` message from plain data, then set its ``id`` and ``name``.
    ``registry`` (``default_registry`` when ``None``) gives the type adapters.

    Only ``cls`` and the enums, dataclasses and adapted types its annotations name are ever
    instantiated.

    Raises:
        MessageRejected: with reason ``invalid-fields`` when the data does not fit ``cls``:
            unknown or missing fields, values of the wrong type, or a constructor that raised.
    """
    try:
        plan = plan_for(cls, _adapters(registry))
    except Exception as exc:
        problem = f"cannot resolve the annotations of {cls.__qualname__}: {exc!r}"
        raise MessageRejected("invalid-fields", f"{cls.__qualname__}: {problem}") from None
    try:
        message = plan.from_plain(fields)
    except (Problem, RecursionError) as exc:
        raise _rejected(cls, exc) from None
    except Exception as exc:  # pragma: no cover - a bug here must not crash a transport's reader
        raise _rejected(cls, exc) from exc
    _identify(message, message_id, name)
    return typing.cast(_M, message)


def decode_bytes(
    cls: type[_M], data: Any, adapters: Adapters, *, binary: bool, message_id: str, name: str
) -> _M:
    """Build a ``cls`` message straight from its fields' JSON (or, with ``binary``,
    MessagePack) bytes, in one msgspec pass; then set its ``id`` and ``name``.

    Raises:
        Exception: anything, on input that does not fit: the caller decodes the same bytes
            again through :func:`decode_fields`, which says why in the codec's words.
    """
    plan = plan_for(cls, adapters)
    message = plan.build((plan.msgpack if binary else plan.json).decode(data))
    _identify(message, message_id, name)
    return typing.cast(_M, message)
