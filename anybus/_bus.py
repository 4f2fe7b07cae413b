"""The bus: lifecycle, the send path and draining; it is given the transport that carries it."""

from __future__ import annotations

import logging
from threading import get_ident
from typing import Any

from anyio.lowlevel import checkpoint

from ._dispatch import ErrorHook, Subscription, handling
from ._exceptions import BusStateError
from ._lifecycle import BusLifecycle
from ._messages import BusLocalMessage, BusMessage, BusSystemMessage
from ._statistics import BusStatistics, OverflowPolicy
from ._transport import DeliveryMark, MemoryTransport, Transport

__all__ = ["WorkerBus", "check_bus", "current_bus"]

logger = logging.getLogger("anybus.bus")

#: ``send()`` yields to the scheduler once every this many calls (a power of two).
SEND_YIELD_INTERVAL = 128
SEND_YIELD_MASK = SEND_YIELD_INTERVAL - 1

_NOT_RUNNING = (
    "{bus!r} is not running: send inside 'async with bus:' or after "
    "'await task_group.start(bus.run)'"
)
_OTHER_THREAD = (
    "{bus!r} runs in another thread's event loop: a bus is used from its own event loop "
    "only; from another thread, send through 'async with open_thread_portal(bus) as portal:' "
    "(portal.send(message)), or anyio.from_thread.run(bus.send, message) from a worker "
    "thread of the bus's loop"
)

# How send() routes each message class, cached by class: data, system, local-only.
_DATA, _SYSTEM, _LOCAL = 0, 1, 2
_KINDS: dict[type, int] = {}
#: The message classes that are plain data (neither system nor local): send()'s shortcut.
_PLAIN_DATA: set[type] = set()


def _kind_of(message: object) -> int:
    kind = type(message)
    if not isinstance(message, BusMessage):
        if isinstance(message, type) and issubclass(message, BusMessage):
            raise TypeError(
                f"send() takes a message, got the class {message.__name__}: "
                f"send an instance, {message.__name__}(source=...)"
            )
        raise TypeError(
            f"send() takes a BusMessage (a BusDataMessage, a BusSystemMessage, ...), "
            f"got {type(message).__name__} {message!r}"
        )
    if isinstance(message, BusLocalMessage):
        value = _LOCAL
    elif isinstance(message, BusSystemMessage):
        value = _SYSTEM
    else:
        value = _DATA
        _PLAIN_DATA.add(kind)
    _KINDS[kind] = value
    return value


def current_bus() -> WorkerBus | None:
    """The bus whose subscriber's handler is running in the current task, if any.

    Set in every worker task of a subscription (and so in the tasks its handlers start);
    ``None`` elsewhere, in :meth:`BusSubscriber.run_in_bus <anybus.BusSubscriber.run_in_bus>`
    among them. A send into this bus from there is admitted over a full ``block`` bound.
    """
    bus: WorkerBus | None = handling.get()
    return bus


class WorkerBus(BusLifecycle):
    """Pub/sub bus connecting workers to each other and to a runner.

    Each subscriber has its own inbox and its own workers; system messages overtake queued data
    messages. The bus owns the subscriptions, their dispatch and its lifecycle; the
    ``transport`` it is given (see :class:`~anybus.Transport`) carries messages to the other
    buses. Without one, the transport is this process's memory (as :class:`MemoryBus`).

    Run a bus in one of two ways; both own every task the bus starts:

    * ``async with bus:`` — the bus opens its own task group and starts its transport;
      leaving the block stops the transport's intake, drains what is queued (up to
      ``exit_drain`` seconds), stops dispatch, lets the transport acknowledge what was
      handled and close, and returns once every task of the bus has ended. Inside the
      block, :meth:`stop` halts dispatch and :meth:`start` resumes it.
    * ``await task_group.start(bus.run)`` — the bus runs inside the caller's task group
      until :meth:`stop` is called or the caller's scope is cancelled.

    A bus sends only while it runs (:meth:`send` raises :class:`BusStateError` before and
    after). Subscribing works at any time; while the bus is not dispatching (before it runs,
    or after :meth:`stop` inside the block), messages wait in the subscribers' inboxes and are
    handled once it starts, system messages first.

    Args:
        transport: what carries the messages (default: a :class:`~anybus.MemoryTransport`).
        max_buffer: default bound on each subscriber's queued data messages (``None``:
            unbounded). System messages are never bounded.
        overflow: default policy when a bounded inbox is full (see :class:`OverflowPolicy`).
        exit_drain: seconds that leaving ``async with bus:`` without an exception waits for
            queued messages to be handled; what is left then is discarded, counted and logged.
            ``None`` leaves it queued instead.
        on_handler_error: ``async def hook(subscriber_name, message, exception)``, awaited by
            the worker after a handler raised (and the failure was logged).

    Raises:
        ValueError: if ``max_buffer`` is below 1, ``overflow`` names no policy, or
            ``exit_drain`` is negative.
    """

    def __init__(
        self,
        transport: Transport | None = None,
        *,
        max_buffer: int | None = None,
        overflow: OverflowPolicy | str = OverflowPolicy.BLOCK,
        exit_drain: float | None = 5.0,
        on_handler_error: ErrorHook | None = None,
    ) -> None:
        if exit_drain is not None and (not isinstance(exit_drain, int | float) or exit_drain < 0):
            raise ValueError(
                f"exit_drain must be a number of seconds >= 0 (or None), got {exit_drain!r}"
            )
        transport = MemoryTransport() if transport is None else transport
        super().__init__(
            transport,
            exit_drain=exit_drain,
            max_buffer=max_buffer,
            overflow=overflow,
            on_handler_error=on_handler_error,
        )
        # The memory transport's publish() is deliver(): send() takes the short way instead.
        self._direct = type(transport) is MemoryTransport
        self._changed()
        self._sent = 0

    def notify_idle(self) -> None:
        """Make :meth:`wait_idle` look again: a subscriber's ``is_busy()`` may be false now."""
        self._hub.notify_idle()

    # --- sending --------------------------------------------------------------------------

    async def send(self, message: BusMessage) -> None:
        """Send ``message`` to every subscriber of every bus on the transport.

        A :class:`~anybus.BusLocalMessage` goes straight to this process's subscribers; any
        other message goes through the transport (see :class:`~anybus.Transport`), which
        hands it to this bus's subscribers too. ``send()`` does not wait for handlers. To keep
        a loop of sends cheap it yields to the scheduler only once every 128 calls, and when
        it must wait for room in a bounded inbox.

        Raises:
            TypeError: if ``message`` is not a :class:`~anybus.BusMessage` instance.
            BusStateError: if the bus has no running scope (before ``async with bus:`` or
                ``bus.run``, or after); inside it, after :meth:`stop`, sends still queue.
            BusOverflowError: if a subscriber with the ``error`` policy has a full inbox.
            RuntimeError: if called from another thread than the bus's event loop's (use
                :func:`~anybus.open_thread_portal`); nothing was sent. On a memory bus's fast
                path (unbounded, unfiltered inboxes) the thread is checked only where a
                waiting worker would be woken, to keep that path cheap: there, subscribers
                already busy may have the message, and a send that wakes nobody is not
                refused. Never rely on either.

        Cancellation: a cancelled ``send()`` has delivered the message to nobody (under the
        ``block`` policy it was waiting for room; at its scheduling point it checks for
        cancellation before delivering). A network transport documents what a send
        cancelled while it talks to the network has done.
        """
        sent = self._sent + 1
        plain = self._plain
        if plain is not None and sent & SEND_YIELD_MASK and message.__class__ in _PLAIN_DATA:
            # A data message on a running memory bus whose inboxes are unbounded and
            # unfiltered: the fan-out, inlined, is the hottest loop of the library (a call
            # costs W2 about 7 %, a check of the running state 3 %: _plain says both; the
            # thread is checked where a worker is woken, the harm a wrong thread would do).
            self._hub.data_fanned += 1
            for sub in plain:
                waiter = sub.data_waiter
                if waiter is not None:
                    if get_ident() != self._thread:
                        raise RuntimeError(_OTHER_THREAD.format(bus=self))
                    sub.data_waiter = None
                    sub.push_data(message)
                    waiter.set()
                else:
                    sub.push_data(message)
            self._sent = sent
            return
        kind = _KINDS.get(message.__class__)
        if kind is None:
            kind = _kind_of(message)
        if self._host is not None and get_ident() != self._thread:
            raise RuntimeError(_OTHER_THREAD.format(bus=self))  # before it touches anything
        if not sent & SEND_YIELD_MASK:
            # Once every 128 sends: a scheduling point, before the message goes anywhere, so
            # that a cancellation met there has delivered nothing. One checkpoint, not a
            # check and a shielded yield after the delivery: on asyncio that costs W2 5 %.
            await checkpoint()
        if self._host is None:
            raise BusStateError(_NOT_RUNNING.format(bus=self))
        await self._route(message, kind)
        self._sent = sent

    async def _route(self, message: BusMessage, kind: int) -> None:
        if kind == _LOCAL or self._direct:
            await self.deliver(message)
        else:
            await self._transport.publish(message)

    async def deliver(self, message: BusMessage) -> None:
        """Hand ``message`` to every local subscriber's inbox, by the overflow policies.

        Transports call this for each message that arrives from the network (it is
        pipecat's ``on_message_received``). It does not wait for handlers; under the
        ``block`` policy it waits for room in full inboxes before queuing the message
        anywhere, so a cancelled call has queued it nowhere. A subscriber whose ``targets``
        refuse the message is not waited for.

        Raises:
            BusOverflowError: if a subscriber with the ``error`` policy has a full inbox (the
                others still received the message).
        """
        if self._blocking and not isinstance(message, BusSystemMessage):
            await self._wait_for_room(message)
        self._fan_out(message)

    def deliver_nowait(self, message: BusMessage) -> bool:
        """Hand ``message`` to every local subscriber's inbox now, if no inbox must wait.

        The synchronous form of :meth:`deliver`, for a transport that receives messages in a
        callback: if a full inbox under the ``block`` policy wants ``message``, it queues
        nothing and returns ``False`` (deliver it with :meth:`deliver` then, in order);
        otherwise it delivers and returns ``True``. Never admitted over a bound (it is no
        handler's send).

        Raises:
            BusOverflowError: as :meth:`deliver` (the others received the message).
        """
        if (
            self._blocking
            and not isinstance(message, BusSystemMessage)
            and self._full_inbox(message) is not None
        ):
            return False
        self._fan_out(message)
        return True

    def _full_inbox(self, message: BusMessage) -> Subscription | None:
        """A full inbox under the ``block`` policy that wants ``message``, if any."""
        for sub in self._bounded:
            if (
                sub.overflow is OverflowPolicy.BLOCK
                and sub.data_queued >= sub.max_buffer
                and sub.wants(message)
            ):
                return sub
        return None

    async def _wait_for_room(self, message: BusMessage) -> None:
        if handling.get() is self:
            return  # a handler of this bus: admitted over the bound rather than deadlocking
        while (sub := self._full_inbox(message)) is not None:
            await sub.wait_for_room()

    # --- what a transport asks ------------------------------------------------------------

    def mark(self) -> DeliveryMark:
        """A mark of everything delivered so far (see :meth:`handled`)."""
        mark: Any = tuple((sub, *sub.mark()) for sub in self._targets)
        return mark  # type: ignore[no-any-return]

    def handled(self, mark: DeliveryMark) -> bool:
        """Whether every message delivered before ``mark`` was taken has been handled.

        A durable transport acknowledges a message once this is true of the mark it took
        just after delivering it: every subscriber's handler returned (or raised), a filter
        refused it, or an overflow policy dropped it. An unsubscribed subscriber's messages
        count as handled. See :meth:`lost` for those that never will be.
        """
        for sub, system, data, epoch in self._mark_items(mark):
            if sub.closed:
                continue
            if sub.epoch != epoch:
                return False
            system_done, data_done = sub.settled()
            if system_done < system or data_done < data:
                return False
        return True

    def lost(self, mark: DeliveryMark) -> bool:
        """Whether a message delivered before ``mark`` may never be handled in this run: a
        subscriber lost messages since (a drain's deadline took them out undelivered, or a
        handler was cancelled). Leave its entry unacknowledged: it comes again next time."""
        return any(
            not sub.closed and sub.epoch != epoch for sub, _, _, epoch in self._mark_items(mark)
        )

    @staticmethod
    def _mark_items(mark: DeliveryMark) -> tuple[tuple[Subscription, int, int, int], ...]:
        items: tuple[tuple[Subscription, int, int, int], ...] = mark  # type: ignore[assignment]
        return items

    # --- introspection --------------------------------------------------------------------

    def statistics(self) -> BusStatistics:
        """A snapshot of the bus and of every subscription."""
        return BusStatistics(
            running=self.running,
            sent=self._sent,
            subscriptions=tuple(sub.statistics() for sub in self._targets),
        )

    def __repr__(self) -> str:
        queued = sum(sub.system_queued + sub.data_backlog() for sub in self._targets)
        state = "running" if self.running else "stopped"
        count = len(self._targets)
        plural = "" if count == 1 else "s"
        where = "" if self._direct else f", {self._transport}"
        return (
            f"<{type(self).__name__} {state}, {count} subscriber{plural}, {queued} queued{where}>"
        )


def check_bus(value: object, parameter: str = "bus") -> WorkerBus:
    """``value``, if it is a bus; else raise TypeError naming ``parameter``."""
    if not isinstance(value, WorkerBus):
        raise TypeError(
            f"{parameter} must be an anybus bus (a WorkerBus: MemoryBus, RedisBus, "
            f"RedisStreamBus, PostgresBus...), got {value!r}"
        )
    return value
