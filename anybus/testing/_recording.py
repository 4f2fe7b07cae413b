"""A subscriber that records what it handles."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from anyio import Event

from .._messages import BusMessage
from .._subscriber import BusSubscriber

__all__ = ["RecordingSubscriber"]


class RecordingSubscriber(BusSubscriber):
    """A subscriber that records every message it handles, in the order it starts them.

    Args:
        name: the subscriber's name on the bus.
        handler: optional coroutine function awaited for each message after it is recorded
            (to make the subscriber slow, make it fail, or block it on an event).
        accepts: optional filter used as :meth:`accepts_bus_message`.
    """

    def __init__(
        self,
        name: str,
        *,
        handler: Callable[[BusMessage], Awaitable[None]] | None = None,
        accepts: Callable[[BusMessage], bool] | None = None,
    ) -> None:
        self.name = name
        self.messages: list[BusMessage] = []
        self._handler = handler
        self._accepts = accepts
        self._changed: Event | None = None

    def accepts_bus_message(self, message: BusMessage) -> bool:
        """Apply the ``accepts`` filter given at construction, if any."""
        return self._accepts is None or self._accepts(message)

    async def on_bus_message(self, message: BusMessage) -> None:
        """Record ``message``, wake waiters, then await the ``handler`` given, if any.

        The message is recorded before the handler runs, so it stays recorded when the
        handler is cancelled (the bus stopped, or this subscriber was unsubscribed).
        """
        self.messages.append(message)
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        if self._handler is not None:
            await self._handler(message)

    async def wait_for(self, predicate: Callable[[Sequence[BusMessage]], bool]) -> None:
        """Wait until ``predicate(self.messages)`` is true; returns at once if it already is.

        Bound it with ``anyio.fail_after``. Cancelling the wait changes nothing.
        """
        while not predicate(self.messages):
            changed = self._changed
            if changed is None:
                changed = self._changed = Event()
            await changed.wait()

    async def wait_for_count(self, count: int) -> None:
        """Wait until at least ``count`` messages have been recorded.

        Bound it with ``anyio.fail_after``. Cancelling the wait changes nothing.
        """
        await self.wait_for(lambda seen: len(seen) >= count)
