"""Type adapters: how a type of the user's becomes plain data on the wire, and comes back.

A :class:`~anybus.MessageRegistry` holds the adapters next to the message types, because both
answer the same question, "what may this process build from bytes?". An adapter is used only
where a field's annotation names its type, exactly as for enums and dataclasses: the payload
never chooses a type.
"""

from __future__ import annotations

import datetime
import decimal
import types
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, final

__all__ = ["Adapters", "TypeAdapter"]

#: Types the wire carries without help: an adapter for one of them would change the format.
_NATIVE: Final = frozenset(
    {
        types.NoneType,
        bool,
        int,
        float,
        str,
        bytes,
        bytearray,
        datetime.datetime,
        datetime.date,
        uuid.UUID,
        decimal.Decimal,
        list,
        tuple,
        dict,
        object,
    }
)


@final
@dataclass(frozen=True, slots=True)
class TypeAdapter:
    """How values of ``cls`` cross the wire (see :func:`~anybus.register_adapter`).

    Attributes:
        cls: the adapted type; fields annotated with it use the adapter.
        to_plain: turns a ``cls`` value into a value of ``plain_type``.
        from_plain: turns a decoded, validated ``plain_type`` value back into a ``cls``.
        plain_type: the annotation of the plain form, validated on decode like a field's.
    """

    cls: type
    to_plain: Callable[[Any], Any]
    from_plain: Callable[[Any], Any]
    plain_type: Any = Any


@final
class Adapters(Mapping[type, TypeAdapter]):
    """An immutable set of adapters, by type; registering builds a new one.

    It also carries the codec's cache of compiled classes (``plans``), which depend on the
    adapters: a new set starts with an empty cache.
    """

    __slots__ = ("_by_type", "plans")

    def __init__(self, adapters: Mapping[type, TypeAdapter] | None = None) -> None:
        self._by_type: dict[type, TypeAdapter] = dict(adapters or {})
        #: Filled by :mod:`anybus._schema`: the compiled codec of each class, by class.
        self.plans: weakref.WeakKeyDictionary[type, Any] = weakref.WeakKeyDictionary()

    def adding(
        self,
        cls: type,
        *,
        to_plain: Callable[[Any], Any],
        from_plain: Callable[[Any], Any],
        plain_type: Any = Any,
    ) -> Adapters:
        """A new set with an adapter for ``cls``; this one if the same adapter is there.

        Raises:
            TypeError: ``cls`` is not a class, or ``to_plain``/``from_plain`` not callable.
            ValueError: the wire carries ``cls`` natively, ``plain_type`` is ``cls`` itself,
                or ``cls`` already has another adapter.
        """
        if not isinstance(cls, type):
            raise TypeError(f"cls must be a class, got {cls!r}")
        for what, function in (("to_plain", to_plain), ("from_plain", from_plain)):
            if not callable(function):
                raise TypeError(f"{what} must be callable, got {function!r}")
        if cls in _NATIVE:
            raise ValueError(
                f"{cls.__qualname__!r} travels without an adapter; adapters are for the "
                f"types the wire does not carry"
            )
        if plain_type is cls:
            raise ValueError(
                f"plain_type must be the plain form of {cls.__qualname__!r}, not the class itself"
            )
        adapter = TypeAdapter(cls, to_plain, from_plain, plain_type)
        existing = self._by_type.get(cls)
        if existing == adapter:
            return self
        if existing is not None:
            raise ValueError(
                f"{cls.__qualname__!r} already has an adapter; a type has one adapter per "
                f"registry (use a registry of your own for another)"
            )
        return Adapters({**self._by_type, cls: adapter})

    def __getitem__(self, cls: type) -> TypeAdapter:
        return self._by_type[cls]

    def __iter__(self) -> Iterator[type]:
        return iter(list(self._by_type))

    def __len__(self) -> int:
        return len(self._by_type)

    def __repr__(self) -> str:
        names = ", ".join(cls.__qualname__ for cls in self._by_type)
        return f"<Adapters [{names}]>"
