"""Subscribing without subclassing: handler functions and listeners (receive streams)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import final

from anyio import ClosedResourceError, EndOfStream, Event, WouldBlock
from anyio.abc import ObjectReceiveStream
from anyio.lowlevel import checkpoint

from ._dispatch import Subscription
from ._messages import BusMessage
from ._subscriber import BusSubscriber

__all__ = ["FunctionSubscriber", "MessageStream"]

#: A plain ``async def handler(message)``.
Handler = Callable[[BusMessage], Awaitable[None]]


@final
class FunctionSubscriber(BusSubscriber):
    """Wraps a plain ``async def handler(message)`` as a subscriber.

    Returned by :meth:`WorkerBus.subscribe` when it is given a function; pass it (or its name)
    to :meth:`WorkerBus.unsubscribe`.
    """

    def __init__(self, name: str, handler: Handler) -> None:
        self.name = name
        self.handler = handler

    async def on_bus_message(self, message: BusMessage) -> None:
        """Await the wrapped handler.

        As with any subscriber, the handler is cancelled when the bus stops or this
        subscriber is unsubscribed.
        """
        await self.handler(message)

    def __repr__(self) -> str:
        return f"<FunctionSubscriber {self.name!r} -> {self.handler!r}>"


class _Listener(BusSubscriber):
    """The subscriber standing for a listener in the bus's subscriber list."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def on_bus_message(self, message: BusMessage) -> None:  # pragma: no cover
        raise AssertionError("a listener's messages are received, not handled")


@final
class MessageStream(ObjectReceiveStream[BusMessage]):
    """The receiving end of :meth:`WorkerBus.listen`: ``async for message in stream``.

    Priority holds as for any subscriber: a queued system message is received before any
    queued data message. Receiving is cancel-safe: a cancelled :meth:`receive` takes nothing
    out of the inbox.
    """

    def __init__(self, subscription: Subscription, on_close: Callable[[], None]) -> None:
        self._sub = subscription
        self._on_close = on_close
        self._closed = False

    @property
    def name(self) -> str:
        """The listener's name on the bus."""
        return self._sub.name

    def receive_nowait(self) -> BusMessage:
        """Return the next message if one is queued.

        Raises:
            WouldBlock: if none is queued.
            ClosedResourceError: if the stream was closed.
        """
        if self._closed:
            raise ClosedResourceError(
                f"the listener {self._sub.name!r} was closed (its 'async with bus.listen()' "
                f"block ended): receive inside the block"
            )
        return self._sub.take_nowait()

    async def receive(self) -> BusMessage:
        """Wait for the next message and return it; system messages come first.

        Cancel-safe: a cancelled ``receive()`` has taken nothing out of the inbox, so the
        message it would have returned is returned by the next call.

        Raises:
            ClosedResourceError: if the stream was closed.
            EndOfStream: if the listener was unsubscribed from the bus.
        """
        await checkpoint()
        sub = self._sub
        while True:
            try:
                return self.receive_nowait()
            except WouldBlock:
                pass
            except ClosedResourceError:
                if self._closed:
                    raise
                raise EndOfStream from None
            waiter = sub.data_waiter = sub.system_waiter = Event()
            try:
                await waiter.wait()
            finally:
                if sub.data_waiter is waiter:
                    sub.data_waiter = None
                if sub.system_waiter is waiter:
                    sub.system_waiter = None

    async def aclose(self) -> None:
        """Unsubscribe the listener; whatever it had not received is discarded.

        The listener is unsubscribed before the call checks for cancellation, so a cancelled
        ``aclose()`` has closed the stream all the same.
        """
        if not self._closed:
            self._closed = True
            self._on_close()
        await checkpoint()

    def __repr__(self) -> str:
        state = (
            "closed"
            if self._closed
            else f"{self._sub.system_queued + self._sub.data_backlog()} queued"
        )
        return f"<MessageStream {self.name!r} {state}>"
