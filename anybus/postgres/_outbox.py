"""The outbox of a Postgres bus: sends stored in batches, in order, each told what happened.

Every ``send()`` puts its payload in the outbox and waits. One writer task takes what is
waiting (up to a batch), stores it with one call of the schema's ``publish`` function (one
transaction, one notification), and tells each sender. A sender gives up after the bus's
``send_deadline``, or when cancelled; then it is told exactly what was done:

* its payload was still waiting: it is taken out, and never stored;
* its payload was being stored when the connection broke: it may have been stored (then at
  its place, in order), and it is never stored later — a payload whose sender gave up is not
  tried again, and a retried batch stores nothing twice (sender and sequence are unique).
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
    WAITING = auto()  # in the outbox
    SENDING = auto()  # in a batch being stored
    UNCERTAIN = auto()  # in a batch whose storing failed on the way: may be stored
    STORED = auto()
    FAILED = auto()


@final
class Outgoing:
    """One payload on its way, and what became of it."""

    __slots__ = ("abandoned", "done", "error", "payload", "seq", "state")

    def __init__(self, seq: int, payload: bytes) -> None:
        self.seq = seq
        self.payload = payload
        self.state = _State.WAITING
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
        self, *, publish: str, channel: str, sender: str, deadline: float, batch: int
    ) -> None:
        self._publish = publish
        self._channel = channel
        self._sender = sender
        self._deadline = deadline
        self._batch_size = batch
        self._queue: deque[Outgoing] = deque()
        self._batch: list[Outgoing] = []
        self._wake = Event()
        self._open = False
        self._last_error: TransportError | None = None
        #: Messages stored.
        self.published = 0
        #: Sends that raised (the message reached local subscribers only, or may have).
        self.failures = 0

    async def send(self, item: Outgoing) -> None:
        """Store ``item``; return once it is stored.

        Raises:
            TransportError: the bus is not running, the server refused it, or it was not
                stored within the deadline; the message says whether it may have been.
                Cancelled, it is stored only if it was being stored already.
        """
        if not self._open:
            self.failures += 1
            raise TransportError(
                "the bus is not connected (run it first): delivered to local subscribers only"
            )
        self._queue.append(item)
        self._wake.set()
        try:
            with move_on_after(self._deadline):
                await item.done.wait()
        finally:
            if not item.done.is_set():
                item.abandoned = True
                if item.state is _State.WAITING:
                    self._queue.remove(item)
        if item.state is _State.STORED:
            return
        self.failures += 1
        if item.error is not None:
            raise item.error
        if item.state is _State.WAITING:
            raise TransportError(
                f"postgres did not store the message within {self._deadline} s, and never "
                f"will; delivered to local subscribers only"
            ) from self._last_error
        raise TransportError(
            f"postgres did not confirm the message within {self._deadline} s: the connection "
            f"broke while it was being stored, so it may have been (then the other buses get "
            f"it in order); it will not be stored later"
        ) from self._last_error

    async def run(self, connection: Connector) -> None:
        """The writer: store what senders wait for, a batch at a time, until cancelled."""
        self._open = True
        delay = 0.05
        try:
            while True:
                if not self._batch:
                    while not self._queue:
                        self._wake = Event()
                        await self._wake.wait()
                    while self._queue and len(self._batch) < self._batch_size:
                        item = self._queue.popleft()
                        item.state = _State.SENDING
                        self._batch.append(item)
                batch = self._batch = [item for item in self._batch if not item.abandoned]
                if not batch:
                    continue
                try:
                    conn = await connection()
                    await conn.fetch(
                        self._publish,
                        [
                            self._channel,
                            self._sender,
                            [item.seq for item in batch],
                            [item.payload for item in batch],
                        ],
                    )
                except DatabaseError as exc:
                    logger.warning("postgres refused to store %d message(s): %s", len(batch), exc)
                    for item in batch:
                        item.finish(_State.FAILED, exc)
                    self._batch = []
                    continue
                except TransportError as exc:
                    self._last_error = exc
                    for item in batch:
                        item.state = _State.UNCERTAIN
                    await sleep(delay)
                    delay = min(delay * 2, MAX_RETRY_DELAY)
                    continue
                delay = 0.05
                self.published += len(batch)
                for item in batch:
                    item.finish(_State.STORED)
                self._batch = []
        finally:
            self._open = False

    def close(self, why: str) -> None:
        """Refuse new sends, and fail those still waiting (saying whether they may have been
        stored)."""
        self._open = False
        for item in self._queue:
            item.finish(_State.FAILED, TransportError(f"{why}; it was never stored"))
        self._queue.clear()
        for item in self._batch:
            item.finish(
                _State.FAILED,
                TransportError(f"{why}; it was being stored, so it may have been"),
            )
        self._batch = []
