"""Where an instrumentation (:mod:`anybus.otel`) plugs into the bus; free when none does.

Nothing here imports OpenTelemetry. The core offers four things, all of them off the hot path
while no instrumentation is installed:

* the trace context that travels with a message (:class:`TraceContext`), kept on the message
  object itself (under :data:`TRACE_KEY` in its ``__dict__``, outside its dataclass fields, so
  it changes neither equality nor the encoded fields) and carried by the wire envelope;
* :data:`state`'s ``handler_wrapper``, which a subscription's worker consults when it starts,
  and again when it wakes from an empty inbox to a new ``generation`` (never per message), to
  wrap its subscriber's handler;
* :data:`state`'s ``jobs``, which the jobs modules ask at the start of each job, and
  ``from_thread``, which a :class:`~anybus.BusPortal` asks in the calling thread;
* :func:`buses`: every bus object alive in this process, for metrics read off
  ``statistics()``.

The send path is instrumented by the instrumentation itself (it routes ``WorkerBus.send``
through a wrapper of its own while installed), so that the loop of plain sends pays nothing.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, Protocol, final

from ._messages import BusMessage

__all__ = [
    "TRACE_KEY",
    "CallerJobTrace",
    "Handler",
    "WorkerJobTrace",
    "JobTracer",
    "TraceContext",
    "buses",
    "register_bus",
    "state",
    "trace_of",
]

#: The key of a message's trace context in the message's ``__dict__``.
TRACE_KEY: Final = "_anybus_trace"

#: ``await call()``: what a thread hands the event loop.
_Call = Callable[[], Awaitable[Any]]

#: ``await handler(message)``: a subscriber's ``on_bus_message``.
Handler = Callable[[BusMessage], Awaitable[None]]


@final
@dataclass(frozen=True, slots=True)
class TraceContext:
    """The trace context a message carries from its ``send()`` to its handlers.

    Attributes:
        headers: the propagator's carrier (W3C ``traceparent``, and ``tracestate`` when
            there is one), as text.
        sent_ns: when it was sent, in nanoseconds since the epoch by the sender's clock.
    """

    headers: Mapping[str, str]
    sent_ns: int


def trace_of(message: BusMessage) -> TraceContext | None:
    """The trace context ``message`` carries, if it was sent (or received) while tracing."""
    trace: TraceContext | None = message.__dict__.get(TRACE_KEY)
    return trace


class CallerJobTrace(Protocol):
    """A job as the caller traces it, from entering its block to leaving it."""

    def current(self) -> AbstractContextManager[None]:
        """Make the job's span the current one inside this block: the job's own sends (its
        request, cancel and update requests) run in it."""
        ...

    def answered(self, message: BusMessage) -> None:
        """An answer of the worker's came for the job (an update, a chunk, the response)."""
        ...

    def ended(self, outcome: str, error: BaseException | None) -> None:
        """The job's block was left (or failed to enter): ``outcome`` says how it ended."""
        ...


class WorkerJobTrace(Protocol):
    """A job as its worker traces it, from taking it to sending its response."""

    def outcome(self, status: str) -> None:
        """The job ended with ``status`` (a :class:`~anybus.JobStatus` value)."""
        ...


class JobTracer(Protocol):
    """What the jobs modules ask of an instrumentation."""

    def caller_job(self, job: Any) -> CallerJobTrace:
        """A :class:`~anybus.Job` is being entered, in its caller's task: start its span, a
        child of the caller's current one (the caller's code in the block is not in it)."""
        ...

    def worker_job(self, worker: str, job: Any) -> AbstractContextManager[WorkerJobTrace]:
        """A :class:`~anybus.JobWorker` named ``worker`` runs a job (a
        :class:`~anybus.JobContext`) and answers it, inside this context."""
        ...


@final
class _State:
    """What is installed; ``None`` everywhere when nothing is."""

    __slots__ = ("from_thread", "generation", "handler_wrapper", "jobs", "tracing")

    def __init__(self) -> None:
        #: Whether an instrumentation is installed: the codec writes a message's trace
        #: context into its envelope only then.
        self.tracing = False
        #: Counts installs and removals: a parked worker that wakes to a new generation wraps
        #: its handler again (or stops wrapping it).
        self.generation = 0
        #: ``wrapper(subscription, handler) -> handler``: each worker wraps the handler it
        #: calls with this when it starts.
        self.handler_wrapper: Callable[[Any, Handler], Handler] | None = None
        #: Traces jobs.
        self.jobs: JobTracer | None = None
        #: ``from_thread(function) -> function``, called in a thread that hands an async
        #: function to the event loop (a :class:`~anybus.BusPortal` call): what it returns
        #: runs there in the thread's trace context.
        self.from_thread: Callable[[_Call], _Call] | None = None


#: The installed instrumentation's hooks.
state: Final = _State()

_buses: weakref.WeakSet[Any] = weakref.WeakSet()


def register_bus(bus: object) -> None:
    """Remember ``bus`` (weakly) for :func:`buses`; every bus calls it once, when made."""
    _buses.add(bus)


def buses() -> list[Any]:
    """Every bus object alive in this process, in no particular order."""
    for _ in range(8):
        try:
            return list(_buses)
        except RuntimeError:  # another thread made or dropped a bus meanwhile: look again
            continue
    return []
