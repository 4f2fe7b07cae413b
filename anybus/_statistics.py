"""Snapshots of a bus's state, and the overflow policies they report."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ._messages import BusMessage

__all__ = ["BusStatistics", "OverflowPolicy", "SubscriptionStatistics", "Undelivered"]


class OverflowPolicy(StrEnum):
    """What ``send()`` does with a data message for a subscriber whose bounded inbox is full.

    System messages are never dropped or refused: they always join the inbox.
    """

    #: The sender waits until there is room (backpressure). Sends made from inside a handler
    #: running on an anybus bus never wait (see the docs on re-entrant sends).
    BLOCK = "block"
    #: The oldest data message waiting in that inbox is dropped to make room.
    DROP_OLDEST = "drop_oldest"
    #: The new message is dropped for that subscriber.
    DROP_NEWEST = "drop_newest"
    #: ``send()`` raises :class:`~anybus.BusOverflowError` naming the full subscribers (the
    #: others still receive the message).
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class SubscriptionStatistics:
    """A snapshot of one subscription.

    Attributes:
        name: the subscriber's name.
        queued_system: system messages waiting in the inbox.
        queued_data: data messages waiting in the inbox.
        delivered: messages handed to the subscriber (counted when its handler starts).
        dropped: data messages dropped by the overflow policy.
        refused: data messages refused under the ``error`` policy.
        undelivered: messages still queued when a drain's deadline passed, taken out.
        handler_failures: handler (or filter) calls that raised.
        last_failure: the last failure, as text, or ``None``.
        high_water_mark: the most data messages waiting in the inbox at once: exact for a
            bounded inbox; for an unbounded one, sampled each time its worker resumes (when
            the backlog peaks, as only the worker takes messages out), so a backlog that grew
            while a handler awaited is seen at the next resume.
        max_buffer: the bound on waiting data messages, or ``None`` for unbounded.
        overflow: the policy applied when the bound is reached.
    """

    name: str
    queued_system: int
    queued_data: int
    delivered: int
    dropped: int
    refused: int
    undelivered: int
    handler_failures: int
    last_failure: str | None
    high_water_mark: int
    max_buffer: int | None
    overflow: OverflowPolicy

    @property
    def queued(self) -> int:
        """Messages waiting in the inbox, both lanes."""
        return self.queued_system + self.queued_data


@dataclass(frozen=True, slots=True)
class BusStatistics:
    """A snapshot of a bus: its own counters and one snapshot per subscription.

    Attributes:
        running: whether the bus is dispatching.
        sent: messages passed to ``send()``.
        subscriptions: one :class:`SubscriptionStatistics` per subscriber, in subscription
            order.
    """

    running: bool
    sent: int
    subscriptions: tuple[SubscriptionStatistics, ...]

    @property
    def queued(self) -> int:
        """Messages waiting in every inbox."""
        return sum(s.queued for s in self.subscriptions)

    @property
    def delivered(self) -> int:
        """Messages handed to subscribers, summed over subscriptions."""
        return sum(s.delivered for s in self.subscriptions)

    @property
    def dropped(self) -> int:
        """Data messages dropped by overflow policies, summed over subscriptions."""
        return sum(s.dropped for s in self.subscriptions)

    @property
    def handler_failures(self) -> int:
        """Handler failures, summed over subscriptions."""
        return sum(s.handler_failures for s in self.subscriptions)


@dataclass(frozen=True, slots=True)
class Undelivered:
    """A message that was still waiting for ``subscriber`` when a drain's deadline passed."""

    subscriber: str
    message: BusMessage
