"""The in-process bus."""

from __future__ import annotations

from typing import final

from anyio.lowlevel import checkpoint

from ._bus import SEND_YIELD_MASK, WorkerBus
from ._messages import BusMessage, BusSystemMessage

__all__ = ["MemoryBus"]


@final
class MemoryBus(WorkerBus):
    """A bus whose transport is this process's memory (pipecat's ``AsyncQueueBus``).

    Every message goes straight to the local subscribers' inboxes; nothing is serialized.
    Takes the options of :class:`WorkerBus`.
    """

    async def send(self, message: BusMessage) -> None:
        """Deliver ``message`` to every subscriber of this bus; see :meth:`WorkerBus.send`.

        Local or not, a message on a memory bus takes the same path. When no inbox is
        bounded, a data message skips the ``publish()`` and ``deliver()`` hops and is put
        in the inboxes right here: the hottest loop of the library.

        Cancellation: a ``send()`` cancelled while it waits for room (the ``block`` policy)
        has queued the message nowhere; one cancelled at its scheduling point (once every 128
        calls) has already delivered it.
        """
        if self._bounded or isinstance(message, BusSystemMessage):
            await self.deliver(message)
        else:
            # fan_out()'s data path for unbounded inboxes, inlined: the hottest loop there is.
            self._hub.data_fanned += 1
            for sub in self._targets:
                sub.push_data(message)
                waiter = sub.data_waiter
                if waiter is not None:
                    sub.data_waiter = None
                    waiter.set()
        sent = self._sent = self._sent + 1
        if not sent & SEND_YIELD_MASK:
            await checkpoint()

    async def publish(self, message: BusMessage) -> None:
        """Deliver ``message`` to every subscriber of this bus (as :meth:`WorkerBus.deliver`).

        Cancelled while it waits for room (the ``block`` policy), it has queued the message
        nowhere.
        """
        await self.deliver(message)
