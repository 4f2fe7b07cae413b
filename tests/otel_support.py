"""An instrumented anybus for the OpenTelemetry tests: spans and metrics kept in memory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import anybus.otel
from anybus import WorkerBus


@dataclass
class Telemetry:
    """What an instrumented anybus exported: its spans, and a reader of its metrics."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def spans(self, kind: SpanKind | None = None, name: str | None = None) -> list[ReadableSpan]:
        """The finished spans, in the order they ended, of ``kind`` and ``name`` if given."""
        return [
            span
            for span in self.exporter.get_finished_spans()
            if (kind is None or span.kind is kind) and (name is None or span.name == name)
        ]

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """The data points of metric ``name`` now: (attributes, value or histogram point)."""
        found: list[tuple[dict[str, Any], Any]] = []
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            value = getattr(point, "value", point)
                            found.append((dict(point.attributes or {}), value))
        return found

    def value(
        self,
        name: str,
        bus: WorkerBus | None = None,
        subscriber: str | None = None,
        **attributes: Any,
    ) -> Any:
        """The one point of metric ``name`` of ``bus`` and ``subscriber`` (if given) whose
        attributes include ``attributes`` (``anybus__lane`` for ``anybus.lane``)."""
        wanted = {key.replace("__", "."): value for key, value in attributes.items()}
        if bus is not None:
            wanted["anybus.bus"] = anybus.otel.bus_label(bus)
        if subscriber is not None:
            wanted["messaging.consumer.group.name"] = subscriber
        matches = [
            value
            for found, value in self.points(name)
            if all(found.get(key) == value for key, value in wanted.items())
        ]
        assert len(matches) == 1, f"{name} {wanted}: {matches} of {self.points(name)}"
        return matches[0]


@contextmanager
def instrumented() -> Iterator[Telemetry]:
    """anybus instrumented with in-memory exporters; uninstrumented on the way out."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    anybus.otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        yield Telemetry(exporter, reader, tracer_provider, meter_provider)
    finally:
        anybus.otel.uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()


def span_id(span: ReadableSpan) -> int:
    """The span's id."""
    value: int = span.context.span_id
    return value


def parent_id(span: ReadableSpan) -> int | None:
    """The span's parent's id, or ``None`` for a root."""
    return None if span.parent is None else int(span.parent.span_id)


def attribute(span: ReadableSpan, key: str) -> Any:
    """One of the span's attributes (``None`` when it has not that one)."""
    return (span.attributes or {}).get(key)
