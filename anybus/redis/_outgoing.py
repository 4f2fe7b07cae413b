"""One message on its way to a stream, what became of it, and what its sender is told."""

from __future__ import annotations

from enum import Enum, auto
from typing import final

from anyio import Event

from .._exceptions import TransportError
from .._messages import BusMessage

__all__ = ["Outgoing", "State", "failure"]


class State(Enum):
    """Where an outgoing message is."""

    WAITING = auto()  # in the outbox: not sent to Redis (again)
    SENDING = auto()  # in the batch on its way: may be stored
    UNCERTAIN = auto()  # in a batch whose answer was lost: may have been stored
    STORED = auto()
    FAILED = auto()


@final
class Outgoing:
    """One message on its way to the stream, and what became of it."""

    __slots__ = (
        "_done",
        "abandoned",
        "error",
        "finished",
        "message",
        "payload",
        "seq",
        "state",
        "tries",
    )

    def __init__(self, message: BusMessage, payload: bytes, seq: int) -> None:
        self.message = message
        self.payload = payload  # encoded with ``seq``
        self.seq = seq  # a guess until the writer takes it; then its number
        self.state = State.WAITING
        self.tries = 0  # batches it was sent in
        self.finished = False  # stored, or failed: its sender may be told
        self._done: Event | None = None  # made only for a sender that waits
        self.error: TransportError | None = None
        self.abandoned = False  # its sender gave up (deadline, cancellation)

    def finish(self, state: State, error: TransportError | None = None) -> None:
        self.state = state
        self.error = error
        self.finished = True
        if self._done is not None:
            self._done.set()

    async def wait(self) -> None:
        """Return once it is :attr:`finished`."""
        if not self.finished:
            if self._done is None:
                self._done = Event()
            await self._done.wait()


def failure(
    item: Outgoing, where: str, deadline: float, cause: TransportError | None
) -> TransportError:
    """The error for the sender of ``item``, which was not reported stored within
    ``deadline``: whether it may have been (the wording of PostgresBus's outbox)."""
    if item.error is not None:
        return item.error
    told = f"redis at {where} did not"
    if item.state is State.WAITING:
        if item.tries:
            fate = ": a try whose answer was lost was found not stored, and it is not sent again"
        else:
            fate = ", and never will"
        error = TransportError(
            f"{told} store the message within {deadline} s{fate}; delivered to local "
            f"subscribers only"
        )
    else:
        if item.state is State.SENDING:
            fate = "it was being stored when the deadline passed, so it may be"
        elif cause is not None:
            fate = f"storing it failed ({cause}), so it may have been"
        else:
            fate = "the connection broke while it was being stored, so it may have been"
        error = TransportError(
            f"{told} confirm the message within {deadline} s: {fate} (then the other buses "
            f"get it in order); it is not sent again"
        )
    error.__cause__ = cause
    return error
