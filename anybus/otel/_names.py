"""The names anybus's telemetry uses: span attributes and metrics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, final

__all__ = ["METRICS", "MetricInfo"]

# --- attributes (OpenTelemetry's messaging conventions, and anybus's own) -------------------

SYSTEM: Final = "messaging.system"
SYSTEM_NAME: Final = "anybus"
DESTINATION: Final = "messaging.destination.name"
OPERATION_TYPE: Final = "messaging.operation.type"
OPERATION_NAME: Final = "messaging.operation.name"
MESSAGE_ID: Final = "messaging.message.id"
CONVERSATION_ID: Final = "messaging.message.conversation_id"
CONSUMER_GROUP: Final = "messaging.consumer.group.name"
ERROR_TYPE: Final = "error.type"

BUS: Final = "anybus.bus"
MESSAGE_TYPE: Final = "anybus.message.type"
MESSAGE_NAME: Final = "anybus.message.name"
PRIORITY: Final = "anybus.message.priority"
TARGET: Final = "anybus.message.target"
SOURCE: Final = "anybus.message.source"
LANE: Final = "anybus.lane"
REASON: Final = "anybus.reason"
JOB_ID: Final = "anybus.job.id"
JOB_NAME: Final = "anybus.job.name"
JOB_WORKER: Final = "anybus.job.worker"
JOB_OUTCOME: Final = "anybus.job.outcome"
JOB_SIDE: Final = "anybus.job.side"


@final
@dataclass(frozen=True, slots=True)
class MetricInfo:
    """One metric anybus reports.

    Attributes:
        kind: the instrument: ``counter`` and ``gauge`` are observed (read off the buses'
            ``statistics()`` when the reader collects), ``histogram`` is recorded as it
            happens.
        unit: the UCUM unit.
        description: what it measures.
        attributes: the attributes its points carry.
    """

    kind: Literal["counter", "gauge", "histogram"]
    unit: str
    description: str
    attributes: tuple[str, ...]


_BUS_ATTRIBUTES: Final = (SYSTEM, DESTINATION, BUS)
_SUBSCRIBER_ATTRIBUTES: Final = (*_BUS_ATTRIBUTES, CONSUMER_GROUP)
#: A histogram point has no ``anybus.bus``: one attribute less to hash on every record.
_RECORDED_ATTRIBUTES: Final = (SYSTEM, DESTINATION, CONSUMER_GROUP)

#: Every metric, by name.
METRICS: Final[Mapping[str, MetricInfo]] = MappingProxyType(
    {
        "messaging.client.sent.messages": MetricInfo(
            "counter",
            "{message}",
            "Messages passed to send() on a bus (statistics().sent).",
            (*_BUS_ATTRIBUTES, OPERATION_NAME),
        ),
        "messaging.client.consumed.messages": MetricInfo(
            "counter",
            "{message}",
            "Messages handed to a subscriber's handler (its statistics' delivered).",
            (*_SUBSCRIBER_ATTRIBUTES, OPERATION_NAME),
        ),
        "anybus.messages.dropped": MetricInfo(
            "counter",
            "{message}",
            "Data messages a subscriber's overflow policy dropped (its statistics' dropped).",
            _SUBSCRIBER_ATTRIBUTES,
        ),
        "anybus.messages.refused": MetricInfo(
            "counter",
            "{message}",
            "Data messages refused under the error policy (its statistics' refused).",
            _SUBSCRIBER_ATTRIBUTES,
        ),
        "anybus.messages.undelivered": MetricInfo(
            "counter",
            "{message}",
            "Messages taken out of an inbox when a drain's deadline passed (undelivered).",
            _SUBSCRIBER_ATTRIBUTES,
        ),
        "anybus.handler.failures": MetricInfo(
            "counter",
            "{failure}",
            "Handler (or filter) calls that raised (its statistics' handler_failures).",
            _SUBSCRIBER_ATTRIBUTES,
        ),
        "anybus.inbox.depth": MetricInfo(
            "gauge",
            "{message}",
            "Messages waiting in a subscriber's inbox, per lane (system, data).",
            (*_SUBSCRIBER_ATTRIBUTES, LANE),
        ),
        "anybus.messages.received": MetricInfo(
            "counter",
            "{message}",
            "Messages a network bus read from its server (transport_statistics().received).",
            _BUS_ATTRIBUTES,
        ),
        "anybus.messages.rejected": MetricInfo(
            "counter",
            "{message}",
            "Input a network bus dropped, by reason: malformed, forged, replayed, ...",
            (*_BUS_ATTRIBUTES, REASON),
        ),
        "anybus.messages.missed": MetricInfo(
            "counter",
            "{message}",
            "Messages a network bus knows it lost on the way (transport_statistics().missed).",
            _BUS_ATTRIBUTES,
        ),
        "anybus.messages.duplicates": MetricInfo(
            "counter",
            "{message}",
            "Messages a network bus received again (transport_statistics().duplicates).",
            _BUS_ATTRIBUTES,
        ),
        "messaging.process.duration": MetricInfo(
            "histogram",
            "s",
            "How long a subscriber's handler ran, per message (error.type when it raised).",
            (*_RECORDED_ATTRIBUTES, OPERATION_NAME, ERROR_TYPE),
        ),
        "anybus.message.latency": MetricInfo(
            "histogram",
            "s",
            "From send() to the handler's start, by the wall clocks of sender and receiver.",
            _RECORDED_ATTRIBUTES,
        ),
        "anybus.job.duration": MetricInfo(
            "histogram",
            "s",
            "How long a job took, on the caller's side (entering its block to leaving it) and "
            "the worker's (taking it to answering it), by outcome.",
            (SYSTEM, JOB_NAME, JOB_SIDE, JOB_OUTCOME),
        ),
    }
)
