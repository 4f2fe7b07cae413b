"""One trace across two processes: an asyncio caller and a trio worker over Redis.

Run it with a Redis server (the ``redis`` and ``otel`` extras, and the OpenTelemetry SDK)::

    pip install -e '.[redis,otel,trio]' opentelemetry-sdk    # in the checkout
    python examples/otel_trace.py --redis-url redis://127.0.0.1:6379

This process is the caller. It starts a copy of itself as the worker (``--role worker``), on
the other event loop; both call :func:`anybus.otel.instrument` with an SDK tracer provider that
keeps the spans in memory. The caller asks the worker for one ``resize`` job, which sends two
progress updates and answers; then it tells the worker to stop. The worker writes its spans to
a file; the caller reads them, puts them beside its own and prints the trace as a tree: one
trace id, two processes. ``--spans-out FILE`` writes the spans of both as JSON as well (the
docs draw their picture of a trace from that file).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Sequence
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import anybus.otel
from anybus import JobContext, JobWorker, request, wait_for_worker
from anybus.redis import RedisBus

WORKER = "resizer"


def tracing(role: str, backend: str) -> tuple[InMemorySpanExporter, str]:
    """Instrument anybus with spans kept in memory; return the exporter and the process label."""
    label = f"{role} · {backend}"
    provider = TracerProvider(resource=Resource.create({"service.name": label}))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    anybus.otel.instrument(tracer_provider=provider)
    return exporter, label


def as_json(span: ReadableSpan, process: str) -> dict[str, Any]:
    """A finished span as plain data."""
    return {
        "name": span.name,
        "trace_id": format(span.context.trace_id, "032x"),
        "span_id": format(span.context.span_id, "016x"),
        "parent_id": None if span.parent is None else format(span.parent.span_id, "016x"),
        "kind": span.kind.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "process": process,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
    }


async def worker(url: str, channel: str, spans_file: Path, backend: str) -> None:
    exporter, label = tracing("worker", backend)
    stopped = anyio.Event()
    resizer = JobWorker(WORKER)

    @resizer.job("resize")
    async def resize(job: JobContext) -> dict[str, Any]:
        width, height = job.payload["width"], job.payload["height"]
        for percent in (50, 100):
            await job.update({"percent": percent})
        return {"width": width // 2, "height": height // 2}

    @resizer.job("stop")
    async def stop(job: JobContext) -> None:
        stopped.set()

    with anyio.fail_after(60):  # whatever happens, this process ends
        async with RedisBus(url, channel=channel, name="worker") as bus:
            await bus.subscribe(resizer)
            await stopped.wait()
            # Leaving the block drains the bus: the stop job's answer goes out first.
    spans = [as_json(span, label) for span in exporter.get_finished_spans()]
    await anyio.Path(spans_file).write_text(json.dumps(spans))


async def caller(
    url: str, channel: str, worker_backend: str, backend: str
) -> list[dict[str, Any]]:
    exporter, label = tracing("caller", backend)
    async with anyio.TemporaryDirectory() as directory:
        spans_file = Path(directory) / "worker-spans.json"
        command = [sys.executable, __file__, "--role", "worker", "--redis-url", url]
        command += ["--channel", channel, "--backend", worker_backend, "--spans-file"]
        async with await anyio.open_process([*command, str(spans_file)], stdout=None) as peer:
            try:
                with anyio.fail_after(60):
                    async with RedisBus(url, channel=channel, name="caller") as bus:
                        # The worker process is starting: wait for it outside the job's
                        # trace, which then shows the job alone (request() would wait in it).
                        await wait_for_worker(bus, WORKER)
                        size = {"width": 1920, "height": 1080}
                        result = await request(bus, WORKER, size, job_name="resize")
                        print(f"caller: resized to {result.response}")
                        resize = exporter.get_finished_spans()
                        await request(bus, WORKER, job_name="stop")
                    status = await peer.wait()
            except BaseException:
                with suppress(ProcessLookupError):  # (it may have ended already)
                    peer.kill()  # not left running for nobody
                raise
        if status != 0:
            raise SystemExit(f"the worker exited with status {status}")
        theirs: list[dict[str, Any]] = json.loads(await anyio.Path(spans_file).read_text())
    # Only the resize job's trace is shown: not the stop job's.
    (trace_id,) = {format(span.context.trace_id, "032x") for span in resize if not span.parent}
    spans = [as_json(span, label) for span in exporter.get_finished_spans()] + theirs
    return [span for span in spans if span["trace_id"] == trace_id]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    parser.add_argument("--channel", default=f"anybus-trace-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--worker-backend", choices=["asyncio", "trio"], default="trio")
    parser.add_argument("--role", choices=["caller", "worker"], default="caller")
    parser.add_argument("--spans-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--spans-out", type=Path, help="write both processes' spans as JSON")
    args = parser.parse_args(argv)
    if args.role == "worker":
        run = partial(worker, args.redis_url, args.channel, args.spans_file, args.backend)
        anyio.run(run, backend=args.backend)
        return
    run_caller = partial(caller, args.redis_url, args.channel, args.worker_backend, args.backend)
    spans = anyio.run(run_caller, backend=args.backend)
    if args.spans_out is not None:
        args.spans_out.write_text(json.dumps(spans, indent=1))
    print_tree(spans)


def print_tree(spans: list[dict[str, Any]]) -> None:
    """Print the spans as a tree, each with its process: one line a span."""
    traces = {span["trace_id"] for span in spans}
    processes = {span["process"] for span in spans}
    print(f"{len(traces)} trace, {len(spans)} spans, {len(processes)} processes")
    ids = {span["span_id"] for span in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in sorted(spans, key=lambda s: s["start_ns"]):
        parent = span["parent_id"] if span["parent_id"] in ids else None
        children.setdefault(parent, []).append(span)

    def show(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            kind = span["kind"].lower()
            print(f"{'  ' * depth}{span['name']} ({kind}) [{span['process']}]")
            show(span["span_id"], depth + 1)

    show(None, 0)


if __name__ == "__main__":
    main()
