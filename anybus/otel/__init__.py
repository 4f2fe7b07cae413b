"""OpenTelemetry traces and metrics for anybus (the ``otel`` extra: ``anybus[otel]``).

Nothing is traced or measured until :func:`instrument` is called; then every bus in the
process is, on asyncio and trio alike:

* a *producer* span for each ``send()`` and a *consumer* span for each handler run, parented
  to the producer's, following OpenTelemetry's messaging conventions; the W3C trace context
  travels in the message's envelope, so one trace crosses processes;
* a *client* span for each job a caller opens (``request()``, ``open_job()``) and a *server*
  span for each job a :class:`~anybus.JobWorker` runs, nested in that trace;
* metrics: what ``statistics()`` counts (read off it, so the two always agree), inbox depths,
  handler durations, end-to-end latency, and job outcomes and durations.

Only ``opentelemetry-api`` is needed; the application chooses the SDK, exporters and sampler.
See the observability page of the docs for the span and metric names.
"""

from importlib.util import find_spec as _find_spec

if _find_spec("opentelemetry") is None:  # pragma: no cover - exercised without the extra
    raise ModuleNotFoundError(
        "anybus.otel needs opentelemetry-api: pip install 'anybus[otel]'", name="opentelemetry"
    )

from ._instrument import bus_label as bus_label
from ._instrument import instrument as instrument
from ._instrument import is_instrumented as is_instrumented
from ._instrument import uninstrument as uninstrument
from ._names import METRICS as METRICS

__all__ = ["METRICS", "bus_label", "instrument", "is_instrumented", "uninstrument"]
