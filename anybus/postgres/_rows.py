"""What a Postgres bus's reader makes of each row it reads: a message for the bus, a repeat,
a rejection, or the end of a gap."""

from __future__ import annotations

import logging
from typing import final

from .._exceptions import MessageRejected
from .._sequence import SequenceTracker
from .._transport import DeliveryMark, TransportHost
from .._wire import Envelope, RejectionCounter, WireCodec
from ._cursor import Cursor

__all__ = ["Rows"]

logger = logging.getLogger("anybus.postgres")


@final
class Rows:
    """Decodes the rows a reader reads, in order, and counts what they were.

    Args:
        codec: decodes (and verifies) each row's body.
        instance: this bus's identity: its own rows are not decoded, only passed.
        channel: for the log lines.
        dedupe: remember the ids of this many recent messages and drop repeats (0: off).
        owner: what the log lines name as the reader.
    """

    __slots__ = (
        "_channel",
        "_codec",
        "_refused",
        "_suspect",
        "instance",
        "received",
        "rejections",
        "tracker",
    )

    def __init__(
        self, *, codec: WireCodec, instance: str, channel: str, dedupe: int, owner: object
    ) -> None:
        self._codec = codec
        #: This bus's identity: the sender of its own rows.
        self.instance = instance
        self._channel = channel
        #: Rows rejected, by reason.
        self.rejections = RejectionCounter(logger=logger)
        #: Gaps, messages missed in them, repeats and replays.
        self.tracker = SequenceTracker(
            dedupe=dedupe,
            logger=logger,
            owner=owner,
            count_gaps=False,
            rejections=self.rejections,
            replay_window=codec.replay_window,
            clock=codec.clock,
        )
        #: Messages decoded from other buses' rows (or carried by their notifications).
        self.received = 0
        # The id a notification carried something undecodable for, and why: a lie if the
        # row decodes (or is this bus's own).
        self._suspect: tuple[int, MessageRejected] | None = None
        # The id and body of a carried message found not new (a repeat or a replay, counted
        # then): its row, when it says the same, is dropped without being counted again.
        self._refused: tuple[int, bytes] | None = None

    async def take(
        self, host: TransportHost, cursor: Cursor, entry_id: int, sender: str, body: bytes
    ) -> None:
        """Hand the message in row ``entry_id`` to ``host`` (unless it is a repeat or not a
        message), then note it as read. Cancelled while the host waits for room, the row is
        not read (the cursor stays before it)."""
        jump = entry_id - cursor.position - 1
        envelope = None
        refused, self._refused = self._refused, None
        if sender != self.instance:
            body = bytes(body)
            try:
                envelope = self._codec.decode(body)
            except MessageRejected as exc:
                self.rejections.record(exc, origin=f"{self._channel!r} id {entry_id}")
                # Rows written into the table by other means push the ids given out past
                # theirs: a jump to one is no loss.
                jump = 0
                self._suspect = None  # the notification said what the row says
        if jump > 0:
            self.tracker.report_missed(
                jump,
                f"on {self._channel!r}: this reader fell more than max_len behind, and they "
                f"were deleted before it read them",
            )
        # Said by a notification already, which was dropped (and counted) then.
        dropped = refused == (entry_id, body)
        await self._deliver(host, cursor, entry_id, envelope, dropped=dropped)

    async def take_carried(
        self, host: TransportHost, cursor: Cursor, entry_id: int, body: bytes
    ) -> bool:
        """Hand over the message a notification carried as the next id (``entry_id`` is the
        cursor's position + 1), as :meth:`take` does; return False, taking nothing, if it
        does not decode (or verify): the row is to be read from the table, which says
        whether the notification lied."""
        try:
            envelope = self._codec.decode(body)
        except MessageRejected as exc:
            self._suspect = (entry_id, exc)
            return False
        if envelope.sender == self.instance:
            return False
        if not self.tracker.is_new(envelope):
            self._refused = (entry_id, body)  # a repeat or a replay, counted once: here
            return False  # only the row moves the cursor
        await self._deliver(host, cursor, entry_id, envelope, new=True)
        return True

    async def _deliver(
        self,
        host: TransportHost,
        cursor: Cursor,
        entry_id: int,
        envelope: Envelope | None,
        *,
        new: bool = False,
        dropped: bool = False,
    ) -> None:
        suspect = self._suspect
        if suspect is not None and suspect[0] <= entry_id:
            self._suspect = None
            if suspect[0] == entry_id:  # a notification carried something else for this id
                origin = f"a notification on {self._channel!r} (id {entry_id})"
                self.rejections.record(suspect[1], origin=origin)
        mark: DeliveryMark | None = None
        if envelope is not None:
            self.received += 1
            if new or (
                not dropped and envelope.sender != self.instance and self.tracker.is_new(envelope)
            ):
                await host.deliver(envelope.message)
                mark = host.mark()
        # Only now: a delivery cancelled (intake stopped) leaves the position before it.
        cursor.read(entry_id, mark)
