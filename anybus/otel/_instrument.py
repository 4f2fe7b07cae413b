"""Turning the instrumentation on and off, and the spans of sends, handlers and jobs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar, final

from anyio import get_cancelled_exc_class
from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from .. import _hooks
from .._bus import WorkerBus
from .._envelope import MAX_HEADER_VALUE, MAX_TRACE_HEADERS, header_travels
from .._hooks import TRACE_KEY, Handler, TraceContext
from .._messages import (
    BusLocalMessage,
    BusMessage,
    BusSystemMessage,
    BusWorkerGoodbyeMessage,
    BusWorkerPresenceMessage,
    BusWorkerPresenceQueryMessage,
)
from .._version import __version__
from . import _names as n
from ._context import CONTEXT_KEY, Sent, failed, log_once, parent_of
from ._jobs import JobTracing
from ._metrics import Instruments, instruments_for, label_of, place_of

__all__ = ["bus_label", "instrument", "is_instrumented", "uninstrument"]

logger = logging.getLogger("anybus.otel")

#: Presence traffic (heartbeats, queries, goodbyes) is not traced: a span a second per worker
#: would bury the traces that matter. It is counted in the metrics like any message.
UNTRACED: Final = frozenset(
    {BusWorkerPresenceMessage, BusWorkerPresenceQueryMessage, BusWorkerGoodbyeMessage}
)


_SendFunction = Callable[[WorkerBus, BusMessage], Coroutine[Any, Any, None]]
_plain_send: Final[_SendFunction] = WorkerBus.send
_lock = threading.Lock()
_T = TypeVar("_T")


@final
class _Instrumentation:
    """What :func:`instrument` installed: the tracer, the instruments, the hooks."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
    ) -> None:
        self.tracer = trace.get_tracer(
            "anybus", __version__, tracer_provider=tracer_provider, schema_url=None
        )
        self.instruments: Instruments = instruments_for(meter_provider)
        self.jobs = JobTracing(self.tracer, self.instruments)
        self._oversized_logged = False

    # --- sending --------------------------------------------------------------------------

    async def send(self, bus: WorkerBus, message: BusMessage) -> None:
        place = place_of(bus)
        # Only what a sampler may look at is given at the start; the rest only if recorded.
        span = self.tracer.start_span(
            place.send_name, kind=SpanKind.PRODUCER, attributes=place.send_attributes
        )
        try:
            if span.is_recording():
                span.set_attributes(_message_attributes(message))
                if isinstance(message, BusLocalMessage):
                    span.set_attribute("anybus.message.local", True)
            # In this process the handlers take the context itself; a remote one, the headers.
            parent = trace.set_span_in_context(span, otel_context.get_current())
            headers: dict[str, str] = {}  # (its own: a message's copies copy it)
            if place.remote and not isinstance(message, BusLocalMessage):
                headers = self._inject(parent)
            fields = message.__dict__
            fields[TRACE_KEY] = TraceContext(headers, time.time_ns())
            fields[CONTEXT_KEY] = Sent(parent)
            await _plain_send(bus, message)
        except get_cancelled_exc_class():
            span.add_event("cancelled")
            raise
        except BaseException as exc:
            failed(span, exc)
            raise
        finally:
            span.end()

    def _inject(self, context: Context) -> dict[str, str]:
        """The trace headers of ``context``, as the global propagator writes them; none if it
        fails (a message is never refused for its trace: logged once)."""
        headers: dict[str, str] = {}
        try:
            propagate.inject(headers, context=context)
        except Exception as exc:
            log_once("inject", "the propagator could not write a trace context", exc)
            return {}
        return self._bounded(headers)

    def _bounded(self, headers: dict[str, str]) -> dict[str, str]:
        """The headers a receiver accepts (its bounds: :mod:`anybus._envelope`): what does
        not fit is left out (logged once)."""
        if len(headers) <= MAX_TRACE_HEADERS and all(
            map(header_travels, headers, headers.values())
        ):
            return headers
        kept = {name: value for name, value in headers.items() if header_travels(name, value)}
        kept = dict(list(kept.items())[:MAX_TRACE_HEADERS])
        if not self._oversized_logged:
            self._oversized_logged = True
            left = sorted(set(headers) - set(kept))
            logger.warning(
                "trace headers %s left out of a message: at most %d headers of printable "
                "ASCII, of at most %d characters, travel (a large baggage?)",
                left,
                MAX_TRACE_HEADERS,
                MAX_HEADER_VALUE,
            )
        return kept

    # --- handling -------------------------------------------------------------------------

    def wrap_handler(self, subscription: Any, handler: Handler) -> Handler:
        bus = subscription.bus
        place = place_of(bus)
        name: str = subscription.name
        # Computed once per worker: what every span and metric point of this subscriber says.
        span_attributes = {**place.process_attributes, n.CONSUMER_GROUP: name}
        latency_attributes = {**place.metric_attributes, n.CONSUMER_GROUP: name}
        process_attributes = {**latency_attributes, n.OPERATION_NAME: "process"}

        async def traced(message: BusMessage) -> None:
            active = _installed
            if active is None or type(message) in UNTRACED:
                await handler(message)
                return
            carried: TraceContext | None = message.__dict__.get(TRACE_KEY)
            parent = parent_of(message)
            started = time.time_ns()
            instruments = active.instruments
            if carried is not None:
                seconds = max(0, started - carried.sent_ns) / 1e9
                instruments.latency.record(seconds, latency_attributes)
            span = active.tracer.start_span(
                place.process_name,
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes=span_attributes,
                start_time=started,
            )
            token = otel_context.attach(trace.set_span_in_context(span, parent))
            clock = time.perf_counter()
            outcome = process_attributes
            try:
                if span.is_recording():
                    span.set_attributes(_message_attributes(message))
                await handler(message)
            except get_cancelled_exc_class():
                span.add_event("cancelled")
                outcome = {**process_attributes, n.ERROR_TYPE: "cancelled"}
                raise
            except BaseException as exc:
                failed(span, exc)
                outcome = {**process_attributes, n.ERROR_TYPE: type(exc).__qualname__}
                raise
            finally:
                otel_context.detach(token)
                span.end()
                instruments.process_duration.record(time.perf_counter() - clock, outcome)

        return traced


def _message_attributes(message: BusMessage) -> dict[str, Any]:
    """What a recorded span says of its message."""
    attributes: dict[str, Any] = {
        n.MESSAGE_ID: message.id,
        n.MESSAGE_TYPE: type(message).__qualname__,
        n.MESSAGE_NAME: message.name,
        n.PRIORITY: "system" if isinstance(message, BusSystemMessage) else "data",
        n.SOURCE: message.source,
    }
    if message.target is not None:
        attributes[n.TARGET] = message.target
    job_id = getattr(message, "job_id", None)
    if isinstance(job_id, str):
        attributes[n.CONVERSATION_ID] = job_id
    return attributes


def _in_this_threads_context(
    function: Callable[[], Awaitable[_T]],
) -> Callable[[], Awaitable[_T]]:
    """``function``, to run in the event loop in the trace context of the calling thread."""
    captured = otel_context.get_current()

    async def run() -> _T:
        token = otel_context.attach(captured)
        try:
            return await function()
        finally:
            otel_context.detach(token)

    return run


_installed: _Instrumentation | None = None


async def _traced_send(self: WorkerBus, message: BusMessage) -> None:
    """``WorkerBus.send`` while instrumented: a producer span around the plain send."""
    active = _installed
    if active is None or type(message) in UNTRACED or not isinstance(message, BusMessage):
        await _plain_send(self, message)  # (which refuses what is not a message)
    else:
        await active.send(self, message)


_traced_send.__doc__ = _plain_send.__doc__
_traced_send.__wrapped__ = _plain_send  # type: ignore[attr-defined]


def instrument(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> None:
    """Trace and measure every anybus bus in this process, from now on.

    Args:
        tracer_provider: where the spans go; the global one (``trace.get_tracer_provider()``)
            by default.
        meter_provider: where the metrics go; the global one by default.

    Subscriptions whose workers are running already are traced from their next start; call it
    early, before the buses start. Calling it again (after :func:`uninstrument`) with other
    providers moves the telemetry there.

    Raises:
        TypeError: a provider is not an OpenTelemetry ``TracerProvider`` / ``MeterProvider``.
        RuntimeError: anybus is instrumented already (call :func:`uninstrument` first).
    """
    global _installed
    if tracer_provider is not None and not isinstance(tracer_provider, trace.TracerProvider):
        raise TypeError(
            f"tracer_provider must be an opentelemetry TracerProvider (or None for the global "
            f"one), got {tracer_provider!r}"
        )
    if meter_provider is not None and not isinstance(meter_provider, metrics.MeterProvider):
        raise TypeError(
            f"meter_provider must be an opentelemetry MeterProvider (or None for the global "
            f"one), got {meter_provider!r}"
        )
    with _lock:
        if _installed is not None:
            raise RuntimeError(
                "anybus is instrumented already: call anybus.otel.uninstrument() first to "
                "change the providers"
            )
        installed = _Instrumentation(tracer_provider, meter_provider)
        installed.instruments.activate()
        _installed = installed
        _hooks.state.handler_wrapper = installed.wrap_handler
        _hooks.state.jobs = installed.jobs
        _hooks.state.tracing = True
        _hooks.state.from_thread = _in_this_threads_context
        _hooks.state.generation += 1
        WorkerBus.send = _traced_send  # type: ignore[method-assign]
    logger.debug("anybus instrumented")


def uninstrument() -> None:
    """Stop tracing and measuring; a no-op when not instrumented.

    Handlers that are running finish their spans; observed metrics report nothing more.
    """
    global _installed
    with _lock:
        installed, _installed = _installed, None
        if installed is None:
            return
        _hooks.state.handler_wrapper = None
        _hooks.state.jobs = None
        _hooks.state.tracing = False
        _hooks.state.from_thread = None
        _hooks.state.generation += 1
        WorkerBus.send = _plain_send  # type: ignore[method-assign, assignment]
        installed.instruments.deactivate()
    logger.debug("anybus uninstrumented")


def bus_label(bus: WorkerBus) -> str:
    """The ``anybus.bus`` attribute of ``bus``'s metric points: its class and a number unique
    in this process (``MemoryBus-3``), given the first time it is asked for."""
    if not isinstance(bus, WorkerBus):
        raise TypeError(f"bus must be a WorkerBus, got {bus!r}")
    return label_of(bus)


def is_instrumented() -> bool:
    """Whether :func:`instrument` is in effect."""
    return _installed is not None
