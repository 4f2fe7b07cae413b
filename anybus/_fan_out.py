"""The fan-out: put one message in the matching lane of every subscription, without blocking."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ._dispatch import Hub, Subscription
from ._exceptions import BusOverflowError
from ._inbox import Inbox
from ._messages import BusMessage, BusSystemMessage

__all__ = ["FanOut", "make_fan_out"]

FanOut = Callable[[BusMessage], None]


def make_fan_out(subscriptions: Iterable[Subscription], hub: Hub) -> FanOut:
    """Build the function that puts a message in the matching lane of every subscription.

    The function never blocks and wakes each worker parked on an empty lane (starting a
    subscription's system worker with its first system message). It is rebuilt whenever the
    subscriptions change, with the subscriptions split into plain unbounded ones (whose data
    path needs no bookkeeping), those with a ``targets`` filter, and bounded ones, bound as
    closure cells.

    The function raises :class:`BusOverflowError` if subscribers with the ``error`` policy
    refused the message; every other subscriber has it queued by then.
    """
    targets = tuple(subscriptions)
    unbounded = tuple(sub for sub in targets if not sub.bounded and sub.targets is None)
    selective = tuple(sub for sub in targets if not sub.bounded and sub.targets is not None)
    bounded = tuple(sub for sub in targets if sub.bounded)

    def fan_out(message: BusMessage) -> None:
        if isinstance(message, BusSystemMessage):
            for sub in targets:
                if sub.targets is not None and not sub.wants(message):
                    continue
                sub.system_queued += 1
                sub.system_in += 1
                sub.push_system(message)
                system_waiter = sub.system_waiter
                if system_waiter is not None:
                    sub.system_waiter = None
                    system_waiter.set()
                elif not sub.system_running:
                    sub.start_system_worker()
            return
        hub.data_fanned += 1
        for sub in unbounded:
            sub.push_data(message)
            waiter = sub.data_waiter
            if waiter is not None:
                sub.data_waiter = None
                waiter.set()
        if selective:
            _fan_out_selective(selective, message)
        if bounded:
            _fan_out_bounded(bounded, message)

    return fan_out


def _fan_out_selective(selective: tuple[Subscription, ...], message: BusMessage) -> None:
    # Unbounded inboxes with a targets filter: a message they refuse counts as fanned out
    # (hub.data_fanned) but never went in, so the inbox's base moves past it.
    for sub in selective:
        if sub.wants(message):
            sub.push_data(message)
            waiter = sub.data_waiter
            if waiter is not None:
                sub.data_waiter = None
                waiter.set()
        else:
            sub.data_base += 1


def _fan_out_bounded(bounded: tuple[Subscription, ...], message: BusMessage) -> None:
    refused: list[Inbox] = []
    for sub in bounded:
        if sub.targets is not None and not sub.wants(message):
            continue
        if sub.data_queued >= sub.threshold and not sub.make_room(message, refused):
            continue
        sub.data_queued += 1
        sub.data_pushed += 1
        sub.push_data(message)
        waiter = sub.data_waiter
        if waiter is not None:
            sub.data_waiter = None
            waiter.set()
    if refused:
        raise BusOverflowError(message.name, [sub.name for sub in refused])
