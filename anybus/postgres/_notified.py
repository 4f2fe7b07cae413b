"""What a Postgres bus's reader learns without reading the table: the ids the writer gave
this bus's own messages, and the messages another bus's notification carried."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, final

from anyio import current_time

from .._exceptions import MessageRejected
from .._transport import TransportHost
from ._cursor import Cursor
from ._options import OWN_READ_DELAY
from ._rows import Rows

__all__ = ["Notified"]

#: The batches of this bus's own stored ids kept for the reader to pass (the oldest are
#: forgotten beyond: the reader reads those rows instead).
OWN_BATCHES = 1_000


@final
class Notified:
    """Moves a reader's cursor without a read, where it may: past this bus's own ids (told
    by the writer, :meth:`stored`), and through the messages a notification carried
    (``<sender hash> <first id> <hex body> ...``, see the schema's ``publish``) when they
    are the next ids. Anything else is left for a read of the table."""

    __slots__ = ("_batch", "_carried", "_channel", "_cursor", "_own", "_rows", "own_due")

    def __init__(
        self, *, rows: Rows, cursor: Cursor, channel: str, batch: int, carried: bool
    ) -> None:
        self._carried = carried  # whether to take what notifications carry
        self._rows = rows
        self._cursor = cursor
        self._channel = channel
        self._batch = batch  # the most rows a read returns
        # The ids of this bus's own messages, as the writer stored them (first, last).
        self._own: deque[tuple[int, int]] = deque(maxlen=OWN_BATCHES)
        #: When the reader is to pass, or read past, rows of its own it was notified of
        #: (None: none; a read reads past them).
        self.own_due: float | None = None

    def stored(self, first: int, last: int) -> None:
        """The writer stored this bus's messages with ids ``first`` to ``last``."""
        self._own.append((first, last))

    def pass_own(self) -> bool:
        """Move the position past this bus's own ids that follow it (they need no delivery);
        return whether every own id it was told of is passed."""
        cursor, own = self._cursor, self._own
        while own:
            first, last = own[0]
            if first > cursor.position + 1:
                return False
            own.popleft()
            for entry_id in range(cursor.position + 1, last + 1):
                cursor.read(entry_id, None)
        return True

    async def handle(self, host: TransportHost, others: list[bytes], own: int) -> bool:
        """Take what the notifications of other buses carried (``others``, their payloads)
        and pass this bus's own rows (``own`` notifications of them); return False if
        something is to be read from the table."""
        taken = True
        for payload in others:  # each one, for what does not parse to be counted
            taken = await self.take(host, payload) and taken
        self.pass_own()
        if own and self.own_due is None:  # the writer may not have told their ids yet
            self.own_due = current_time() + OWN_READ_DELAY
        return taken

    def read_own(self, now: float) -> bool:
        """Whether the reader is to read past rows of its own now (it was notified of them
        :data:`OWN_READ_DELAY` ago, and the writer did not tell all their ids)."""
        if self.own_due is None or now < self.own_due:
            return False
        self.own_due = None
        return not self.pass_own()

    async def take(self, host: TransportHost, payload: bytes) -> bool:
        """Take the messages a notification carried that follow the position; return False
        if something is to be read from the table: it carried none (a plain wake-up: a
        batch too large to carry, or a bus of an older anybus), not the next ids, or one
        that does not decode or is not new (a repeat, or a replay: counted, and only the
        row moves the cursor). A payload that does not parse is counted as ``malformed``.
        Cancelled while the host waits for room, what was not delivered is not taken."""
        if not self._carried:
            return False
        parts = payload.split(b" ")
        if len(parts) < 3:
            return False
        try:
            first = int(parts[1])
            if first < 1:
                raise ValueError(f"id {first}")
            bodies = [bytes.fromhex(text.decode("ascii")) for text in parts[2:]]
        except ValueError as exc:  # UnicodeDecodeError is one
            self._rows.rejections.record(
                MessageRejected("malformed", f"a notification that does not parse ({exc})"),
                origin=f"{self._channel!r} notifications",
            )
            return False
        cursor = self._cursor
        for entry_id, body in enumerate(bodies, first):
            self.pass_own()
            if entry_id <= cursor.position:
                continue  # read already
            if entry_id != cursor.position + 1:
                return False
            if not await self._rows.take_carried(host, cursor, entry_id, body):
                return False
        return True

    async def past_own(self, read: Callable[[int], Awaitable[list[Any]]], position: int) -> int:
        """The position after the rows of this bus that follow ``position`` without a hole
        (the writer did not tell their ids: its try broke), as ``read`` (the rows after an
        id) finds them: they need no delivery, so the next run of the name need not read
        them."""
        while True:
            rows = await read(position)
            for entry_id, sender, _ in rows:
                if sender != self._rows.instance or entry_id != position + 1:
                    return position
                position = entry_id
            if len(rows) < self._batch:
                return position
