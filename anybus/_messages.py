"""The bus message hierarchy.

Every message is a keyword-only dataclass. Its class decides how it travels:

* :class:`BusDataMessage` — normal priority, handled in send order;
* :class:`BusSystemMessage` — high priority, overtakes queued data messages and is handled
  even while the subscriber's data handler is busy;
* :class:`BusLocalMessage` (a mixin) — never leaves the process.
"""

import itertools
import os
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "BusActivateWorkerMessage",
    "BusCancelMessage",
    "BusCancelWorkerMessage",
    "BusDataMessage",
    "BusDeactivateWorkerMessage",
    "BusEndMessage",
    "BusEndWorkerMessage",
    "BusJobCancelMessage",
    "BusJobRequestMessage",
    "BusJobResponseMessage",
    "BusJobResponseUrgentMessage",
    "BusJobStreamDataMessage",
    "BusJobStreamEndMessage",
    "BusJobStreamStartMessage",
    "BusJobUpdateMessage",
    "BusJobUpdateRequestMessage",
    "BusJobUpdateUrgentMessage",
    "BusLocalMessage",
    "BusMessage",
    "BusSystemMessage",
    "BusWorkerErrorMessage",
    "BusWorkerLocalErrorMessage",
    "BusWorkerGoodbyeMessage",
    "BusWorkerPresenceMessage",
    "BusWorkerPresenceQueryMessage",
    "BusWorkerReadyMessage",
    "JobStatus",
]

# Message ids are "<process prefix>-<counter>". The prefix is 64 random bits, drawn again in a
# forked child, so ids stay unique across processes without paying for a uuid4 per message.
_id_prefix = secrets.token_hex(8)
_id_counter = itertools.count(1)
_name_counters: "dict[type[Any], itertools.count[int]]" = {}


def _reseed_after_fork() -> None:
    global _id_prefix, _id_counter
    _id_prefix = secrets.token_hex(8)
    _id_counter = itertools.count(1)


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
    os.register_at_fork(after_in_child=_reseed_after_fork)


class JobStatus(StrEnum):
    """How a job ended, as reported in a job response."""

    #: The job ran to the end; the response holds its result.
    COMPLETED = "completed"
    #: The job was cancelled (a job cancel message, or its worker stopping) before it ended.
    CANCELLED = "cancelled"
    #: The job's handler reported a failure of the job itself (``JobFailed``).
    FAILED = "failed"
    #: The job broke: its handler raised an unexpected exception, the worker has no handler
    #: for it, or the worker reported an error while the job was outstanding.
    ERROR = "error"


@dataclass(kw_only=True)
class BusMessage:
    """Base class of every message carried by a bus.

    Subclass :class:`BusDataMessage` or :class:`BusSystemMessage` rather than this class: the
    subclass decides the priority. A plain ``BusMessage`` subclass travels as data.

    Attributes:
        source: name of the worker or component that sent the message.
        target: name of the intended recipient, or ``None`` for a broadcast. The bus delivers
            every message to every subscriber; subscribers filter on ``target`` themselves
            (for example in :meth:`~anybus.BusSubscriber.accepts_bus_message`).
        id: identifier unique across processes, assigned on creation.
        name: readable name, the class name and a per-class count (``BusDataMessage#3``).

    Two messages are equal when all their fields are, ``id`` included: a message equals its
    own copy after a trip over the network, never another message with the same content.
    """

    id: str = field(init=False)
    name: str = field(init=False)
    source: str
    target: str | None = None

    def __post_init__(self) -> None:
        cls = type(self)
        counter = _name_counters.get(cls)
        if counter is None:
            counter = _name_counters[cls] = itertools.count(1)
        self.id = f"{_id_prefix}-{next(_id_counter)}"
        self.name = f"{cls.__name__}#{next(counter)}"

    def __str__(self) -> str:
        return f"{self.name} (source={self.source}, target={self.target})"


class BusLocalMessage:
    """Mixin: the message stays in this process and is never handed to a transport."""

    __slots__ = ()


@dataclass(kw_only=True)
class BusDataMessage(BusMessage):
    """Normal-priority message, handled by each subscriber one at a time in send order."""


@dataclass(kw_only=True)
class BusSystemMessage(BusMessage):
    """High-priority message.

    It overtakes every data message that a subscriber has not started handling, and it is
    handled even while that subscriber's data handler is busy.
    """


# --- Worker lifecycle -------------------------------------------------------------------------


@dataclass(kw_only=True)
class BusActivateWorkerMessage(BusDataMessage):
    """Tells the targeted worker to become active, with optional activation arguments."""

    args: dict[str, Any] | None = None


@dataclass(kw_only=True)
class BusDeactivateWorkerMessage(BusDataMessage):
    """Tells the targeted worker to become inactive."""


@dataclass(kw_only=True)
class BusEndMessage(BusDataMessage):
    """Asks the runner to end the session gracefully."""

    reason: str | None = None


@dataclass(kw_only=True)
class BusEndWorkerMessage(BusDataMessage):
    """Tells the targeted worker to finish its work gracefully."""

    reason: str | None = None


@dataclass(kw_only=True)
class BusCancelMessage(BusSystemMessage):
    """Asks the runner to cancel the session at once."""

    reason: str | None = None


@dataclass(kw_only=True)
class BusCancelWorkerMessage(BusSystemMessage):
    """Tells the targeted worker to cancel its work at once."""

    reason: str | None = None


@dataclass(kw_only=True)
class BusWorkerReadyMessage(BusDataMessage):
    """Announces that a worker is ready.

    Attributes:
        runner: name of the runner managing the worker.
        parent: name of the parent worker, or ``None`` for a root worker.
        active: whether the worker started active.
        bridged: whether the worker is bridged.
        started_at: Unix timestamp of when the worker became ready.
    """

    runner: str
    parent: str | None = None
    active: bool = False
    bridged: bool = False
    started_at: float | None = None


@dataclass(kw_only=True)
class BusWorkerErrorMessage(BusSystemMessage):
    """Reports an error of a root worker; it may cross the network."""

    error: str


@dataclass(kw_only=True)
class BusWorkerLocalErrorMessage(BusSystemMessage, BusLocalMessage):
    """Reports an error of a child worker to its parent; it never leaves the process."""

    error: str


# --- Presence ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class BusWorkerPresenceMessage(BusSystemMessage):
    """A worker is alive: sent when it is ready, then as a heartbeat.

    Addressed to each bus's presence hub (``anybus-presence``).

    Attributes:
        worker: the worker's name.
        incarnation: a token of this run of the worker.
        pool: the pool it is a member of, or ``None``.
        jobs: the job names it handles (``""``: requests that name none).
        concurrency: how many jobs it runs at once.
        load: jobs running or queued.
        heartbeat: seconds until its next heartbeat.
        process: ``host:pid`` of its process.
        sent_at: wall-clock time of sending (``time.time()``).
    """

    worker: str
    incarnation: str
    pool: str | None = None
    jobs: list[str] = field(default_factory=list)
    concurrency: int = 1
    load: int = 0
    heartbeat: float = 1.0
    process: str = ""
    sent_at: float = 0.0


@dataclass(kw_only=True)
class BusWorkerPresenceQueryMessage(BusSystemMessage):
    """Asks every worker to announce itself now (sent by a presence hub as it starts)."""


@dataclass(kw_only=True)
class BusWorkerGoodbyeMessage(BusDataMessage):
    """A worker stopped. A data message, so that it comes after the worker's last answers
    (the jobs still outstanding at its callers then fail, rather than the answers).

    Attributes:
        worker: the worker's name.
        incarnation: the token of the run that stopped.
    """

    worker: str
    incarnation: str


# --- Jobs -------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class BusJobRequestMessage(BusDataMessage):
    """Asks a worker to start a job, optionally routed to a named job handler."""

    job_id: str
    job_name: str | None = None
    payload: dict[str, Any] | None = None


@dataclass(kw_only=True)
class BusJobResponseMessage(BusDataMessage):
    """A worker's answer when its job has ended."""

    job_id: str
    status: JobStatus
    response: dict[str, Any] | None = None


@dataclass(kw_only=True)
class BusJobResponseUrgentMessage(BusSystemMessage):
    """Like :class:`BusJobResponseMessage`, delivered with system priority."""

    job_id: str
    status: JobStatus
    response: dict[str, Any] | None = None


@dataclass(kw_only=True)
class BusJobUpdateMessage(BusDataMessage):
    """Progress of a running job."""

    job_id: str
    update: dict[str, Any] | None = None


@dataclass(kw_only=True)
class BusJobUpdateUrgentMessage(BusSystemMessage):
    """Like :class:`BusJobUpdateMessage`, delivered with system priority."""

    job_id: str
    update: dict[str, Any] | None = None


@dataclass(kw_only=True)
class BusJobUpdateRequestMessage(BusDataMessage):
    """Asks a worker to report the progress of a job."""

    job_id: str


@dataclass(kw_only=True)
class BusJobCancelMessage(BusSystemMessage):
    """Cancels a running job; as a system message it overtakes queued work."""

    job_id: str
    reason: str | None = None


@dataclass(kw_only=True)
class BusJobStreamStartMessage(BusDataMessage):
    """Opens a streamed job response, with optional metadata."""

    job_id: str
    data: dict[str, Any] | None = None


@dataclass(kw_only=True)
class BusJobStreamDataMessage(BusDataMessage):
    """One chunk of a streamed job response."""

    job_id: str
    data: dict[str, Any] | None = None


@dataclass(kw_only=True)
class BusJobStreamEndMessage(BusDataMessage):
    """Closes a streamed job response, with optional final metadata."""

    job_id: str
    data: dict[str, Any] | None = None
