"""The metrics: observed off the buses' ``statistics()``, and the histograms recorded live.

What ``statistics()`` and ``transport_statistics()`` count is not counted a second time: the
observable instruments read those snapshots when the metric reader collects (in the reader's
thread, perhaps), so the metrics and the snapshots always agree, and the send and dispatch
paths pay nothing for them.
"""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, final

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from .._hooks import buses
from .._statistics import BusStatistics, SubscriptionStatistics
from .._transport import MemoryTransport
from . import _names as n
from ._names import METRICS

__all__ = ["Instruments", "Place", "destination", "instruments_for", "label_of", "place_of"]

logger = logging.getLogger("anybus.otel")

#: Histogram buckets in seconds: from 50 µs (a memory bus's hop) to 30 s (a long job).
DURATION_BUCKETS: Final = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


def destination(bus: Any) -> str:
    """The bus's ``messaging.destination.name``: its channel or stream, or ``memory``."""
    transport = getattr(bus, "transport", None)
    if transport is None or type(transport) is MemoryTransport:
        return "memory"
    for attribute in ("channel", "stream"):
        value = getattr(transport, attribute, None)
        if isinstance(value, str):
            return value
    return str(transport)


@final
class Place:
    """What a bus's spans and metric points say of it, worked out once per bus."""

    __slots__ = (
        "__weakref__",
        "metric_attributes",
        "process_attributes",
        "process_name",
        "remote",
        "send_attributes",
        "send_name",
    )

    def __init__(self, bus: Any) -> None:
        where = destination(bus)
        #: Whether messages leave the process (a transport other than memory).
        self.remote = type(getattr(bus, "transport", None)) is not MemoryTransport
        self.send_name = f"send {where}"
        self.process_name = f"process {where}"
        base = {n.SYSTEM: n.SYSTEM_NAME, n.DESTINATION: where}
        #: A producer span's attributes at its start (what a sampler may look at).
        self.send_attributes = {**base, n.OPERATION_TYPE: "send", n.OPERATION_NAME: "send"}
        #: A consumer span's, but the subscriber.
        self.process_attributes = {
            **base,
            n.OPERATION_TYPE: "process",
            n.OPERATION_NAME: "process",
        }
        #: A histogram point's, but the subscriber.
        self.metric_attributes = base


_places: weakref.WeakKeyDictionary[Any, Place] = weakref.WeakKeyDictionary()


def place_of(bus: Any) -> Place:
    """The bus's :class:`Place` (made the first time, kept while the bus lives)."""
    place = _places.get(bus)
    if place is None:
        place = _places[bus] = Place(bus)
    return place


_Snapshot = tuple[dict[str, Any], BusStatistics, Any]


@final
class Instruments:
    """The instruments of one meter provider (made once per provider, kept for reuse: an
    observable instrument cannot be taken back from a provider)."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.active = False
        self.process_duration = self._histogram(meter, "messaging.process.duration")
        self.latency = self._histogram(meter, "anybus.message.latency")
        self.job_duration = self._histogram(meter, "anybus.job.duration")
        observed: dict[str, Callable[[], Iterable[Observation]]] = {
            "messaging.client.sent.messages": self._sent,
            "messaging.client.consumed.messages": self._consumed,
            "anybus.messages.dropped": self._per_subscription(lambda s: s.dropped),
            "anybus.messages.refused": self._per_subscription(lambda s: s.refused),
            "anybus.messages.undelivered": self._per_subscription(lambda s: s.undelivered),
            "anybus.handler.failures": self._per_subscription(lambda s: s.handler_failures),
            "anybus.inbox.depth": self._depths,
            "anybus.messages.received": self._transport_counter("received"),
            "anybus.messages.rejected": self._rejected,
            "anybus.messages.missed": self._transport_counter("missed"),
            "anybus.messages.duplicates": self._transport_counter("duplicates"),
        }
        for name, observe in observed.items():
            info = METRICS[name]
            callback = self._callback(name, observe)
            if info.kind == "gauge":
                meter.create_observable_gauge(
                    name, [callback], unit=info.unit, description=info.description
                )
            else:
                meter.create_observable_counter(
                    name, [callback], unit=info.unit, description=info.description
                )

    @staticmethod
    def _histogram(meter: metrics.Meter, name: str) -> metrics.Histogram:
        info = METRICS[name]
        return meter.create_histogram(
            name,
            unit=info.unit,
            description=info.description,
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )

    def activate(self) -> None:
        self.active = True

    def deactivate(self) -> None:
        self.active = False

    def record_job(self, seconds: float, name: str, side: str, outcome: str) -> None:
        """A job ended: its duration on one side, by outcome."""
        attributes = {n.SYSTEM: n.SYSTEM_NAME, n.JOB_NAME: name, n.JOB_SIDE: side}
        attributes[n.JOB_OUTCOME] = outcome
        self.job_duration.record(seconds, attributes)

    # --- reading the buses ----------------------------------------------------------------

    def _callback(
        self, name: str, observe: Callable[[], Iterable[Observation]]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            if not self.active:
                return []
            try:
                return list(observe())
            except Exception:  # a metric must not break the reader: say why, report nothing
                logger.exception("could not observe %s", name)
                return []

        return callback

    def _snapshots(self) -> Iterator[_Snapshot]:
        for bus in buses():
            statistics = _retry(bus.statistics)
            transport = getattr(bus, "transport_statistics", None)
            attributes = {n.SYSTEM: n.SYSTEM_NAME, n.DESTINATION: destination(bus)}
            attributes[n.BUS] = label_of(bus)
            yield attributes, statistics, transport

    def _sent(self) -> Iterator[Observation]:
        for attributes, statistics, _ in self._snapshots():
            yield Observation(statistics.sent, {**attributes, n.OPERATION_NAME: "send"})

    def _consumed(self) -> Iterator[Observation]:
        for attributes, sub in self._subscriptions():
            yield Observation(sub.delivered, {**attributes, n.OPERATION_NAME: "process"})

    def _subscriptions(self) -> Iterator[tuple[dict[str, Any], SubscriptionStatistics]]:
        for attributes, statistics, _ in self._snapshots():
            for sub in statistics.subscriptions:
                yield {**attributes, n.CONSUMER_GROUP: sub.name}, sub

    def _per_subscription(
        self, value: Callable[[SubscriptionStatistics], int]
    ) -> Callable[[], Iterator[Observation]]:
        def observe() -> Iterator[Observation]:
            for attributes, sub in self._subscriptions():
                yield Observation(value(sub), attributes)

        return observe

    def _depths(self) -> Iterator[Observation]:
        for attributes, sub in self._subscriptions():
            yield Observation(sub.queued_system, {**attributes, n.LANE: "system"})
            yield Observation(sub.queued_data, {**attributes, n.LANE: "data"})

    def _transport_counter(self, field: str) -> Callable[[], Iterator[Observation]]:
        def observe() -> Iterator[Observation]:
            for attributes, _, transport in self._snapshots():
                if transport is not None:
                    yield Observation(getattr(_retry(transport), field), attributes)

        return observe

    def _rejected(self) -> Iterator[Observation]:
        for attributes, _, transport in self._snapshots():
            if transport is not None:
                for reason, count in _retry(transport).rejected.items():
                    yield Observation(count, {**attributes, n.REASON: reason})


_labels: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_numbers = itertools.count(1)
_label_lock = threading.Lock()


def label_of(bus: Any) -> str:
    """The bus's ``anybus.bus``: its class and a number, unique in this process."""
    label = _labels.get(bus)
    if label is None:
        with _label_lock:
            label = _labels.get(bus)
            if label is None:
                label = _labels[bus] = f"{type(bus).__name__}-{next(_numbers)}"
    return label


def _retry(snapshot: Callable[[], Any]) -> Any:
    """``snapshot()``, taken again if the bus changed under it: the reader may run in a thread
    of its own while the bus's event loop adds or drops a subscription."""
    for _ in range(7):
        try:
            return snapshot()
        except RuntimeError:  # (a dict changed size during iteration)
            continue
    return snapshot()


_by_provider: dict[int, tuple[object, Instruments]] = {}
_lock = threading.Lock()


def instruments_for(meter_provider: metrics.MeterProvider | None) -> Instruments:
    """The instruments of ``meter_provider`` (the global one for ``None``), made once."""
    provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
    with _lock:
        known = _by_provider.get(id(provider))
        if known is not None and known[0] is provider:
            return known[1]
        from .._version import __version__

        meter = metrics.get_meter("anybus", __version__, meter_provider=provider)
        made = Instruments(meter)
        _by_provider[id(provider)] = (provider, made)
        return made
