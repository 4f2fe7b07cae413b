"""The message type registry: which message classes may cross the wire, and under what names.

A payload names its message type with a plain string. The receiving side looks that string up
in a :class:`MessageRegistry` and nowhere else: a name that is not registered is refused, so
nothing a peer writes in a payload is ever imported or instantiated unless this process
registered it first. The registry also holds the type adapters: how a field type of the
user's (a pydantic model, an attrs class, ``Money``) becomes plain data and comes back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, final, overload

from . import _messages
from ._adapters import Adapters, TypeAdapter
from ._messages import BusLocalMessage, BusMessage

__all__ = [
    "MessageRegistry",
    "adapters_of",
    "default_registry",
    "register_adapter",
    "register_message",
]

_M = TypeVar("_M", bound=type[BusMessage])

_MAX_NAME_LENGTH = 200


def _check_name(name: object) -> str:
    if (
        not isinstance(name, str)
        or not name
        or len(name) > _MAX_NAME_LENGTH
        or not name.isprintable()
        or any(char.isspace() for char in name)
    ):
        raise ValueError(
            f"name must be a non-empty string of at most {_MAX_NAME_LENGTH} printable "
            f"characters without whitespace, got {name!r}"
        )
    return name


def _check_class(cls: object) -> type[BusMessage]:
    if not isinstance(cls, type):
        hint = f"; to choose a name, write register(name={cls!r})" if isinstance(cls, str) else ""
        raise TypeError(f"cls must be a BusMessage subclass, got {cls!r}{hint}")
    if not issubclass(cls, BusMessage):
        raise TypeError(f"cls must be a BusMessage subclass, got {cls.__qualname__!r}")
    if issubclass(cls, BusLocalMessage):
        raise TypeError(
            f"{cls.__qualname__!r} is a BusLocalMessage: local messages never leave the "
            f"process, so they cannot be registered for the wire"
        )
    # Every subclass of the dataclass BusMessage passes dataclasses.is_dataclass(); a subclass
    # that is not decorated itself would silently lose the fields it declares.
    if "__dataclass_fields__" not in vars(cls):
        raise TypeError(
            f"{cls.__qualname__!r} is not a dataclass: decorate it with "
            f"@dataclass(kw_only=True) before registering it"
        )
    return cls


@final
class MessageRegistry:
    """Maps stable type names to the message classes allowed on the wire.

    A class is registered under its qualified name (``"BusCancelMessage"``,
    ``"Outer.Inner"``) unless an explicit ``name`` is given. Give explicit names to classes
    whose qualified names collide, or to keep a wire name stable when a class is renamed or
    moved. ``name in registry`` accepts a type name or a class; iterating yields the names in
    registration order.

    Decoding looks names up here and nowhere else: a name that is not registered is rejected,
    never imported. The registry's type adapters (:meth:`register_adapter`) say how field
    types of the user's travel.
    """

    def __init__(self) -> None:
        self._classes: dict[str, type[BusMessage]] = {}
        self._names: dict[type[BusMessage], str] = {}
        self._adapters = Adapters()

    @overload
    def register(self, cls: _M, /, name: str | None = None) -> _M: ...

    @overload
    def register(self, cls: None = None, /, name: str | None = None) -> Callable[[_M], _M]: ...

    def register(
        self, cls: _M | None = None, /, name: str | None = None
    ) -> _M | Callable[[_M], _M]:
        """Register a message class, under ``name`` or its qualified name; return the class.

        Usable as ``registry.register(cls)``, ``@registry.register`` or
        ``@registry.register(name="myapp.Transcript")``. Registering a class again under the
        same name does nothing.

        Raises:
            TypeError: ``cls`` is not a :class:`~anybus.BusMessage` subclass, is a
                :class:`~anybus.BusLocalMessage` (local messages never leave the process), or
                is not itself decorated with ``@dataclass``.
            ValueError: ``name`` is not a valid type name, the name is taken by another class,
                or the class is already registered under another name.
        """
        if cls is None:

            def decorator(cls: _M, /) -> _M:
                return self.register(cls, name)

            return decorator
        message_class = _check_class(cls)
        type_name = _check_name(message_class.__qualname__ if name is None else name)
        taken_by = self._classes.get(type_name)
        if taken_by is message_class:
            return cls
        if taken_by is not None:
            raise ValueError(
                f"type name {type_name!r} is already registered for "
                f"{taken_by.__module__}.{taken_by.__qualname__}; register "
                f"{message_class.__module__}.{message_class.__qualname__} with another name="
            )
        registered_as = self._names.get(message_class)
        if registered_as is not None:
            raise ValueError(
                f"{message_class.__qualname__!r} is already registered as {registered_as!r}, "
                f"cannot register it again as {type_name!r}"
            )
        self._classes[type_name] = message_class
        self._names[message_class] = type_name
        return cls

    def lookup(self, name: str) -> type[BusMessage]:
        """Return the class registered under ``name``; nothing is imported.

        Raises:
            LookupError: no class is registered under that name.
        """
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            shown = repr(name)
            if len(shown) > 80:
                shown = f"{shown[:72]}...{shown[-1]}"
            raise LookupError(f"no message type is registered under name {shown}") from None

    def name_of(self, cls: type[BusMessage]) -> str:
        """Return the type name ``cls`` is registered under.

        Raises:
            LookupError: ``cls`` is not registered (local messages never are); the message
                says how to register it.
        """
        try:
            return self._names[cls]
        except KeyError:
            pass
        qualname = getattr(cls, "__qualname__", repr(cls))
        if isinstance(cls, type) and issubclass(cls, BusLocalMessage):
            raise LookupError(
                f"{qualname!r} is a BusLocalMessage and never leaves the process"
            ) from None
        raise LookupError(
            f"message class {qualname!r} is not registered; decorate it with "
            f"@anybus.register_message (or register it in the registry the codec uses)"
        ) from None

    def register_adapter(
        self,
        cls: type,
        /,
        *,
        to_plain: Callable[[Any], Any],
        from_plain: Callable[[Any], Any],
        plain_type: Any = Any,
    ) -> None:
        """Let fields annotated with ``cls`` cross the wire: ``to_plain(value)`` gives a value
        of ``plain_type`` (plain data: ``dict[str, Any]``, ``str``, a dataclass...), checked
        and encoded like a field of that annotation; on decode the data is checked against
        ``plain_type`` and handed to ``from_plain``, which must return a ``cls``. Registering
        the same adapter again does nothing.

        An adapter is used only where an annotation names ``cls`` (``Money``,
        ``list[Money]``, ``Money | None``): a ``Money`` inside a ``dict[str, Any]`` is
        refused at send time, since the receiver could not know to rebuild it. Register the
        adapter on both sides. An exception from ``from_plain`` (a pydantic
        ``ValidationError``, say) rejects the message as ``invalid-fields``.

        Raises:
            TypeError: ``cls`` is not a class, or ``to_plain``/``from_plain`` not callable.
            ValueError: the wire carries ``cls`` without an adapter (``int``, ``datetime``,
                ``dict``...), ``plain_type`` is ``cls``, or ``cls`` has another adapter.
        """
        self._adapters = self._adapters.adding(
            cls, to_plain=to_plain, from_plain=from_plain, plain_type=plain_type
        )

    @property
    def adapters(self) -> Mapping[type, TypeAdapter]:
        """The type adapters: a read-only mapping of each adapted type to its
        :class:`~anybus.TypeAdapter`."""
        return self._adapters

    def copy(self) -> MessageRegistry:
        """Return a new registry with the same entries and adapters, to extend without
        touching this one."""
        clone = MessageRegistry()
        clone._classes = dict(self._classes)
        clone._names = dict(self._names)
        clone._adapters = self._adapters
        return clone

    def items(self) -> Iterator[tuple[str, type[BusMessage]]]:
        """Iterate over ``(type name, class)`` pairs in registration order."""
        return iter(list(self._classes.items()))

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return item in self._classes
        return item in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._classes))

    def __len__(self) -> int:
        return len(self._classes)

    def __repr__(self) -> str:
        adapters = f", {len(self._adapters)} adapters" if self._adapters else ""
        return f"<MessageRegistry [{len(self._classes)} types{adapters}]>"


def adapters_of(registry: MessageRegistry) -> Adapters:
    """The adapters of ``registry`` as the codec uses them (with its cache of compiled
    classes)."""
    return registry._adapters


def _anybus_messages() -> Iterator[type[BusMessage]]:
    for name in _messages.__all__:
        obj = getattr(_messages, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, BusMessage)
            and not issubclass(obj, BusLocalMessage)
            and dataclasses.is_dataclass(obj)
        ):
            yield obj


#: The registry :class:`~anybus.WireCodec` uses unless given another one: every anybus message
#: class except the local ones, plus whatever :func:`register_message` adds.
default_registry = MessageRegistry()
for _cls in _anybus_messages():
    default_registry.register(_cls)
del _cls


@overload
def register_message(cls: _M, /, name: str | None = None) -> _M: ...


@overload
def register_message(cls: None = None, /, name: str | None = None) -> Callable[[_M], _M]: ...


def register_message(cls: _M | None = None, /, name: str | None = None) -> _M | Callable[[_M], _M]:
    """Register a message class in the default registry so it can cross the wire.

    Usable as ``@register_message``, ``@register_message(name="myapp.Transcript")`` or
    ``register_message(Transcript)``; see :meth:`MessageRegistry.register`, whose errors it
    raises. Register on both sides: the receiver only decodes types it registered itself.
    """
    if cls is None:
        return default_registry.register(name=name)
    return default_registry.register(cls, name)


def register_adapter(
    cls: type,
    /,
    *,
    to_plain: Callable[[Any], Any],
    from_plain: Callable[[Any], Any],
    plain_type: Any = Any,
) -> None:
    """Register a type adapter in the default registry, so fields annotated with ``cls`` can
    cross the wire; see :meth:`MessageRegistry.register_adapter`, whose errors it raises::

        anybus.register_adapter(
            Money,
            to_plain=lambda money: {"amount": str(money.amount), "currency": money.currency},
            from_plain=lambda plain: Money(Decimal(plain["amount"]), plain["currency"]),
            plain_type=dict[str, str],
        )
    """
    default_registry.register_adapter(
        cls, to_plain=to_plain, from_plain=from_plain, plain_type=plain_type
    )
