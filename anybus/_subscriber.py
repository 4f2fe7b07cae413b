"""The subscriber mixin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._messages import BusMessage

__all__ = ["BusLike", "BusSubscriber"]


class BusLike(Protocol):
    """The bus as :meth:`BusSubscriber.run_in_bus` is handed it (a :class:`~anybus.WorkerBus`).

    It names the calls a subscriber's own tasks make; the object is the bus itself.
    """

    async def send(self, message: BusMessage) -> None:
        """Send ``message`` on the bus (see :meth:`WorkerBus.send <anybus.WorkerBus.send>`, which
        says what cancelling it does)."""
        ...

    def notify_idle(self) -> None:
        """Tell the bus that :meth:`BusSubscriber.is_busy` may have turned false."""
        ...


class BusSubscriber:
    """Mixin for objects that receive messages from a bus.

    It has no constructor of its own. Give the subscriber a ``name`` — assign ``self.name``,
    declare a ``name`` class attribute or dataclass field, or override the property — and
    override :meth:`on_bus_message`. Names are unique per bus: subscribing a second subscriber
    under a name already taken raises :class:`ValueError` (subscribing the same object again is
    a no-op).
    """

    @property
    def name(self) -> str:
        """The name identifying this subscriber on the bus."""
        try:
            return self.__dict__["_anybus_name"]  # type: ignore[no-any-return]
        except (AttributeError, KeyError):
            raise AttributeError(
                f"{type(self).__name__} has no name: assign 'self.name' or override the "
                f"'name' property"
            ) from None

    @name.setter
    def name(self, value: str) -> None:
        self.__dict__["_anybus_name"] = value

    def accepts_bus_message(self, message: BusMessage) -> bool:
        """Return whether this subscriber wants ``message``.

        The bus asks just before it hands each message to :meth:`on_bus_message`; ``False``
        drops the message for this subscriber only. The default accepts everything (and the bus
        then skips the call altogether). An exception raised here is logged and the message is
        dropped for this subscriber.
        """
        return True

    async def on_bus_message(self, message: BusMessage) -> None:
        """Handle one message.

        Data messages are handled one at a time in send order, system messages likewise, and a
        system message may be handled while a data message is still being handled. An exception
        raised here is logged with its traceback and delivery goes on. When the bus stops or
        this subscriber is unsubscribed, a handler still running is cancelled.
        """

    async def run_in_bus(self, bus: BusLike) -> None:
        """Run this subscriber's own tasks inside the bus's scope; override to use it.

        The bus starts it, as a task next to the subscriber's workers, whenever those start
        (on subscribing to a dispatching bus, and on every ``start()``), and cancels it with
        them: on ``stop()``, on ``unsubscribe()`` and when the bus's scope ends. So any task
        it runs in a task group of its own ends before the bus does. Messages may reach
        :meth:`on_bus_message` before it has begun. An exception raised here is logged and the
        subscriber's workers keep running. The default does nothing, and the bus starts no
        task for a subscriber that does not override it.

        :class:`~anybus.JobWorker` runs its jobs here.
        """

    def is_busy(self) -> bool:
        """Whether work of this subscriber's own is outstanding; override to report it.

        While it returns true, the bus is not idle: :meth:`WorkerBus.wait_idle
        <anybus.WorkerBus.wait_idle>` and the drain on leaving ``async with bus:`` wait. The
        bus asks when it looks for idleness; a subscriber that overrides this calls
        :meth:`BusLike.notify_idle` (``bus.notify_idle()``) when it turns false, so that the
        bus looks again. :class:`~anybus.JobWorker` reports its running and queued jobs so.
        The default is never busy (and the bus then never asks).
        """
        return False
