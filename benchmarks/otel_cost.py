"""What ``anybus.otel.instrument()`` costs W1 and W2: off, on but unsampled, and fully sampled.

    python benchmarks/otel_cost.py                         # 5 runs, W1 and W2, asyncio and trio
    python benchmarks/otel_cost.py --runs 9 --backends trio --json otel-cost.json
    python benchmarks/otel_cost.py --quick --runs 1        # a smoke run (QUICK sizes), seconds

Needs ``opentelemetry-sdk`` beside anybus's dependencies (the ``otel`` extra brings only the
API). W1 (fan-out: 20,000 messages x 10 subscribers) and W2 (single: 100,000 messages x 1
subscriber) are the workloads of ``docs/benchmarks.md``, run by the package's own worker code
(``anybus._bench.memory.throughput``) with the sizes the harness uses (``--quick``: its quick
sizes). Each cell is measured in three modes:

* ``off`` -- :func:`anybus.otel.instrument` is never called and ``anybus.otel`` (so
  OpenTelemetry) is never imported: what every application that does not trace runs.
* ``unsampled`` -- ``instrument()`` with an SDK ``TracerProvider(sampler=ALWAYS_OFF)`` (every
  span is a non-recording one, no processor sees it) and an SDK ``MeterProvider`` with an
  ``InMemoryMetricReader`` that is not collected while the clock runs: the metrics are
  recorded into the SDK's aggregations as they would be under a periodic exporter, only their
  export (once a period, off the hot path) is left out.
* ``sampled`` -- ``instrument()`` with ``TracerProvider(sampler=ALWAYS_ON)`` and a
  ``BatchSpanProcessor`` (the SDK's defaults) feeding an exporter that drops every batch and
  returns ``SUCCESS``: all of the SDK's span work (ids, attributes, context propagation in the
  envelope, the processor's queue and its export thread) is measured, no I/O is; plus the same
  ``MeterProvider`` and ``InMemoryMetricReader`` as ``unsampled``.

Every measurement is a fresh worker process (this script with ``--worker``), started through
the package's runner (``anybus._bench._runner``) like the harness's cells. A round measures
every cell once; the modes of one workload and backend run next to each other, and their
order rotates from round to round (off, unsampled, sampled; then unsampled, sampled, off; ...),
so a burst of noise on a shared machine falls on every mode alike. The report gives each
cell's median deliveries/s and its min - max, and each mode's ratio to ``off`` of the same run
(ratio of the medians, and the range of the per-round ratios). After the clock stops, the
``sampled`` worker flushes its spans and says how many reached the exporter (``spans``), so a
run whose spans were dropped (the processor's queue was full) shows it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# This checkout's anybus, whatever else is installed.
sys.path.insert(0, str(ROOT))

from anybus._bench._cells import Impl, Job, Outcome, fmt_value  # noqa: E402
from anybus._bench._common import Result, emit, worker_args  # noqa: E402
from anybus._bench._runner import RunConfig, machine, run_rounds  # noqa: E402

MODES = ("off", "unsampled", "sampled")
WORKLOADS = ("W1", "W2")
BACKENDS = ("asyncio", "trio")
SCRIPT = str(Path(__file__).resolve())


# --- the worker: one measurement -------------------------------------------------------------


class _Setup:
    """What a mode installed, and what it can tell about it after the clock stopped."""

    def __init__(self) -> None:
        self.finish: Callable[[], dict[str, object]] = dict


def _install(mode: str) -> _Setup:
    """Instrument anybus as ``mode`` asks (nothing at all for ``off``)."""
    setup = _Setup()
    if mode == "off":
        return setup
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

    import anybus.otel

    class DroppingExporter(SpanExporter):
        """Counts the spans it is given and drops them: the SDK's work without the I/O."""

        def __init__(self) -> None:
            self.spans = 0

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            self.spans += len(spans)
            return SpanExportResult.SUCCESS

    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    exporter = DroppingExporter()
    if mode == "sampled":
        tracer_provider = TracerProvider(sampler=ALWAYS_ON)
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    else:
        tracer_provider = TracerProvider(sampler=ALWAYS_OFF)
    anybus.otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)

    def finish() -> dict[str, object]:
        anybus.otel.uninstrument()
        tracer_provider.force_flush()
        data = reader.get_metrics_data()
        names = sorted(
            {
                metric.name
                for resource in (data.resource_metrics if data is not None else ())
                for scope in resource.scope_metrics
                for metric in scope.metrics
            }
        )
        tracer_provider.shutdown()
        meter_provider.shutdown()
        return {"spans": exporter.spans, "metrics": names}

    setup.finish = finish
    return setup


def worker(mode: str, argv: Sequence[str]) -> None:
    """Measure one W1/W2 cell in ``mode`` and print its result line."""
    import anyio

    from anybus._bench.memory import throughput

    args = worker_args(
        __doc__ or "", workloads=list(WORKLOADS), backends=list(BACKENDS), argv=argv
    )
    setup = _install(mode)
    run = partial(throughput, args.workload, args.backend, args.messages, args.subscribers)
    result: Result = anyio.run(run, backend=args.backend)
    result.update(setup.finish())
    result["mode"] = mode
    result["otel_imported"] = "anybus.otel" in sys.modules
    # Every message and the primer: one producer span each, one consumer span per subscriber.
    result["spans_expected"] = (
        (args.messages + 1) * (1 + args.subscribers) if mode == "sampled" else 0
    )
    emit(result)


# --- the driver: rounds, the table -------------------------------------------------------------


def _impl(mode: str) -> Impl:
    return Impl(mode, mode, SCRIPT, BACKENDS, WORKLOADS, ("--worker", f"--mode={mode}"))


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _spread(values: Sequence[float]) -> str:
    return f"{min(values) / 1e3:,.0f}k - {max(values) / 1e3:,.0f}k" if values else "-"


def _cell_document(outcome: Outcome, off: Outcome) -> dict[str, Any]:
    values = outcome.values()
    median = outcome.median()
    off_median = off.median()
    ratios = [
        v / b
        for v, b in zip(outcome.by_round(), off.by_round(), strict=True)
        if v is not None and b is not None
    ]
    return {
        "mode": outcome.job.impl.key,
        "backend": outcome.job.backend,
        "workload": outcome.job.workload,
        "median": median,
        "min": min(values, default=None),
        "max": max(values, default=None),
        "ratio_to_off": None if median is None or not off_median else median / off_median,
        "round_ratios": ratios,
        "failed": outcome.failed(),
        "errors": outcome.errors,
        "runs": outcome.results,
    }


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}x"


def _added_us(median: float | None, off_median: float | None) -> str:
    """What the mode adds to a delivery, in microseconds: 1/median - 1/off's median."""
    if median is None or not off_median:
        return "-"
    return f"{(1 / median - 1 / off_median) * 1e6:+.2f}"


def _table(workload: str, documents: Sequence[dict[str, Any]]) -> list[str]:
    runs = [r for doc in documents for r in doc["runs"] if r is not None]
    messages, subscribers = runs[0]["messages"], runs[0]["subscribers"]
    off = {d["backend"]: d["median"] for d in documents if d["mode"] == "off"}
    lines = [
        f"{workload}: {messages:,} data messages x {subscribers} subscriber"
        f"{'s' if subscribers > 1 else ''}; deliveries/s",
        f"  {'backend':<8} {'mode':<10} {'median':>10}  {'min - max':<18} "
        f"{'vs off':>8}  {'per round':<17} {'us/delivery':>11}  spans",
    ]
    for doc in documents:
        rounds = doc["round_ratios"]
        per_round = f"{min(rounds):.4f} - {max(rounds):.4f}" if rounds else "-"
        spans = "-"
        if doc["mode"] == "sampled":
            counted = [r["spans"] for r in doc["runs"] if r is not None]
            expected = next((r["spans_expected"] for r in doc["runs"] if r is not None), 0)
            spans = f"{min(counted, default=0):,}/{expected:,}"
        failed = f"  ({doc['failed']} failed)" if doc["failed"] else ""
        added = "-" if doc["mode"] == "off" else _added_us(doc["median"], off[doc["backend"]])
        lines.append(
            f"  {doc['backend']:<8} {doc['mode']:<10} {fmt_value(workload, doc['median']):>10}  "
            f"{_spread([r['value'] for r in doc['runs'] if r is not None]):<18} "
            f"{_ratio(doc['ratio_to_off']):>8}  {per_round:<17} {added:>11}  {spans}{failed}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line; run a worker (``--worker``) or the whole measurement."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawTextHelpFormatter,
        allow_abbrev=False,  # a worker's --workload is not --workloads
    )
    parser.add_argument("--runs", type=int, default=5, help="measurements per cell (default 5)")
    parser.add_argument("--workloads", default="W1,W2", help="W1, W2 or both (default W1,W2)")
    parser.add_argument("--backends", default="asyncio,trio", help="default asyncio,trio")
    parser.add_argument("--modes", default=",".join(MODES), help="default off,unsampled,sampled")
    parser.add_argument("--quick", action="store_true", help="the harness's QUICK sizes")
    parser.add_argument("--json", type=Path, help="also write the report here as JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.worker:
        if args.mode is None:
            parser.error("--worker needs --mode")
        worker(args.mode, [*rest, *(["--quick"] if args.quick else [])])
        return 0
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")

    def listed(option: str, value: str, allowed: Sequence[str]) -> list[str]:
        chosen = [v.strip() for v in value.split(",") if v.strip()]
        wrong = [v for v in chosen if v not in allowed]
        if wrong or not chosen:
            parser.error(f"--{option}: choose from {','.join(allowed)}, not {value!r}")
        return chosen

    workloads = listed("workloads", args.workloads, WORKLOADS)
    backends = listed("backends", args.backends, BACKENDS)
    modes = listed("modes", args.modes, MODES)
    if "off" not in modes:
        modes.insert(0, "off")  # the ratios are to off, measured in the same run
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    impls = [_impl(mode) for mode in modes]
    rounds = {
        f"{workload} {backend}": [Job(impl, backend, workload) for impl in impls]
        for workload in workloads
        for backend in backends
    }
    config = RunConfig(quick=args.quick)

    def on_start(job: Job, done: int, total: int, round_number: int) -> None:
        sys.stderr.write(f"[{done}/{total}] round {round_number}: {job.describe()}\n")

    def on_result(job: Job, result: dict[str, object] | None, error: str) -> None:
        if result is None:
            sys.stderr.write(f"  failed: {error}\n")

    started = time.perf_counter()
    outcomes = run_rounds(rounds, args.runs, config, on_start=on_start, on_result=on_result)
    seconds = time.perf_counter() - started

    documents: list[dict[str, Any]] = []
    for workload in workloads:
        for backend in backends:
            off = outcomes[("off", backend, workload)]
            documents += [
                _cell_document(outcomes[(mode, backend, workload)], off) for mode in modes
            ]
    _out(
        f"anybus.otel cost: {args.runs} run(s) per cell, modes interleaved; "
        f"{'QUICK sizes' if args.quick else 'the sizes of docs/benchmarks.md'}; {seconds:.0f} s"
    )
    _out("   ('vs off': this mode's median / off's median in this run; 'per round': the same")
    _out("   ratio round by round, min - max; us/delivery: what the mode adds to each delivery,")
    _out("   1/median - 1/off's median, in microseconds; spans: fewest exported / expected)")
    for workload in workloads:
        if any(d["median"] is not None for d in documents if d["workload"] == workload):
            _out()
            _out("\n".join(_table(workload, [d for d in documents if d["workload"] == workload])))
    if args.json is not None:
        report = {
            "machine": machine(),
            "runs": args.runs,
            "quick": args.quick,
            "modes": modes,
            "seconds": seconds,
            "cells": documents,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any(d["failed"] for d in documents) else 0


if __name__ == "__main__":
    sys.exit(main())
