"""Where a Postgres bus's reader is in its channel, and what it may acknowledge."""

from __future__ import annotations

from collections import deque
from typing import final

from .._transport import DeliveryMark, TransportHost

__all__ = ["Cursor"]


@final
class Cursor:
    """A reader's position (the id of the last message read) and its acknowledged position
    (every message up to it was handled, or was not for this bus).

    Message ids on a channel have no holes, so one position says all: acknowledging *n*
    acknowledges everything up to *n*.
    """

    __slots__ = ("_hold", "_settled", "_unacked", "acknowledged", "position")

    def __init__(self) -> None:
        self.position = 0
        self.acknowledged = 0
        # The furthest position settle() found, whether acknowledged yet or not.
        self._settled = 0
        # The messages read and not acknowledged yet, in order, each with the host's mark
        # taken just after it was delivered (None: nothing to wait for).
        self._unacked: deque[tuple[int, DeliveryMark | None]] = deque()
        # Set when a message of this run will never be handled: the position before it,
        # beyond which this run acknowledges nothing (so that it comes again next time).
        self._hold: int | None = None

    def start(self, position: int) -> None:
        """Begin a run at ``position`` (acknowledged)."""
        self.position = self.acknowledged = self._settled = position
        self._unacked.clear()
        self._hold = None

    def read(self, entry_id: int, mark: DeliveryMark | None) -> None:
        """Note that message ``entry_id`` was read (and delivered, if ``mark``)."""
        self.position = entry_id
        self._unacked.append((entry_id, mark))

    @property
    def pending(self) -> bool:
        """Whether some message read is not acknowledged yet."""
        return bool(self._unacked)

    def could_settle(self, host: TransportHost) -> bool:
        """Whether :meth:`settle` would move now."""
        if not self._unacked:
            return False
        mark = self._unacked[0][1]
        return mark is None or host.handled(mark) or host.lost(mark)

    def settle(self, host: TransportHost) -> int:
        """The position up to which every message read was handled (or was not for us).

        A message that will never be handled in this run holds the position before it."""
        unacked = self._unacked
        settled = self._settled  # what it settled before stays settled, acknowledged or not
        while unacked:
            entry_id, mark = unacked[0]
            if mark is not None and not host.handled(mark):
                if not host.lost(mark):
                    break
                if self._hold is None:
                    self._hold = entry_id - 1
            unacked.popleft()
            settled = entry_id
        else:
            settled = self.position
        self._settled = settled
        return settled if self._hold is None else min(settled, self._hold)

    def acknowledged_up_to(self, position: int) -> None:
        """The server has the acknowledgement of ``position``."""
        self.acknowledged = max(self.acknowledged, position)

    def end(self) -> int:
        """Forget what was not handled (it comes again next run); return how much."""
        left = len(self._unacked)
        self._unacked.clear()
        return left
