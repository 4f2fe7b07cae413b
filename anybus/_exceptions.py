"""The anybus exception hierarchy.

::

    AnybusError
     ├── BusStateError      an operation does not fit the bus's lifecycle
     └── BusOverflowError   a bounded inbox is full under the "error" overflow policy
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["AnybusError", "BusOverflowError", "BusStateError"]


class AnybusError(Exception):
    """Base class of every error raised by anybus."""


class BusStateError(AnybusError):
    """Raised when a call does not fit the bus's lifecycle state (for example ``start()`` with
    no running scope, or running a bus that already runs)."""


class BusOverflowError(AnybusError):
    """Raised by ``send()`` when a subscriber with the ``error`` overflow policy has a full
    inbox; every other subscriber still received the message.

    Attributes:
        subscribers: the names of the subscribers whose inbox was full.
    """

    def __init__(self, message_name: str, subscribers: Sequence[str]) -> None:
        self.subscribers = tuple(subscribers)
        names = ", ".join(repr(name) for name in self.subscribers)
        super().__init__(
            f"inbox full for subscriber(s) {names}: {message_name} was not queued for them; "
            f"raise their max_buffer, or choose another overflow policy"
        )
