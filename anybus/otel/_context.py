"""What the spans of sends, handlers and jobs share: a message's parent context, and how a
failure is put on a span."""

from __future__ import annotations

import logging
from typing import Final, final

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode

from .._hooks import TRACE_KEY, TraceContext
from .._messages import BusMessage
from . import _names as n

__all__ = ["CONTEXT_KEY", "Sent", "failed", "log_once", "parent_of"]

logger = logging.getLogger("anybus.otel")

#: Where a message keeps the context it was sent in (this process), or the one extracted
#: from its trace headers once a handler needed it (another process's), so that the other
#: subscribers of a fan-out do not extract it again (a send replaces it).
CONTEXT_KEY: Final = "_anybus_otel_context"


def failed(span: Span, exc: BaseException) -> None:
    """Mark ``span`` failed by ``exc``: the exception as an event, ``error.type``, ERROR."""
    span.record_exception(exc)
    span.set_attribute(n.ERROR_TYPE, type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200]))


def parent_of(message: BusMessage) -> Context:
    """The context ``message`` was sent in: the sender's own (in this process), extracted
    from its trace headers (from another process; once per message), or an empty one."""
    fields = message.__dict__
    sent: Sent | None = fields.get(CONTEXT_KEY)
    if sent is not None and sent.context is not None:
        return sent.context
    parent = Context()
    carried: TraceContext | None = fields.get(TRACE_KEY)
    if carried is not None:
        try:
            parent = propagate.extract(carried.headers, parent)
        except Exception as exc:  # a handler is never kept from its message by its trace
            log_once("extract", "the propagator could not read a trace context", exc)
            parent = Context()
        fields[CONTEXT_KEY] = Sent(parent)
    return parent


_logged: set[str] = set()


def log_once(what: str, problem: str, exc: Exception) -> None:
    """Log a propagator's failure, once per kind per process: the message goes on untraced."""
    if what not in _logged:
        _logged.add(what)
        logger.warning("%s (%r): the message goes on without it", problem, exc)


@final
class Sent:
    """The context a message was sent in, kept on the message object in this process only.

    A copy of the message (``copy.deepcopy``, pickling) does not take it (it holds live
    spans, which do not copy): the copy's handlers go by its trace headers, as a remote
    receiver's do.
    """

    __slots__ = ("context",)

    def __init__(self, context: Context | None) -> None:
        self.context = context

    def __deepcopy__(self, memo: dict[int, object]) -> Sent:
        return Sent(None)

    def __reduce__(self) -> tuple[type[Sent], tuple[None]]:
        return Sent, (None,)
