"""The spans of jobs: the caller's (``job {name}``) and the worker's (``run job {name}``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, final

from anyio import get_cancelled_exc_class
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from .._messages import BusMessage
from . import _names as n
from ._context import failed, parent_of
from ._metrics import Instruments

__all__ = ["JobTracing"]

#: Job outcomes that mark the job's span as failed.
_FAILED_OUTCOMES: Final = frozenset({"failed", "error", "unavailable", "not-sent"})


@final
class JobTracing:
    """What the jobs modules ask of the instrumentation (see :class:`anybus._hooks.JobTracer`)."""

    def __init__(self, tracer: trace.Tracer, instruments: Instruments) -> None:
        self._tracer = tracer
        self._instruments = instruments

    def caller_job(self, job: Any) -> _CallerJob:
        name = job.job_name if job.job_name is not None else "default"
        span = self._tracer.start_span(
            f"job {name}",
            kind=SpanKind.CLIENT,
            attributes={
                n.SYSTEM: n.SYSTEM_NAME,
                n.JOB_ID: job.id,
                n.JOB_NAME: name,
                n.JOB_WORKER: job.requested,
            },
        )
        return _CallerJob(self._instruments, job, span, trace.set_span_in_context(span), name)

    @contextmanager
    def worker_job(self, worker: str, job: Any) -> Iterator[_WorkerJob]:
        name = job.name if job.name is not None else "default"
        parent = parent_of(job.request)
        span = self._tracer.start_span(
            f"run job {name}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                n.SYSTEM: n.SYSTEM_NAME,
                n.JOB_ID: job.id,
                n.JOB_NAME: name,
                n.JOB_WORKER: worker,
                n.SOURCE: job.requester,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        record = _WorkerJob()
        clock = time.perf_counter()
        try:
            yield record
        except get_cancelled_exc_class():
            span.add_event("cancelled")
            raise
        except BaseException as exc:
            failed(span, exc)
            raise
        finally:
            otel_context.detach(token)
            outcome = record.status or "cancelled"
            span.set_attribute(n.JOB_OUTCOME, outcome)
            if outcome in _FAILED_OUTCOMES:
                span.set_status(Status(StatusCode.ERROR, f"job {outcome}"))
            span.end()
            self._instruments.record_job(time.perf_counter() - clock, name, "worker", outcome)


@final
class _CallerJob:
    """A job's span on the caller's side (see :class:`anybus._hooks.CallerJobTrace`)."""

    __slots__ = ("_clock", "_context", "_instruments", "_job", "_name", "_span")

    def __init__(
        self,
        instruments: Instruments,
        job: Any,
        span: Span,
        context: Context,
        name: str,
    ) -> None:
        self._instruments = instruments
        self._job = job
        self._span = span
        self._context = context
        self._name = name
        self._clock = time.perf_counter()

    @contextmanager
    def current(self) -> Iterator[None]:
        # Attached and detached around one send, in one task: nothing to leak, whichever
        # task leaves the job's block, in whichever order jobs are left.
        token = otel_context.attach(self._context)
        try:
            yield
        finally:
            otel_context.detach(token)

    def answered(self, message: BusMessage) -> None:
        self._span.add_event(
            "answer", {n.MESSAGE_TYPE: type(message).__qualname__, n.MESSAGE_ID: message.id}
        )

    def ended(self, outcome: str, error: BaseException | None) -> None:
        span = self._span
        span.set_attribute(n.JOB_OUTCOME, outcome)
        span.set_attribute(n.JOB_WORKER, self._job.worker)
        if isinstance(error, get_cancelled_exc_class()):
            span.add_event("cancelled")
            if outcome in _FAILED_OUTCOMES:
                span.set_status(Status(StatusCode.ERROR, f"job {outcome}"))
        elif isinstance(error, Exception):
            failed(span, error)
        elif outcome in _FAILED_OUTCOMES:
            span.set_status(Status(StatusCode.ERROR, f"job {outcome}"))
        span.end()
        self._instruments.record_job(
            time.perf_counter() - self._clock, self._name, "caller", outcome
        )


@final
class _WorkerJob:
    """Where a worker records its job's status (see :class:`anybus._hooks.WorkerJobTrace`)."""

    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status: str | None = None

    def outcome(self, status: str) -> None:
        self.status = status
