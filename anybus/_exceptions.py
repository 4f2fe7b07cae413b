"""The anybus exception hierarchy.

::

    AnybusError
     ├── BusStateError        an operation does not fit the bus's lifecycle
     ├── BusOverflowError     a bounded inbox is full under the "error" overflow policy
     ├── TransportError       a network transport failed (unreachable, timed out, refused)
     ├── SerializationError   a message cannot be encoded for the wire (sending side)
     ├── MessageRejected      bytes from the wire are refused (receiving side); .reason says why
     └── JobError             a job did not complete: .status and .response say how it ended
          ├── JobFailed       the handler raised JobFailed: a domain error (status "failed")
          ├── JobCancelled    the job was cancelled where it ran (status "cancelled")
          └── JobTimeout      no answer before the deadline (also a TimeoutError)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

from ._messages import JobStatus

__all__ = [
    "AnybusError",
    "BusOverflowError",
    "BusStateError",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "JobTimeout",
    "MessageRejected",
    "RejectionReason",
    "SerializationError",
    "TransportError",
    "WorkerUnavailable",
]

#: Why :class:`MessageRejected` refused some bytes; transports count rejections by reason.
RejectionReason = Literal[
    "malformed", "oversized", "unknown-type", "forged", "unsigned", "version", "invalid-fields"
]


class AnybusError(Exception):
    """Base class of every error raised by anybus."""


class BusStateError(AnybusError):
    """Raised when a call does not fit the bus's lifecycle state (for example ``start()`` with
    no running scope, or running a bus that already runs)."""


class BusOverflowError(AnybusError):
    """Raised by ``send()`` when a subscriber with the ``error`` overflow policy has a full
    inbox; every other subscriber still received the message.

    Attributes:
        subscribers: the names of the subscribers whose inbox was full.
    """

    def __init__(self, message_name: str, subscribers: Sequence[str]) -> None:
        self.subscribers = tuple(subscribers)
        names = ", ".join(repr(name) for name in self.subscribers)
        super().__init__(
            f"inbox full for subscriber(s) {names}: {message_name} was not queued for them; "
            f"raise their max_buffer, or choose another overflow policy"
        )


class TransportError(AnybusError):
    """Raised when a network transport cannot do what was asked: the server is unreachable,
    did not answer in time, or refused the command (chained from the client's own error)."""


class SerializationError(AnybusError):
    """Raised on the sending side when a message cannot be encoded for the wire: a field holds a
    value of an unsupported type, the message type is not registered (or is local-only), or the
    encoded message is larger than the size limit.

    Attributes:
        message_type: the name of the message class, or ``None`` when not about one message.
        field: the path of the offending value (``payload['items'][2]``), or ``None``.
    """

    def __init__(
        self, text: str, *, message_type: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(text)
        self.message_type = message_type
        self.field = field


class MessageRejected(AnybusError):
    """Raised on the receiving side when bytes from the wire are refused; nothing from them was
    imported, instantiated or delivered.

    Attributes:
        reason: one of :attr:`REASONS` — ``malformed`` (not an anybus envelope, or its body does
            not parse), ``oversized`` (larger than the size limit; not parsed at all),
            ``unknown-type`` (the type name is not registered), ``forged`` (bad signature, or
            signed with a key id this side does not know), ``unsigned`` (no signature where
            keys are configured), ``version`` (an envelope format this side does not read) or
            ``invalid-fields`` (the fields do not fit the registered class).
        detail: what was wrong, for the log line.
    """

    #: Every possible :attr:`reason`.
    REASONS: tuple[RejectionReason, ...] = get_args(RejectionReason)

    def __init__(self, reason: RejectionReason, detail: str) -> None:
        if reason not in self.REASONS:
            raise ValueError(f"reason must be one of {self.REASONS!r}, got {reason!r}")
        super().__init__(reason, detail)
        self.reason: RejectionReason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"message rejected ({self.reason}): {self.detail}"


class JobError(AnybusError):
    """Raised on the calling side when a job did not complete.

    A plain ``JobError`` means the handler raised an unexpected exception (status ``error``) or
    the worker announced an error of its own (a :class:`~anybus.BusWorkerErrorMessage`) while
    the job was outstanding; the subclasses cover the other endings.

    Attributes:
        job_id: the job's id.
        worker: the name of the worker the job was sent to.
        status: how the worker said the job ended, or ``None`` when it never said (a timeout, a
            worker error).
        response: the response dict the worker sent (``{}`` if none); for ``failed`` and
            ``error`` it holds ``"error"``, the worker's description of what went wrong.
    """

    def __init__(
        self,
        text: str,
        *,
        job_id: str = "",
        worker: str = "",
        status: JobStatus | None = None,
        response: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(text)
        self.job_id = job_id
        self.worker = worker
        self.status = status
        self.response: dict[str, Any] = dict(response or {})


class JobFailed(JobError):
    """A job ended with status ``failed``: its handler reported a domain error.

    Raise it in a job handler to fail the job on purpose — ``raise JobFailed("no such
    file", response={"path": path})`` — and the caller's ``request()`` or ``job.result()``
    raises a ``JobFailed`` with the same text, ``status`` ``failed`` and the response (plus
    ``"error"``: the text).
    """


class JobCancelled(JobError):
    """A job ended with status ``cancelled``: it was cancelled where it ran — by a
    :class:`~anybus.BusJobCancelMessage` from someone else, or because its worker stopped."""


class JobTimeout(JobError, TimeoutError):
    """No answer came before the deadline given to ``request(timeout=...)``.

    The job was cancelled at the worker (a :class:`~anybus.BusJobCancelMessage` was sent);
    ``status`` is ``None``.
    """


class WorkerUnavailable(JobError):
    """The worker a job is for is not there: none announced itself in time (the request was
    not sent), or the worker was declared gone — it stopped, restarted, or its heartbeats
    stopped — while the job was outstanding. ``status`` is ``None``.

    See :func:`~anybus.wait_for_worker` and the ``presence`` argument of
    :func:`~anybus.request`.
    """
