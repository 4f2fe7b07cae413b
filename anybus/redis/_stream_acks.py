"""The acknowledgements of a stream reader: an entry is acknowledged (``XACK``) once every
subscriber handled its message, in read order, by a task of its own on the writer's
connection, so that the reader goes straight back to reading (a blocking read holds the
reader's connection) and the acknowledgements of what is handled within
:data:`ACK_INTERVAL` share one round trip.

What an acknowledgement delays is only what a crash would give again (and the receiver drops
as repeats); the ordered stop acknowledges exactly what was handled, an acknowledgement that
was on its way included.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import final

from anyio import Event, sleep

from .._exceptions import TransportError
from .._transport import DeliveryMark, TransportHost
from ._client import RedisClient

__all__ = ["ACK_INTERVAL", "StreamAcks"]

logger = logging.getLogger("anybus.redis")

#: How long handled entries wait to be acknowledged together, in seconds (also how often a
#: reader looks again whether the entries it read were handled, while some are not).
ACK_INTERVAL = 0.05


@final
class StreamAcks:
    """The entries one reader read and did not acknowledge yet, and the task that
    acknowledges them (:meth:`run`). Not safe for use from more than one event loop."""

    def __init__(self, stream: str, group: str, where: str) -> None:
        self._stream = stream
        self._group = group
        self._where = where
        # In read order, each with the host's mark taken just after its message was delivered
        # (None: nothing to wait for).
        self._unacked: deque[tuple[str, DeliveryMark | None]] = deque()
        self._sending: list[str] = []  # on their way (or their acknowledgement failed)
        self._wake: Event | None = None  # set when an entry is read while nothing waits

    def read(self, entry_id: str, mark: DeliveryMark | None) -> None:
        """An entry was read; its message was delivered with ``mark`` (``None``: nothing of
        it reaches a subscriber, so it is acknowledged as it is)."""
        self._unacked.append((entry_id, mark))
        if self._wake is not None:
            self._wake.set()

    def known(self) -> set[str]:
        """The entries this run read and did not acknowledge yet."""
        return {entry_id for entry_id, _ in self._unacked}.union(self._sending)

    async def run(self, client: RedisClient, host: TransportHost) -> None:
        """Acknowledge what is handled, at most once per :data:`ACK_INTERVAL`, until
        cancelled."""
        while True:
            if not self._unacked and not self._sending:
                self._wake = Event()
                try:
                    await self._wake.wait()
                finally:
                    self._wake = None
            await sleep(ACK_INTERVAL)
            await self._send(client, self._handled(host))

    async def finish(self, client: RedisClient, host: TransportHost) -> None:
        """The last step of the ordered stop: acknowledge exactly what was handled (and what
        was on its way); what was not stays pending, to come again next time."""
        handled = self._handled(host)
        left = len(self._unacked)
        self._unacked.clear()
        if left:
            logger.info(
                "%s: %d entr%s not handled when the bus stopped: left unacknowledged, they "
                "come again next time",
                self._where,
                left,
                "y" if left == 1 else "ies",
            )
        await self._send(client, handled)

    def _handled(self, host: TransportHost) -> list[str]:
        """Take the entries whose messages every subscriber handled, in read order up to the
        first that is still being handled. One whose message may never be handled in this
        run (``host.lost()``) is left unacknowledged, to come again next time."""
        done: list[str] = []
        unacked = self._unacked
        while unacked:
            entry_id, mark = unacked[0]
            if mark is not None and not host.handled(mark):
                if not host.lost(mark):
                    break
            else:
                done.append(entry_id)
            unacked.popleft()
        return done

    async def _send(self, client: RedisClient, entry_ids: list[str]) -> None:
        self._sending.extend(entry_ids)
        if not self._sending:
            return
        try:
            await client.ack(self._stream, self._group, self._sending)
        except TransportError as exc:
            # Kept for the next acknowledgement; until then a reconnected reader may be
            # given them again, and drops them as repeats.
            logger.debug("%s: acknowledging failed: %s", self._where, exc)
            return
        self._sending = []
