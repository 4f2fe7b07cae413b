"""The outbox of a Postgres bus: sends stored in batches, in order, each told what happened.

Every ``send()`` puts its payload in the outbox and waits. One writer task takes what is
waiting (up to a batch), stores it with one call of the schema's ``publish`` function (one
transaction, one notification), and tells each sender. A sender gives up after the bus's
``send_deadline``, or when cancelled; then it is told exactly what was done:

* its payload had not been sent to the server yet (it was waiting, or the writer was still
  waiting for a connection): it is taken out, and never stored;
* its payload had been sent: it may have been stored (then at its place, in order), or may
  still be if the statement is still running; it is never sent again — a payload whose
  sender gave up is not tried again, and a retried batch stores nothing twice (sender and
  sequence are unique).

**Store numbers.** The outbox numbers each payload as it enters (:meth:`Outbox.send`, with
no checkpoint between numbering and queueing), so payloads wait, and are stored, in the
order of their numbers, whatever the senders awaited before. ``publish`` relies on it: it
stores only the numbers above the sender's highest stored one. (The envelope's own sequence
number, given before the message reaches the local subscribers, is not that number: two
senders can reach the outbox in the other order.)

**The hand-over.** A send that finds the writer idle (nothing queued or on its way) and its
connection open, with ``publish`` prepared there, sends the statement itself, in its own task
(:meth:`PgConnection.start <anybus.postgres._client.PgConnection.start>`), and the writer
only collects the answer: one task switch less between a handler's ``send()`` and the server,
on every hop of a ping-pong. Nothing else changes: the payload is marked as sent from then on.

A cancelled sender hears nothing (it is cancelled); when its payload had been sent, the
outbox logs that it may have been stored.

**Queued** (``durability="queued"``): a sender waits only for room in the outbox (``capacity``
payloads, for up to the deadline), then returns; the writer stores what queued up, in order,
batch after batch, however long the server is away, and counts and logs a batch the server
refuses. When the bus stops, what is still queued is stored within a deadline
(:meth:`Outbox.drain`), and what is left then is counted and logged. :meth:`Outbox.flush` waits
until what was sent so far is stored.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from enum import Enum, auto
from typing import final

from anyio import Event, move_on_after, sleep

from .._exceptions import TransportError
from ._client import DatabaseError, PgConnection

__all__ = ["Outbox", "Outgoing"]

logger = logging.getLogger("anybus.postgres")

#: Longest pause between two tries of a batch while the server is away, in seconds.
MAX_RETRY_DELAY = 1.0


class _State(Enum):
    WAITING = auto()  # in the outbox, or taken by the writer but not sent to the server yet
    SENDING = auto()  # in a statement running on the server: may be stored
    UNCERTAIN = auto()  # sent in a statement that broke on the way: may have been stored
    STORED = auto()
    FAILED = auto()


@final
class Outgoing:
    """One payload on its way, and what became of it."""

    __slots__ = ("abandoned", "done", "error", "payload", "seq", "state", "tries")

    def __init__(self, payload: bytes) -> None:
        self.seq = 0  # its store number: given by Outbox.send
        self.payload = payload
        self.state = _State.WAITING
        self.tries = 0  # statements it was sent in
        self.done = Event()
        self.error: TransportError | None = None
        self.abandoned = False  # its sender gave up

    def finish(self, state: _State, error: TransportError | None = None) -> None:
        self.state = state
        self.error = error
        self.done.set()


Connector = Callable[[], Awaitable[PgConnection]]


@final
class Outbox:
    """See the module docs."""

    def __init__(
        self,
        *,
        publish: str,
        channel: str,
        sender: str,
        where: str,
        deadline: float,
        batch: int,
        queued: bool = False,
        capacity: int = 10_000,
        carry: int = 0,
        stored: Callable[[int, int], None] | None = None,
    ) -> None:
        self._queued = queued
        #: The bytes of bodies a notification may carry (0: none); see ``_upkeep``.
        self.carry = carry
        self._stored = stored  # told the ids of each batch stored (first, last)
        self._capacity = capacity
        self._room: Event | None = None  # set when the writer takes a batch (queued sends wait)
        self._progress: Event | None = None  # set when a batch is settled (flush() waits)
        self._publish = publish
        self._channel = channel
        self._sender = sender
        self._where = where
        self._deadline = deadline
        self._batch_size = batch
        self._queue: deque[Outgoing] = deque()
        self._batch: list[Outgoing] = []
        self._wake = Event()
        self._parked = False  # the writer waits for sends
        self._current: Callable[[], PgConnection | None] = lambda: None
        self._started: PgConnection | None = None  # the batch's statement, handed over
        self._open = False
        self._numbered = 0  # the last store number given, over every run of the bus
        self._last_error: TransportError | None = None
        #: Messages stored.
        self.published = 0
        #: Sends that raised (the message reached local subscribers only, or may have), and
        #: queued messages refused or left when the bus stopped.
        self.failures = 0
        self._dropped = 0  # queued messages left when the bus stopped, for flush() to say
        self._unsure = 0  # ... of which were being stored, so may have been

    async def send(self, item: Outgoing) -> None:
        """Store ``item``; return once it is stored (queued: once it is queued).

        Raises:
            TransportError: the bus is not running, the server refused it, or it was not
                stored (queued: found no room in the outbox) within the deadline; the
                message says whether it may have been. Cancelled, it is stored only if it
                had been sent to the server already (then a line is logged saying that it
                may have been stored); queued, only if it had been queued.
        """
        if self._queued:
            await self._wait_for_room()  # cancelled here: queued nowhere
        if not self._open:
            self.failures += 1
            raise TransportError(
                "the bus is not connected (run it first, or it stopped): delivered to local "
                "subscribers only"
            )
        # Numbered and queued at once (no checkpoint): the queue holds numbers in order.
        self._numbered += 1
        item.seq = self._numbered
        self._queue.append(item)
        if self._parked and not self._batch and len(self._queue) == 1:
            self._hand_over(item)
        self._wake.set()
        if self._queued:
            return
        try:
            with move_on_after(self._deadline):
                await item.done.wait()
        except BaseException:  # cancelled: the sender hears nothing, so the log says it
            if not item.done.is_set():
                self._abandon(item, cancelled=True)
            elif item.state is _State.STORED:  # stored before the cancellation came through
                logger.info(
                    "a send to postgres at %s was cancelled after its message was stored",
                    self._where,
                )
            raise
        if not item.done.is_set():
            self._abandon(item, cancelled=False)
        if item.state is _State.STORED:
            return
        self.failures += 1
        if item.error is not None:
            raise item.error
        told = f"postgres at {self._where} did not"
        if item.state is _State.WAITING:
            raise TransportError(
                f"{told} store the message within {self._deadline} s, and never will; "
                f"delivered to local subscribers only"
            ) from self._last_error
        if item.state is _State.SENDING:
            fate = "it was being stored when the deadline passed, so it may be"
        else:
            fate = "the connection broke while it was being stored, so it may have been"
        raise TransportError(
            f"{told} confirm the message within {self._deadline} s: {fate} (then the other "
            f"buses get it in order); it is not sent again"
        ) from self._last_error

    async def _wait_for_room(self) -> None:
        with move_on_after(self._deadline):
            while self._open and len(self._queue) + len(self._batch) >= self._capacity:
                room = self._room
                if room is None:
                    room = self._room = Event()
                await room.wait()
            return
        self.failures += 1
        raise TransportError(
            f"the outbox ({self._capacity} messages) stayed full for {self._deadline} s: the "
            f"message was not queued, and never will be; delivered to local subscribers only"
        )

    async def flush(self) -> None:
        """Wait until every message sent so far is stored (or failed).

        Raises:
            TransportError: if the bus stopped before some queued messages were stored.
        """
        target = self._numbered
        while (first := self._first_pending()) is not None and first <= target:
            progress = self._progress
            if progress is None:
                progress = self._progress = Event()
            await progress.wait()
        if self._dropped:
            dropped, unsure, self._dropped, self._unsure = self._dropped, self._unsure, 0, 0
            raise TransportError(
                f"the bus stopped before {dropped} queued message(s) were stored in postgres "
                f"at {self._where}{_maybe(unsure)}: they reached local subscribers only"
            )

    def _first_pending(self) -> int | None:
        """The lowest store number still waiting or on its way (they go in order)."""
        for item in self._batch:
            if not item.abandoned:  # its sender raised already
                return item.seq
        return self._queue[0].seq if self._queue else None

    def _abandon(self, item: Outgoing, *, cancelled: bool) -> None:
        """The sender gave up on ``item`` (deadline or cancellation): it is not sent again,
        and, if it was not sent yet, never."""
        item.abandoned = True
        if item.state is not _State.WAITING:
            if not cancelled:
                return  # the sender's error says it
            logger.info(
                "a send to postgres at %s was cancelled while its message was being stored: "
                "it may have been stored (then in order); it is not sent again",
                self._where,
            )
        elif item in self._queue:
            self._queue.remove(item)
            self._settle()
        # else: in the writer's batch, which leaves it out before it sends

    async def run(self, connection: Connector, current: Callable[[], PgConnection | None]) -> None:
        """The writer: store what senders wait for, a batch at a time, until cancelled.
        ``current()`` is its connection if it has one open (not lost), for the hand-over."""
        self._open = True
        self._current = current
        delay = 0.05
        try:
            while True:
                while not (self._batch or self._queue):
                    self._wake = Event()
                    self._parked = True
                    try:
                        await self._wake.wait()
                    finally:
                        self._parked = False
                stored = await self._store_next(connection)
                if stored:
                    delay = 0.05
                elif stored is not None:  # the try broke on the way: again, later
                    await sleep(delay)
                    delay = min(delay * 2, MAX_RETRY_DELAY)
        finally:
            self._open = False
            self._room = self._signal(self._room)

    def _hand_over(self, item: Outgoing) -> None:
        """Send ``item``'s statement to the server now, in its sender's task, when the writer
        is idle and its connection is open and has ``publish`` prepared: a task switch less
        on the way (the writer only collects the answer). Otherwise, the writer sends it."""
        conn = self._current()
        if conn is not None and conn.start(self._publish, self._parameters([item])):
            self._queue.popleft()  # item, alone in the queue
            self._batch = [item]
            item.state = _State.SENDING
            item.tries += 1
            self._started = conn

    def _parameters(self, batch: list[Outgoing]) -> list[object]:
        seqs, payloads = [item.seq for item in batch], [item.payload for item in batch]
        return [self._channel, self._sender, seqs, payloads, self.carry]

    async def drain(self, connection: Connector) -> None:
        """Store what is still queued (the bus stopped: no send is taken meanwhile); the
        caller bounds it with a deadline."""
        while self._queued and (self._batch or self._queue):
            if await self._store_next(connection) is False:
                await sleep(0.05)

    async def _store_next(self, connection: Connector) -> bool | None:
        """Store the batch (taking the next one from the queue if there is none); return
        True if it was stored, False if the try broke on the way (the batch stays, to be
        tried again), None if it was refused, or left nothing to send."""
        conn, self._started = self._started, None
        if conn is not None:  # handed over: sent already, in the batch's one item's task
            batch = self._batch
            answer = conn.collect()
        else:
            if not self._batch:
                while self._queue and len(self._batch) < self._batch_size:
                    self._batch.append(self._queue.popleft())
            conn = await connection()  # patient: waits while the server is away
            # No checkpoint from here to the statement: what a sender gave up on meanwhile
            # is left out, and what is sent is marked as such.
            batch = self._batch = [item for item in self._batch if not item.abandoned]
            if not batch:
                self._settle()
                return None
            for item in batch:
                item.state = _State.SENDING
                item.tries += 1
            answer = conn.fetch(self._publish, self._parameters(batch))
        try:
            rows = await answer
        except DatabaseError as exc:
            logger.warning("postgres refused to store %d message(s): %s", len(batch), exc)
            if self._queued:  # nobody waits to be told
                self.failures += len(batch)
            for item in batch:
                item.finish(_State.FAILED, _refused(item, exc))
            self._batch = []
            self._settle()
            return None
        except TransportError as exc:
            self._last_error = exc
            for item in batch:
                item.state = _State.UNCERTAIN
            return False
        else:
            self._last_error = None
            self.published += len(batch)
            count, last = rows[0]
            if count and self._stored is not None:
                self._stored(last - count + 1, last)
            for item in batch:
                item.finish(_State.STORED)
        self._batch = []
        self._settle()
        return True

    def _settle(self) -> None:
        """The batch is done with: wake flush(), and a queued send waiting for room."""
        self._progress = self._signal(self._progress)
        self._room = self._signal(self._room)

    @staticmethod
    def _signal(event: Event | None) -> None:
        if event is not None:
            event.set()

    def close(self, why: str) -> None:
        """Refuse new sends, and fail those still waiting (saying whether they may have been
        stored); queued messages still there are counted and logged."""
        self._open = False
        self._started = None  # never collected: closing its connection drops its answer
        left = [*self._batch, *self._queue]
        for item in left:
            if item.state is _State.WAITING:
                item.finish(_State.FAILED, TransportError(f"{why}; it was never stored"))
            else:
                item.finish(
                    _State.FAILED,
                    TransportError(f"{why}; it was being stored, so it may have been"),
                )
        self._queue.clear()
        self._batch = []
        if self._queued and left:
            unsure = sum(1 for item in left if item.tries)
            self.failures += len(left)
            self._dropped += len(left)
            self._unsure += unsure
            logger.warning(
                "%d queued message(s) not stored in postgres at %s%s: the bus stopped first; "
                "they reached local subscribers only",
                len(left),
                self._where,
                _maybe(unsure),
            )
        self._room = self._signal(self._room)
        self._progress = self._signal(self._progress)


def _maybe(unsure: int) -> str:
    if not unsure:
        return ""
    return f" ({unsure} of them were being stored, so they may have been, then in order)"


def _refused(item: Outgoing, error: DatabaseError) -> DatabaseError:
    if item.tries > 1:
        fate = "an earlier try, broken on the way, may have stored it"
    else:
        fate = "it was not stored"
    return DatabaseError(f"{error}: {fate}; delivered to local subscribers only", error.sqlstate)
