"""The subscription side of a bus: subscribe, unsubscribe, listen."""

from __future__ import annotations

import inspect
import itertools
import logging
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from enum import Enum
from typing import Literal, TypeVar, overload

from anyio.lowlevel import checkpoint

from ._checks import check_optional_name
from ._dispatch import ErrorHook, Hub, Subscription
from ._fan_out import make_fan_out
from ._listen import FunctionSubscriber, Handler, MessageStream, _Listener
from ._messages import BusMessage
from ._statistics import OverflowPolicy
from ._subscriber import BusSubscriber

logger = logging.getLogger("anybus.bus")

_S = TypeVar("_S", bound=BusSubscriber)
_listener_names = itertools.count(1)


class _Default(Enum):
    """Marks "use the bus's default" for ``max_buffer`` (where ``None`` means unbounded)."""

    DEFAULT = "DEFAULT"


DEFAULT = _Default.DEFAULT
BufferSetting = int | None | Literal[_Default.DEFAULT]


def _check_buffer(max_buffer: int | None) -> None:
    if max_buffer is not None and (
        not isinstance(max_buffer, int) or isinstance(max_buffer, bool) or max_buffer < 1
    ):
        raise ValueError(
            f"max_buffer must be a whole number of at least 1 (or None for unbounded), "
            f"got {max_buffer!r}"
        )


def overflow_policy(overflow: OverflowPolicy | str) -> OverflowPolicy:
    """``overflow`` as an :class:`OverflowPolicy`, or a :class:`ValueError` that lists them."""
    try:
        return OverflowPolicy(overflow)
    except ValueError:
        choices = ", ".join(repr(policy.value) for policy in OverflowPolicy)
        raise ValueError(f"overflow must be one of {choices}, got {overflow!r}") from None


def _check_targets(targets: Iterable[str] | str | None) -> frozenset[str] | None:
    if targets is None:
        return None
    if isinstance(targets, str):
        raise TypeError(
            f"targets takes a collection of names, got the string {targets!r}: "
            f"write targets=[{targets!r}]"
        )
    if not isinstance(targets, Iterable):
        raise TypeError(f"targets takes a collection of names (str), got {targets!r}")
    names = frozenset(targets)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"targets must hold names (str), got {name!r}")
    return names


def _check_handler(subscriber: object) -> None:
    if isinstance(subscriber, BusSubscriber):
        _check_class(type(subscriber))
        return
    if not callable(subscriber):
        raise TypeError(
            f"subscribe() takes a BusSubscriber or an 'async def handler(message)', "
            f"got {subscriber!r}"
        )
    if not is_async_callable(subscriber):
        raise TypeError(
            f"the handler {subscriber!r} is not a coroutine function: handlers must be "
            f"'async def' (the bus awaits them)"
        )


#: The subscriber classes found sound, with the methods they were checked with: a class is
#: checked again only if one of them was replaced since (subscribing is on the churn path,
#: and the checks cost about 3 us).
_checked: weakref.WeakKeyDictionary[type, tuple[object, ...]] = weakref.WeakKeyDictionary()


def _check_class(kind: type[BusSubscriber]) -> None:
    """Refuse a subscriber class whose ``on_bus_message`` or ``run_in_bus`` is not async,
    or whose ``accepts_bus_message`` or ``is_busy`` is."""
    methods = (kind.on_bus_message, kind.accepts_bus_message, kind.is_busy, kind.run_in_bus)
    if _checked.get(kind) == methods:
        return
    name = kind.__name__
    if not is_async_callable(kind.on_bus_message):
        raise TypeError(
            f"{name}.on_bus_message is not a coroutine function: handlers must be 'async def' "
            f"(the bus awaits them)"
        )
    if is_async_callable(kind.accepts_bus_message):
        raise TypeError(
            f"{name}.accepts_bus_message is a coroutine function: the filter runs as "
            f"messages are fanned out, so it must be a plain 'def' (return a bool)"
        )
    if is_async_callable(kind.is_busy):
        raise TypeError(
            f"{name}.is_busy is a coroutine function: the bus asks it as it looks for "
            f"idleness, so it must be a plain 'def' (return a bool)"
        )
    if not is_async_callable(kind.run_in_bus):
        raise TypeError(
            f"{name}.run_in_bus is not a coroutine function: the bus runs it as a task, so "
            f"it must be 'async def run_in_bus(self, bus)'"
        )
    _checked[kind] = methods


def is_async_callable(handler: object) -> bool:
    """Whether calling ``handler`` gives something to await (an ``async def``, a callable with
    an ``async def __call__``, or a ``functools.partial`` of one)."""
    if inspect.iscoroutinefunction(handler) or (
        callable(handler) and inspect.iscoroutinefunction(inspect.unwrap(handler))
    ):  # an async def, or a wrapper of one (functools.wraps)
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - an async __call__ counts
    func = getattr(handler, "func", None)  # functools.partial
    return inspect.iscoroutinefunction(call) or (
        func is not None and inspect.iscoroutinefunction(func)
    )


class SubscriptionRegistry(ABC):
    """The subscribers of a bus and their inboxes."""

    def __init__(
        self,
        *,
        max_buffer: int | None,
        overflow: OverflowPolicy | str,
        on_handler_error: ErrorHook | None,
    ) -> None:
        _check_buffer(max_buffer)
        self._max_buffer = max_buffer
        self._overflow = overflow_policy(overflow)
        if on_handler_error is not None and not is_async_callable(on_handler_error):
            raise TypeError(
                f"on_handler_error must be an 'async def hook(subscriber_name, message, "
                f"error)' (or None), got {on_handler_error!r}"
            )
        self._on_handler_error = on_handler_error
        self._subscriptions: dict[str, Subscription] = {}
        # A tuple snapshot of the subscriptions, rebuilt on (un)subscribe: the send path only
        # iterates it.
        self._targets: tuple[Subscription, ...] = ()
        self._bounded: tuple[Subscription, ...] = ()
        self._hub = Hub()
        self._fan_out = make_fan_out((), self._hub)
        # send()'s shortcut for a data message: when the transport is this process's memory
        # (set by the bus) and no inbox is bounded or filtered, the inboxes it fills at once;
        # open (in _plain) only while the bus runs, so that the shortcut need not check.
        self._direct = False
        self._plain_targets: tuple[Subscription, ...] | None = None
        self._plain: tuple[Subscription, ...] | None = None
        # Whether any inbox is bounded under the "block" policy: only then does a send look
        # for room before queuing.
        self._blocking = False

    def _first_fan_out(self, message: BusMessage) -> None:
        fan_out = self._fan_out = make_fan_out(self._targets, self._hub)
        fan_out(message)

    @abstractmethod
    def _spawn_if_dispatching(self, sub: Subscription) -> None: ...

    @abstractmethod
    def _forget(self, sub: Subscription) -> None:
        """Forget ``sub``, whose workers have ended, in the periods of dispatching."""

    @abstractmethod
    def _refresh_plain(self) -> None:
        """Open or close send()'s shortcut (``_plain``): open only while the bus runs."""

    def _add(
        self,
        subscriber: BusSubscriber,
        *,
        types: Sequence[type[BusMessage]] | None,
        targets: Iterable[str] | None = None,
        max_buffer: BufferSetting,
        overflow: OverflowPolicy | str | None,
        passive: bool = False,
    ) -> Subscription | None:
        name = subscriber.name
        if not isinstance(name, str) or not name:
            raise ValueError(f"a subscriber's name must be a non-empty str, got {name!r}")
        existing = self._subscriptions.get(name)
        if existing is not None:
            if existing.subscriber is subscriber:
                return None
            raise ValueError(
                f"a subscriber named {name!r} is already subscribed ({existing.subscriber!r}): "
                f"unsubscribe it first, or give {subscriber!r} another name"
            )
        bound = self._max_buffer if max_buffer is DEFAULT else max_buffer
        _check_buffer(bound)
        if isinstance(types, type):
            raise TypeError(
                f"types takes a list of message classes: write types=[{types.__name__}]"
            )
        if types is not None and not isinstance(types, Iterable):
            raise TypeError(f"types takes a list of message classes, got {types!r}")
        for kind in types or ():
            if not (isinstance(kind, type) and issubclass(kind, BusMessage)):
                raise TypeError(f"types must hold message classes, got {kind!r}")
        _check_class(type(subscriber))
        sub = Subscription(
            subscriber,
            name,
            types=tuple(types) if types else None,
            targets=_check_targets(targets),
            max_buffer=bound,
            overflow=self._overflow if overflow is None else overflow_policy(overflow),
            hub=self._hub,
            on_error=self._on_handler_error,
            passive=passive,
            bus=self,
        )
        self._subscriptions[name] = sub
        self._changed()
        logger.debug("%r: subscribed %r", self, name)
        return sub

    def _changed(self) -> None:
        targets = self._targets = tuple(self._subscriptions.values())
        bounded: list[Subscription] = []
        plain = True
        for sub in targets:
            if sub.bounded:
                bounded.append(sub)
                plain = False
            elif sub.targets is not None:
                plain = False
        self._bounded = tuple(bounded)
        self._blocking = any(sub.overflow is OverflowPolicy.BLOCK for sub in bounded)
        self._fan_out = self._first_fan_out  # built when first used: churn need not pay
        self._plain_targets = targets if self._direct and plain else None
        self._refresh_plain()
        self._hub.notify_idle()  # a removed subscriber may have been the last one busy

    @overload
    async def subscribe(
        self,
        subscriber: _S,
        *,
        types: Sequence[type[BusMessage]] | None = None,
        targets: Iterable[str] | None = None,
        max_buffer: BufferSetting = DEFAULT,
        overflow: OverflowPolicy | str | None = None,
    ) -> _S: ...

    @overload
    async def subscribe(
        self,
        subscriber: Handler,
        *,
        name: str | None = None,
        types: Sequence[type[BusMessage]] | None = None,
        targets: Iterable[str] | None = None,
        max_buffer: BufferSetting = DEFAULT,
        overflow: OverflowPolicy | str | None = None,
    ) -> FunctionSubscriber: ...

    async def subscribe(
        self,
        subscriber: BusSubscriber | Handler,
        *,
        name: str | None = None,
        types: Sequence[type[BusMessage]] | None = None,
        targets: Iterable[str] | None = None,
        max_buffer: BufferSetting = DEFAULT,
        overflow: OverflowPolicy | str | None = None,
    ) -> BusSubscriber:
        """Register a subscriber to receive every message sent from now on; return it.

        ``subscriber`` is a :class:`BusSubscriber`, or a plain ``async def handler(message)``
        (wrapped in a :class:`FunctionSubscriber` named ``name``, by default the function's
        name).

        Every subscriber gets every message, whatever its ``target`` says, unless it declares
        what it accepts. ``targets`` (names) keeps out of its inbox every message whose
        ``target`` is set to another name — applied as the message is fanned out, before the
        bound, so a refused message is never queued and never waits for room; messages
        without a target still arrive. ``types`` limits delivery to instances of those message
        classes (checked, like the subscriber's own ``accepts_bus_message``, as each message
        is taken). ``max_buffer`` and ``overflow`` override the bus's defaults for this
        subscriber.

        Subscribing the same object again is a no-op. If the bus is dispatching, the
        subscriber's workers start at once.

        ``subscribe()`` waits for nothing: it registers the subscriber, then checks for
        cancellation once. A cancelled call has registered the subscriber all the same.

        Raises:
            AttributeError: if the subscriber has no name.
            TypeError: if ``subscriber`` is neither a :class:`BusSubscriber` nor a callable,
                or its handler is not an ``async def`` function; if ``types`` or ``targets``
                hold something else than message classes or names.
            ValueError: if another subscriber has that name, or ``max_buffer`` is below 1, or
                ``overflow`` names no policy.
        """
        _check_handler(subscriber)
        check_optional_name("name", name)
        if not isinstance(subscriber, BusSubscriber):
            handler = subscriber
            default_name = getattr(handler, "__name__", repr(handler))
            subscriber = FunctionSubscriber(name or default_name, handler)
        sub = self._add(
            subscriber, types=types, targets=targets, max_buffer=max_buffer, overflow=overflow
        )
        if sub is not None:
            self._spawn_if_dispatching(sub)
        await checkpoint()
        return subscriber

    async def unsubscribe(self, subscriber: BusSubscriber | str) -> None:
        """Remove a subscriber (or the subscriber of that name): cancel its workers, wait for
        them, discard its inbox.

        Only this subscriber's workers are cancelled. A no-op if it is not subscribed. If the
        wait is cancelled, the workers still end and the inbox is still discarded.
        """
        if not isinstance(subscriber, str | BusSubscriber):
            raise TypeError(
                f"unsubscribe() takes a subscriber or its name (str), got {subscriber!r}"
            )
        name = subscriber if isinstance(subscriber, str) else subscriber.name
        sub = self._subscriptions.pop(name, None)
        if sub is None:
            await checkpoint()
            return
        self._changed()
        logger.debug("%r: unsubscribed %r", self, name)
        try:
            if sub.handles:
                sub.end()
                await sub.wait_ended()
            else:
                await checkpoint()
        finally:
            sub.close()
            if not sub.handles:
                self._forget(sub)

    def _remove_now(self, sub: Subscription) -> None:
        if self._subscriptions.get(sub.name) is sub:
            del self._subscriptions[sub.name]
            self._changed()
        sub.close()

    @asynccontextmanager
    async def listen(
        self,
        *,
        name: str | None = None,
        types: Sequence[type[BusMessage]] | None = None,
        max_buffer: BufferSetting = DEFAULT,
        overflow: OverflowPolicy | str | None = None,
    ) -> AsyncIterator[MessageStream]:
        """Subscribe as a receive stream: ``async with bus.listen() as messages:``.

        Iterate with ``async for message in messages``. Queued system messages come before
        queued data messages. Leaving the block unsubscribes and discards what was not
        received. ``name`` defaults to ``listener-N``; ``types``, ``max_buffer`` and
        ``overflow`` are as for :meth:`subscribe`.

        Entering the block waits for nothing. Leaving it unsubscribes even when the block is
        left by a cancellation. See :meth:`MessageStream.receive` for cancelling a receive.

        Raises:
            ValueError: if the name is already taken, or ``max_buffer`` is below 1.
        """
        listener = _Listener(
            check_optional_name("name", name) or f"listener-{next(_listener_names)}"
        )
        sub = self._add(
            listener, types=types, max_buffer=max_buffer, overflow=overflow, passive=True
        )
        assert sub is not None  # a new listener object is never subscribed already
        stream = MessageStream(sub, lambda: self._remove_now(sub))
        try:
            yield stream
        finally:
            await stream.aclose()

    @property
    def subscribers(self) -> list[BusSubscriber]:
        """The subscribers registered now, in subscription order."""
        return [sub.subscriber for sub in self._targets]
