"""The writer of a stream bus: sends stored in order, pipelined, each told what happened.

Every ``send()`` puts its message in the outbox — or, when nothing is queued or on its way,
stores it itself, sparing a round of scheduling. One writer task takes what is waiting (up
to a batch), numbers it, stores it through the sender's fence (``_fence.py``: one round
trip, atomic, and in order whatever the client does with a request whose answer was lost),
and tells each sender. One batch is on its way at a time, so entries are in the stream in
the order of the sends.

After a try whose answer was lost, the writer asks the fence what it did before it sends
anything else: what was stored is reported stored; what was not is sent again under the same
numbers while its senders wait, and otherwise its numbers go to the next messages, so that
the receivers see no gap for a send that raised.

With ``durability="stored"`` a sender waits for its message to be stored, for up to the
bus's ``send_deadline``; then, or when cancelled, it is told exactly what was done:

* its message had not been sent to Redis yet (while an outage is known, the writer holds
  what is queued): it is taken out, and never stored;
* it had been sent, and the answer is not in: it may have been stored (then at its place, in
  order); it is not sent again.

With ``durability="queued"`` a sender waits only for room in the outbox (for up to the
deadline); the writer stores what was queued, in order, however long Redis is away, and what
is still queued when the bus stops is stored within a deadline, or counted and logged.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import final

from anyio import Event, current_time, move_on_after, sleep, sleep_until

from .._codec import Codec
from .._exceptions import SerializationError, TransportError
from ._base import RecentPayloads
from ._client import RedisClient
from ._fence import Fence
from ._outgoing import Outgoing, State, failure

__all__ = ["StreamWriter"]

logger = logging.getLogger("anybus.redis")

#: Most messages, and about the most payload bytes, stored in one round trip.
WRITE_BATCH = 256
WRITE_BYTES = 1 << 20
#: Longest pause between two tries while Redis is away, in seconds.
MAX_RETRY_DELAY = 1.0


@final
class StreamWriter:
    """See the module docs."""

    def __init__(
        self,
        *,
        codec: Codec,
        sender: str,
        fence: Fence,
        deadline: float,
        queued: bool,
        outbox: int,
        own: RecentPayloads,
        where: str,
        connected: Callable[[], bool],
        wait_connected: Callable[[], Awaitable[object]],
    ) -> None:
        self._codec = codec
        self._connected = connected
        self._wait_connected = wait_connected
        self._sender = sender
        self._fence = fence
        self._deadline = deadline
        self._queued = queued
        self._outbox = outbox
        self._own = own
        self._where = where
        self._queue: deque[Outgoing] = deque()
        self._batch: list[Outgoing] = []  # on its way to Redis
        self._unsure: list[Outgoing] | None = None  # a batch whose answer was lost
        self._unsure_after = 0.0  # ask the fence about it only then (the client may send it)
        self._client: RedisClient | None = None  # while the writer runs
        self._wake: Event | None = None  # set when the writer has something to do
        self._room: Event | None = None  # set when the writer takes from a full outbox
        self._progress: Event | None = None  # set when messages are done
        self._open = self._closing = False
        self._next_seq = 1  # the number the next message taken gets
        self._guess = 0  # the last number guessed for a send
        self._renumbered = False
        self._submitted = self._settled = self._dropped = 0
        #: Messages stored.
        self.published = 0
        #: Sends that raised, or queued messages dropped when the bus stopped.
        self.failures = 0
        #: Sends that gave up while their message was on its way, and that was stored.
        self.raised_but_stored = 0

    def number(self) -> int:
        """A guess of the number the next message sent gets (the writer checks it)."""
        self._guess += 1
        return self._guess

    # --- senders ----------------------------------------------------------------------------

    async def send(self, item: Outgoing) -> None:
        """Store ``item``; return once it is stored (``durability="stored"``) or queued.

        Raises:
            TransportError: the bus is not running, or the message was not stored (or, queued,
                found no room in the outbox) within the deadline; the message says whether it
                may have been stored. Cancelled, a message not sent to Redis yet is never
                stored; one that was may have been (a line is logged saying so).
        """
        if not self._open:
            self.failures += 1
            raise TransportError(
                "the bus is not connected (run it first): delivered to local subscribers only"
            )
        if self._queued:
            await self._put(item)
            return
        until = current_time() + self._deadline
        try:
            client = self._client
            if client is not None and self._idle(client):
                await self._store_here(client, item)
            else:
                self._append(item)
            if not item.finished:
                with move_on_after(until - current_time()):
                    await item.wait()
        except BaseException:  # cancelled: the sender hears nothing, so the log says it
            if not item.finished:
                self._abandon(item, cancelled=True)
                if item.state is not State.WAITING:  # on its way: it may be stored
                    self.failures += 1
            raise
        if not item.finished:
            self._abandon(item, cancelled=False)
        if item.state is not State.STORED:
            self.failures += 1
            raise failure(item, self._where, self._deadline, self._fence.last_error)

    def _idle(self, client: RedisClient) -> bool:
        """Whether a sender may store its message itself: nothing is queued or on its way,
        and the client gives up on a request before the sender would."""
        return (
            not self._queue
            and not self._batch
            and self._unsure is None
            and self._deadline >= client.settings.request_timeout
            and self._connected()
        )

    async def _store_here(self, client: RedisClient, item: Outgoing) -> None:
        """Store ``item`` in the sender's own task; what a try whose answer is lost did is
        left to the writer to find out (and the sender waits for its word)."""
        self._submitted += 1
        batch = self._batch = [item]
        self._number(item)
        if self._renumbered:
            self._renumbered = False
            self._guess = self._next_seq - 1
        try:
            stored, last = await self._fence.store(client, item.seq, [item.payload])
        except TransportError:
            self._hand_over(batch, after=0.0)  # the client is done with the request
            return
        except BaseException:  # cancelled: the client may still send it, until it times out
            self._hand_over(batch, after=current_time() + client.settings.request_timeout)
            raise
        self._batch = []
        self._settle_batch(batch, stored, last)
        self._wake_writer()  # for what was queued meanwhile

    def _hand_over(self, batch: list[Outgoing], *, after: float) -> None:
        self._batch = []
        for item in batch:
            if not item.finished:
                item.state = State.UNCERTAIN
        self._unsure, self._unsure_after = batch, after
        self._wake_writer()

    async def _put(self, item: Outgoing) -> None:
        with move_on_after(self._deadline):
            while len(self._queue) >= self._outbox and self._open:
                room = self._room
                if room is None:
                    room = self._room = Event()
                await room.wait()  # cancelled here: queued nowhere
        if not self._open or len(self._queue) >= self._outbox:
            self.failures += 1
            if not self._open:
                raise TransportError(
                    "the bus stopped before the message was queued: delivered to local "
                    "subscribers only"
                )
            raise TransportError(
                f"redis at {self._where} stored nothing for {self._deadline} s and the outbox "
                f"({self._outbox} messages) is full: the message was not queued, and never "
                f"will be stored; delivered to local subscribers only"
            ) from self._fence.last_error
        self._append(item)

    def _append(self, item: Outgoing) -> None:
        self._queue.append(item)
        self._submitted += 1
        self._wake_writer()

    def _wake_writer(self) -> None:
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set()

    def _abandon(self, item: Outgoing, *, cancelled: bool) -> None:
        """The sender gave up on ``item``: it is not sent again, and, if it was not sent yet,
        never (the writer skips it)."""
        item.abandoned = True
        if item.state is not State.WAITING and cancelled:
            logger.info(
                "a send to redis at %s was cancelled while its message was being stored: it "
                "may have been stored (then in order); it is not sent again",
                self._where,
            )

    async def flush(self) -> None:
        """Wait until every message sent so far is stored (or failed).

        Raises:
            TransportError: if the bus stopped before some queued messages were stored.
        """
        target = self._submitted
        while self._settled < target and (self._open or self._batch or self._unsure):
            progress = self._progress
            if progress is None:
                progress = self._progress = Event()
            await progress.wait()
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            raise TransportError(
                f"the bus stopped before {dropped} queued message(s) were stored in redis at "
                f"{self._where}: they reached local subscribers only"
            )

    # --- the writer -------------------------------------------------------------------------

    def start(self) -> None:
        """Take sends from now on (for :meth:`run` to store)."""
        self._open, self._closing = True, False
        self._dropped = 0

    async def run(self, client: RedisClient) -> None:
        """Store what senders queue, a batch at a time, until :meth:`finish` and the outbox
        is empty (or cancelled)."""
        self._client = client
        delay = 0.05
        try:
            while True:
                unsure = self._unsure
                if unsure is not None:  # a sender's own try, whose answer was lost
                    await sleep_until(self._unsure_after)
                    stored, last = await self._fence.check(client)
                elif self._batch or not self._queue:  # a sender stores its own, or idle
                    if self._closing and not self._batch:
                        return
                    wake = self._wake = Event()
                    await wake.wait()
                    continue
                elif not self._closing and not self._connected():
                    # An outage is known: hold what is queued (what a reconnecting client is
                    # given, it may send after its sender gave up).
                    with move_on_after(0.1):
                        await self._wait_connected()
                    continue
                else:
                    unsure = self._batch = self._take()
                    if not unsure:
                        continue
                    try:
                        stored, last = await self._fence.store(
                            client, unsure[0].seq, [item.payload for item in unsure]
                        )
                        if delay > 0.05:
                            logger.info("storing in redis at %s works again", self._where)
                        delay = 0.05
                    except TransportError as exc:  # ask the fence what the try did
                        # Said once a streak (a server refusing every try says why).
                        log = logger.warning if delay == 0.05 else logger.debug
                        log("storing in redis at %s failed, trying again: %s", self._where, exc)
                        for item in unsure:
                            item.state = State.UNCERTAIN
                        stored, last = await self._fence.check(client)
                if not stored and last < unsure[0].seq:  # a failure, not a late copy's
                    await sleep(delay)
                    delay = min(delay * 2, MAX_RETRY_DELAY)
                self._batch, self._unsure = [], None
                self._settle_batch(unsure, stored, last)
        finally:
            self._client = None

    def finish(self) -> None:
        """Take no more sends; the writer ends once what is queued is stored."""
        self._open, self._closing = False, True
        for event in (self._wake, self._room, self._progress):
            if event is not None:
                event.set()
        self._wake = self._room = self._progress = None

    def close(self, why: str) -> None:
        """Fail what is still queued or on its way (saying whether it may have been stored)."""
        self.finish()
        left = [*self._batch, *(self._unsure or ()), *self._queue]
        left = [item for item in left if not item.abandoned and not item.finished]
        self._queue.clear()
        self._batch, self._unsure = [], None
        for item in left:
            if item.state is State.WAITING and not item.tries:
                item.finish(State.FAILED, TransportError(f"{why}; it was never stored"))
            else:
                item.finish(
                    State.FAILED, TransportError(f"{why}; it was being stored, so it may be")
                )
        if self._queued and left:
            self.failures += len(left)
            self._dropped += len(left)
            logger.warning(
                "%d queued message(s) not stored in redis at %s: the bus stopped first; they "
                "reached local subscribers only",
                len(left),
                self._where,
            )
        self._settle(len(left))

    def _number(self, item: Outgoing) -> bool:
        """Give ``item`` the next number (encoding it again if it was guessed wrong) and mark
        it as sent; False if it cannot be encoded again."""
        seq = self._next_seq
        if item.seq != seq:  # numbers moved (a send gave up, a try failed)
            self._renumbered = True
            try:
                item.payload = self._codec.encode(item.message, sender=self._sender, seq=seq)
            except SerializationError as exc:  # encoded before, so it cannot happen
                item.finish(State.FAILED, TransportError(f"cannot encode it again: {exc}"))
                return False
            item.seq = seq
        self._next_seq = seq + 1
        item.state = State.SENDING
        item.tries += 1
        self._own.add(item.payload)
        return True

    def _take(self) -> list[Outgoing]:
        """The next batch, numbered and marked as sent; what senders gave up on is left out."""
        batch: list[Outgoing] = []
        size = skipped = 0
        queue = self._queue
        while queue and len(batch) < WRITE_BATCH and size < WRITE_BYTES:
            item = queue.popleft()
            if item.abandoned or not self._number(item):
                skipped += 1
                continue
            batch.append(item)
            size += len(item.payload)
        self._settle(skipped)
        if self._renumbered:
            self._renumbered = False
            self._guess = self._next_seq - 1 + len(queue)  # what the queued ones will get
        room = self._room
        if room is not None and len(queue) < self._outbox:
            self._room = None
            room.set()
        return batch

    def _settle_batch(self, batch: list[Outgoing], stored: bool, last: int) -> None:
        """Report ``batch`` stored, or (not stored) give its numbers out again, after
        ``last`` (what the fence holds); what senders still wait for goes first."""
        if stored:
            self.published += len(batch)
            for item in batch:
                if item.abandoned:  # its sender gave up (it raised, or was cancelled)
                    self.raised_but_stored += 1
                    logger.info(
                        "a send to redis at %s that gave up while its message was on its way "
                        "was stored after all, at its place in order",
                        self._where,
                    )
                if not item.finished:
                    item.finish(State.STORED)
            self._settle(len(batch))
            return
        self._next_seq = max(last + 1, batch[0].seq)
        live = [item for item in batch if not item.abandoned and not item.finished]
        for item in live:
            item.state = State.WAITING
        self._queue.extendleft(reversed(live))
        for item in batch:
            if item.abandoned:
                item.finish(State.FAILED)
        self._settle(len(batch) - len(live))
        self._guess = self._next_seq - 1 + len(self._queue)

    def _settle(self, count: int) -> None:
        if count:
            self._settled += count
            progress = self._progress
            if progress is not None:
                self._progress = None
                progress.set()
