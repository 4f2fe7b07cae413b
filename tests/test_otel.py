"""anybus.otel on the memory bus: spans, their parentage and context, metrics, on and off."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import anybus.otel
from anybus import (
    BusDataMessage,
    BusLocalMessage,
    BusMessage,
    BusSystemMessage,
    JobContext,
    JobFailed,
    JobWorker,
    MemoryBus,
    WorkerBus,
    WorkerUnavailable,
    open_job,
    open_thread_portal,
    request,
)
from anybus._hooks import TRACE_KEY, state, trace_of
from anybus.otel import METRICS
from anybus.otel._instrument import _plain_send
from anybus.testing import RecordingSubscriber

from .otel_support import Telemetry, attribute, instrumented, parent_id, span_id

pytestmark = pytest.mark.anyio

TIMEOUT = 10


class Local(BusLocalMessage, BusDataMessage):
    pass


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    with instrumented() as found:
        yield found


async def test_a_send_is_a_producer_span_and_each_handler_run_a_consumer_child(
    telemetry: Telemetry,
) -> None:
    first, second = RecordingSubscriber("first"), RecordingSubscriber("second")
    async with MemoryBus() as bus:
        await bus.subscribe(first)
        await bus.subscribe(second)
        await bus.send(message := BusDataMessage(source="test", target="first"))
        await bus.wait_idle()
    (producer,) = telemetry.spans(SpanKind.PRODUCER)
    consumers = telemetry.spans(SpanKind.CONSUMER)
    assert producer.name == "send memory"
    assert dict(producer.attributes or {}) == {
        "messaging.system": "anybus",
        "messaging.destination.name": "memory",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.message.id": message.id,
        "anybus.message.type": "BusDataMessage",
        "anybus.message.name": message.name,
        "anybus.message.priority": "data",
        "anybus.message.source": "test",
        "anybus.message.target": "first",
    }
    assert producer.parent is None
    carried = trace_of(message)  # a memory bus's messages never leave: no headers to inject
    assert carried is not None
    assert dict(carried.headers) == {}
    assert sorted(attribute(s, "messaging.consumer.group.name") for s in consumers) == [
        "first",
        "second",
    ]
    for consumer in consumers:
        assert consumer.name == "process memory"
        assert parent_id(consumer) == span_id(producer)
        assert consumer.context.trace_id == producer.context.trace_id
        assert consumer.attributes is not None
        assert consumer.attributes["messaging.operation.type"] == "process"
        assert consumer.attributes["messaging.message.id"] == message.id
        assert consumer.status.status_code is StatusCode.UNSET


async def test_a_send_nests_under_the_senders_active_span(telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    recorder = RecordingSubscriber("r")
    async with MemoryBus() as bus:
        await bus.subscribe(recorder)
        with tracer.start_as_current_span("outer") as outer:
            await bus.send(BusSystemMessage(source="test"))
            await bus.send(Local(source="test"))
        await bus.wait_idle()
    system, local = telemetry.spans(SpanKind.PRODUCER)
    for producer in (system, local):
        assert parent_id(producer) == outer.get_span_context().span_id
    assert system.attributes is not None
    assert local.attributes is not None
    assert system.attributes["anybus.message.priority"] == "system"
    assert local.attributes["anybus.message.local"] is True
    assert len(telemetry.spans(SpanKind.CONSUMER)) == 2


async def test_concurrent_handlers_each_see_their_own_span(telemetry: Telemetry) -> None:
    current: dict[str, trace.Span] = {}
    both_in = anyio.Event()

    async def remember(name: str) -> None:
        current[name] = trace.get_current_span()
        if len(current) == 2:
            both_in.set()
        await both_in.wait()  # both handlers are running at once here
        assert trace.get_current_span() is current[name]

    subscribers = [
        RecordingSubscriber(name, handler=lambda m, name=name: remember(name))  # type: ignore[misc]
        for name in ("a", "b")
    ]
    async with MemoryBus() as bus:
        for subscriber in subscribers:
            await bus.subscribe(subscriber)
        with anyio.fail_after(TIMEOUT):
            await bus.send(BusDataMessage(source="test"))
            await both_in.wait()
            await bus.wait_idle()
    consumers = {
        attribute(span, "messaging.consumer.group.name"): span
        for span in telemetry.spans(SpanKind.CONSUMER)
    }
    for name in ("a", "b"):
        assert current[name].get_span_context().span_id == span_id(consumers[name])
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing leaked into the test's task


async def test_a_failing_handler_marks_its_span_and_delivery_goes_on(
    telemetry: Telemetry,
) -> None:
    async def fail(message: BusMessage) -> None:
        if len(recorder.messages) == 1:
            raise ValueError("bad input")

    recorder = RecordingSubscriber("r", handler=fail)
    async with MemoryBus() as bus:
        await bus.subscribe(recorder)
        await bus.send(BusDataMessage(source="test"))
        await bus.send(BusDataMessage(source="test"))
        await bus.wait_idle()
        statistics = bus.statistics()
    failed, fine = telemetry.spans(SpanKind.CONSUMER)
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "ValueError"
    assert [event.name for event in failed.events] == ["exception"]
    assert fine.status.status_code is StatusCode.UNSET
    assert statistics.handler_failures == 1
    assert telemetry.value("anybus.handler.failures", bus, "r") == 1
    durations = telemetry.points("messaging.process.duration")
    by_error = {attributes.get("error.type"): point.count for attributes, point in durations}
    assert by_error == {"ValueError": 1, None: 1}


async def test_a_cancelled_handler_ends_its_span_without_an_error(telemetry: Telemetry) -> None:
    started = anyio.Event()

    async def block(message: BusMessage) -> None:
        started.set()
        await anyio.sleep_forever()

    async with MemoryBus() as bus:
        await bus.subscribe(RecordingSubscriber("r", handler=block))
        await bus.send(BusDataMessage(source="test"))
        with anyio.fail_after(TIMEOUT):
            await started.wait()
        await bus.stop()
    (consumer,) = telemetry.spans(SpanKind.CONSUMER)
    assert consumer.end_time is not None
    assert [event.name for event in consumer.events] == ["cancelled"]
    assert consumer.status.status_code is StatusCode.UNSET


def squarer() -> JobWorker:
    worker = JobWorker("squarer")

    @worker.job("square")
    async def square(job: JobContext) -> dict[str, Any]:
        await job.update({"percent": 50})
        return {"result": job.payload["x"] ** 2}

    @worker.job("block")
    async def block(job: JobContext) -> None:
        await job.update({"started": True})
        await anyio.sleep_forever()

    @worker.job("refuse")
    async def refuse(job: JobContext) -> None:
        raise JobFailed("not today", response={"why": "test"})

    return worker


async def test_a_jobs_spans_nest_under_the_callers_span(telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    async with MemoryBus() as bus:
        await bus.subscribe(squarer())
        with tracer.start_as_current_span("handle a request") as outer:
            result = await request(bus, "squarer", {"x": 7}, job_name="square", timeout=TIMEOUT)
        await bus.wait_idle()
    assert result.response == {"result": 49}
    (caller,) = telemetry.spans(SpanKind.CLIENT)
    (worker,) = telemetry.spans(SpanKind.SERVER)
    assert caller.name == "job square"
    assert worker.name == "run job square"
    assert parent_id(caller) == outer.get_span_context().span_id
    spans = telemetry.spans()
    assert {span.context.trace_id for span in spans} == {caller.context.trace_id}
    by_id = {span_id(span): span for span in spans}
    # The request: sent under the caller's job span; the worker's job runs under its send.
    (request_send,) = [s for s in spans if parent_id(s) == span_id(caller)]
    assert request_send.attributes is not None
    assert request_send.attributes["anybus.message.type"] == "BusJobRequestMessage"
    assert request_send.attributes["messaging.message.conversation_id"] == result.job_id
    assert parent_id(worker) == span_id(request_send)
    # The update and the response: sent under the worker's span, handled by the caller's
    # job client in consumer spans that are their children.
    answers = [s for s in spans if parent_id(s) == span_id(worker)]
    assert sorted(attribute(s, "anybus.message.type") for s in answers) == [
        "BusJobResponseMessage",
        "BusJobUpdateMessage",
    ]
    client_runs = [
        s
        for s in telemetry.spans(SpanKind.CONSUMER)
        if str((s.attributes or {})["messaging.consumer.group.name"]).startswith("anybus-jobs-")
        and by_id[parent_id(s) or 0] in answers
    ]
    assert len(client_runs) == 2
    assert caller.attributes is not None
    assert worker.attributes is not None
    assert caller.attributes["anybus.job.outcome"] == "completed"
    assert caller.attributes["anybus.job.worker"] == "squarer"
    assert worker.attributes["anybus.job.outcome"] == "completed"
    assert [event.name for event in caller.events] == ["answer", "answer"]
    assert caller.end_time is not None
    assert worker.end_time is not None
    assert caller.end_time >= worker.end_time
    for side in ("caller", "worker"):
        point = telemetry.value(
            "anybus.job.duration", anybus__job__side=side, anybus__job__outcome="completed"
        )
        assert point.count == 1


async def test_a_failed_job_marks_both_sides(telemetry: Telemetry) -> None:
    async with MemoryBus() as bus:
        await bus.subscribe(squarer())
        with pytest.raises(JobFailed):
            await request(bus, "squarer", job_name="refuse", timeout=TIMEOUT)
        await bus.wait_idle()
    (caller,) = telemetry.spans(SpanKind.CLIENT)
    (worker,) = telemetry.spans(SpanKind.SERVER)
    for span in (caller, worker):
        assert span.attributes is not None
        assert span.attributes["anybus.job.outcome"] == "failed"
        assert span.status.status_code is StatusCode.ERROR


async def test_a_job_left_early_is_abandoned_and_one_never_sent_unavailable(
    telemetry: Telemetry,
) -> None:
    async with MemoryBus() as bus:
        await bus.subscribe(squarer())
        async with open_job(bus, "squarer", {"x": 2}, job_name="square"):
            pass  # left before the answer came
        with pytest.raises(WorkerUnavailable):
            await request(bus, "nobody", presence="require")
        await bus.wait_idle()
    abandoned, unavailable = telemetry.spans(SpanKind.CLIENT)
    assert abandoned.attributes is not None
    assert unavailable.attributes is not None
    assert abandoned.attributes["anybus.job.outcome"] == "abandoned"
    assert abandoned.status.status_code is StatusCode.UNSET
    assert unavailable.attributes["anybus.job.outcome"] == "unavailable"
    assert unavailable.status.status_code is StatusCode.ERROR
    assert unavailable.attributes["error.type"] == "WorkerUnavailable"
    assert trace.get_current_span() is trace.INVALID_SPAN  # the job spans were detached


async def test_a_cancelled_job_sends_its_cancel_in_the_jobs_span(telemetry: Telemetry) -> None:
    async with MemoryBus() as bus:
        await bus.subscribe(squarer())
        with anyio.fail_after(TIMEOUT):
            async with open_job(bus, "squarer", job_name="block") as job:
                async for update in job.updates():
                    assert update == {"started": True}
                    break
            await bus.wait_idle()  # the worker has answered the cancel
    (caller,) = telemetry.spans(SpanKind.CLIENT)
    (worker,) = telemetry.spans(SpanKind.SERVER)
    sent = {
        attribute(s, "anybus.message.type"): s
        for s in telemetry.spans(SpanKind.PRODUCER)
        if parent_id(s) == span_id(caller)
    }
    assert set(sent) == {"BusJobRequestMessage", "BusJobCancelMessage"}
    assert attribute(caller, "anybus.job.outcome") == "abandoned"
    assert attribute(worker, "anybus.job.outcome") == "cancelled"
    assert worker.status.status_code is StatusCode.UNSET


async def test_jobs_left_in_any_order_leave_no_span_current(telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    async with MemoryBus() as bus:
        await bus.subscribe(squarer())
        with tracer.start_as_current_span("caller") as outer:
            first = open_job(bus, "squarer", {"x": 1}, job_name="square")
            second = open_job(bus, "squarer", {"x": 2}, job_name="square")
            await first.__aenter__()
            await second.__aenter__()
            assert trace.get_current_span() is outer  # the caller's code is in its own span
            await first.result()
            await second.result()
            await first.__aexit__(None, None, None)  # left first, entered first
            await second.__aexit__(None, None, None)
            assert trace.get_current_span() is outer
        await bus.wait_idle()
    assert trace.get_current_span() is trace.INVALID_SPAN
    jobs = telemetry.spans(SpanKind.CLIENT)
    assert len(jobs) == 2
    for job in jobs:
        assert parent_id(job) == outer.get_span_context().span_id
        assert attribute(job, "anybus.job.outcome") == "completed"


async def test_a_request_that_timed_out_waiting_for_its_worker_is_unavailable(
    telemetry: Telemetry,
) -> None:
    async with MemoryBus() as bus:
        with pytest.raises(WorkerUnavailable):
            await request(bus, "nobody", timeout=0.05)
    (job,) = telemetry.spans(SpanKind.CLIENT)
    assert attribute(job, "anybus.job.outcome") == "unavailable"
    assert job.status.status_code is StatusCode.ERROR
    assert [event.name for event in job.events] == ["cancelled"]
    assert telemetry.spans(SpanKind.PRODUCER) == []  # nothing was sent


async def test_instrumenting_a_running_bus_traces_its_next_messages(
    telemetry: Telemetry,
) -> None:
    anybus.otel.uninstrument()
    recorder = RecordingSubscriber("r")
    async with MemoryBus() as bus:
        await bus.subscribe(recorder)
        await bus.send(BusDataMessage(source="test"))
        await bus.wait_idle()  # its worker runs (parked), not instrumented
        anybus.otel.instrument(
            tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
        )
        await bus.send(BusDataMessage(source="test"))
        await bus.wait_idle()
        assert len(telemetry.spans(SpanKind.CONSUMER)) == 1
        anybus.otel.uninstrument()
        await bus.send(BusDataMessage(source="test"))
        await bus.wait_idle()
    assert len(recorder.messages) == 3
    assert len(telemetry.spans(SpanKind.CONSUMER)) == 1
    assert len(telemetry.spans(SpanKind.PRODUCER)) == 1
    anybus.otel.instrument()  # (the fixture uninstruments on the way out)


async def test_a_thread_sends_and_requests_in_its_own_span(telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    async with MemoryBus() as bus:
        await bus.subscribe(squarer())
        await bus.subscribe(RecordingSubscriber("r"))
        with anyio.fail_after(TIMEOUT):
            async with open_thread_portal(bus) as portal:

                def from_thread() -> tuple[int, Any]:
                    with tracer.start_as_current_span("in a thread") as span:
                        portal.send(BusDataMessage(source="thread"))
                        result = portal.request("squarer", {"x": 3}, job_name="square")
                    return span.get_span_context().span_id, result.response

                thread_span, response = await anyio.to_thread.run_sync(from_thread)
            await bus.wait_idle()
    (data_send,) = [
        s
        for s in telemetry.spans(SpanKind.PRODUCER)
        if attribute(s, "anybus.message.type") == "BusDataMessage"
    ]
    (job,) = telemetry.spans(SpanKind.CLIENT)
    assert parent_id(data_send) == thread_span
    assert parent_id(job) == thread_span
    assert response == {"result": 9}


async def test_presence_traffic_is_not_traced(telemetry: Telemetry) -> None:
    async with MemoryBus() as bus:
        await bus.subscribe(squarer())
        await anybus.wait_for_worker(bus, "squarer", timeout=TIMEOUT)
        await bus.wait_idle()
    types = {(s.attributes or {}).get("anybus.message.type") for s in telemetry.spans()}
    assert not {t for t in types if "Presence" in str(t) or "Goodbye" in str(t)}


async def test_the_metrics_are_what_statistics_says(telemetry: Telemetry) -> None:
    block = anyio.Event()

    async def wait(message: BusMessage) -> None:
        await block.wait()

    async def fail(message: BusMessage) -> None:
        raise RuntimeError("no")

    async with MemoryBus() as bus:
        await bus.subscribe(
            RecordingSubscriber("slow", handler=wait), max_buffer=2, overflow="drop_newest"
        )
        await bus.subscribe(RecordingSubscriber("failing", handler=fail))
        for _ in range(6):
            await bus.send(BusDataMessage(source="test"))
        await bus.send(BusSystemMessage(source="test"))
        await anyio.wait_all_tasks_blocked()
        statistics = bus.statistics()
        assert telemetry.value("messaging.client.sent.messages", bus) == statistics.sent == 7
        value = telemetry.value
        for sub in statistics.subscriptions:
            name = sub.name
            assert value("messaging.client.consumed.messages", bus, name) == sub.delivered
            assert telemetry.value("anybus.messages.dropped", bus, name) == sub.dropped
            assert telemetry.value("anybus.messages.refused", bus, name) == sub.refused
            assert telemetry.value("anybus.messages.undelivered", bus, name) == sub.undelivered
            assert telemetry.value("anybus.handler.failures", bus, name) == sub.handler_failures
            for lane, queued in (("system", sub.queued_system), ("data", sub.queued_data)):
                assert value("anybus.inbox.depth", bus, name, anybus__lane=lane) == queued
        slow = {s.name: s for s in statistics.subscriptions}["slow"]
        assert slow.dropped > 0
        assert slow.queued_data > 0
        assert {s.name: s for s in statistics.subscriptions}["failing"].handler_failures == 7
        block.set()
        await bus.wait_idle()
        delivered = sum(s.delivered for s in bus.statistics().subscriptions)
        latencies = sum(point.count for _, point in telemetry.points("anybus.message.latency"))
        assert latencies == delivered
    label = anybus.otel.bus_label(bus)
    assert label.startswith("MemoryBus-")
    labels = {attributes["anybus.bus"] for attributes, _ in telemetry.points("anybus.inbox.depth")}
    assert label in labels


async def test_a_traced_message_still_copies_and_pickles(telemetry: Telemetry) -> None:
    async with MemoryBus() as bus:
        await bus.subscribe(RecordingSubscriber("r"))
        await bus.send(message := BusDataMessage(source="test", target="t"))
        await bus.wait_idle()
    for copied in (copy.deepcopy(message), pickle.loads(pickle.dumps(message))):
        assert copied == message
        assert trace_of(copied) == trace_of(message)


async def test_uninstrument_stops_it_all(telemetry: Telemetry) -> None:
    anybus.otel.uninstrument()
    assert not anybus.otel.is_instrumented()
    assert WorkerBus.send is _plain_send
    assert state.handler_wrapper is None
    assert state.jobs is None
    async with MemoryBus() as bus:
        await bus.subscribe(recorder := RecordingSubscriber("r"))
        await bus.send(message := BusDataMessage(source="test"))
        await bus.wait_idle()
        assert telemetry.points("messaging.client.sent.messages") == []
    assert recorder.messages == [message]
    assert trace_of(message) is None
    assert TRACE_KEY not in message.__dict__
    assert telemetry.spans() == []
    anybus.otel.uninstrument()  # a no-op


async def test_a_worker_started_before_uninstrument_stops_tracing_at_once(
    telemetry: Telemetry,
) -> None:
    recorder = RecordingSubscriber("r")
    async with MemoryBus() as bus:
        await bus.subscribe(recorder)
        await bus.send(BusDataMessage(source="test"))
        await bus.wait_idle()  # the worker runs, its handler wrapped
        anybus.otel.uninstrument()
        await bus.send(BusDataMessage(source="test"))
        await bus.wait_idle()
    assert len(recorder.messages) == 2
    assert len(telemetry.spans(SpanKind.CONSUMER)) == 1


def test_without_instrument_nothing_is_wrapped() -> None:
    assert not anybus.otel.is_instrumented()
    assert WorkerBus.send is _plain_send
    assert state.handler_wrapper is None
    assert state.jobs is None


def test_misuse_is_refused_with_the_parameter_named() -> None:
    with pytest.raises(TypeError, match="tracer_provider must be an opentelemetry TracerProvider"):
        anybus.otel.instrument(tracer_provider="console")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="meter_provider must be an opentelemetry MeterProvider"):
        anybus.otel.instrument(meter_provider=object())  # type: ignore[arg-type]
    assert not anybus.otel.is_instrumented()
    with instrumented(), pytest.raises(RuntimeError, match="instrumented already"):
        anybus.otel.instrument()


def test_every_metric_is_documented_with_a_kind_and_a_unit() -> None:
    assert len(METRICS) == 14
    page = (Path(__file__).resolve().parent.parent / "docs" / "observability.md").read_text()
    rows = {
        line.split("|")[1].strip(" `"): line
        for line in page.splitlines()
        if line.startswith("| `")
    }
    for name, info in METRICS.items():
        assert info.kind in ("counter", "gauge", "histogram"), name
        assert info.unit, name
        assert info.description.endswith("."), name
        assert f"| {info.kind} | `{info.unit}` |" in rows.get(name, ""), f"{name} not on the page"
