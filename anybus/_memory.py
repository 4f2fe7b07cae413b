"""The in-process bus."""

from __future__ import annotations

from typing import final

from ._bus import WorkerBus
from ._dispatch import fan_out
from ._messages import BusMessage

__all__ = ["MemoryBus"]


@final
class MemoryBus(WorkerBus):
    """A bus whose transport is this process's memory (pipecat's ``AsyncQueueBus``).

    Every message goes straight to the local subscribers' inboxes; nothing is serialized.
    """

    async def publish(self, message: BusMessage) -> None:
        """Deliver ``message`` to every subscriber of this bus; never blocks."""
        fan_out(self._targets, message)
