"""anybus.otel across the wire: the trace context in the envelope, the network buses, and one
trace across two processes (an asyncio caller and a trio worker over Redis, and back)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import msgpack  # type: ignore[import-untyped]
import pytest
from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import CarrierT, Setter, TextMapPropagator, default_setter
from opentelemetry.trace import SpanKind

from anybus import (
    BusDataMessage,
    JSONSerializer,
    MsgpackSerializer,
    Serializer,
    WireCodec,
    WorkerBus,
)
from anybus._hooks import TRACE_KEY, TraceContext, state, trace_of
from anybus.postgres import PostgresBus
from anybus.redis import RedisBus, RedisStreamBus
from anybus.testing import RecordingSubscriber

from .otel_support import Telemetry, attribute, instrumented, parent_id, span_id
from .postgres_support import unique_channel
from .redis_support import unique_name
from .serialization_support import Ping, registry, rejected

TIMEOUT = 20
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "otel_trace.py"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    with instrumented() as found:
        yield found


@pytest.fixture
def tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The codec writes trace contexts (as while instrumented), for the codec's own tests."""
    monkeypatch.setattr(state, "tracing", True)


# --- the envelope ---------------------------------------------------------------------------


class _PlainJSON:
    """A serializer of the user's (not one of anybus's own): the codec's general path."""

    name = "json"

    def encode(self, obj: dict[str, Any]) -> bytes:
        return JSONSerializer().encode(obj)

    def decode(self, data: bytes) -> Any:
        return JSONSerializer().decode(data)


def traced_ping() -> Ping:
    message = Ping(source="s", nonce=1)
    headers = {"traceparent": TRACEPARENT, "tracestate": "vendor=1"}
    message.__dict__[TRACE_KEY] = TraceContext(headers, 1_700_000_000_123_456_789)
    return message


@pytest.mark.parametrize(
    "serializer",
    [JSONSerializer(), MsgpackSerializer(), _PlainJSON()],
    ids=["json", "msgpack", "own"],
)
@pytest.mark.usefixtures("tracing")
def test_the_trace_context_travels_in_the_envelope(serializer: Serializer) -> None:
    codec = WireCodec(serializer, registry)
    message = traced_ping()
    envelope = codec.decode(codec.encode(message, sender="b", seq=1))
    assert envelope.message == message
    assert trace_of(envelope.message) == trace_of(message)
    untraced = codec.decode(codec.encode(Ping(source="s", nonce=1), sender="b", seq=2))
    assert trace_of(untraced.message) is None


def test_an_untraced_message_is_encoded_as_before(tracing: None) -> None:
    codec = WireCodec(registry=registry)
    assert b"trace" not in codec.encode(Ping(source="s", nonce=1), sender="b", seq=1)


def test_a_process_that_does_not_trace_sends_a_traced_message_on_untraced() -> None:
    codec = WireCodec(registry=registry)
    message = traced_ping()  # as if received from a process that traces
    data = codec.encode(message, sender="b", seq=1)
    assert b"trace" not in data
    assert trace_of(codec.decode(data).message) is None


@pytest.mark.usefixtures("tracing")
def test_the_signature_covers_the_trace_context() -> None:
    codec = WireCodec(registry=registry, signing_keys={"k": b"k" * 32})
    data = codec.encode(traced_ping(), sender="b", seq=1)
    assert codec.decode(data).message.__dict__[TRACE_KEY].headers["traceparent"] == TRACEPARENT
    tampered = data.replace(b"b7ad6b7169203331", b"0000000000000001")
    assert tampered != data
    assert rejected(codec, tampered).reason == "forged"


def _with_trace(codec: WireCodec, trace: Any) -> bytes:
    """An envelope from ``codec`` whose body carries ``trace`` (any value, valid or not)."""
    data = codec.encode(Ping(source="s", nonce=1), sender="b", seq=1)
    header = 5 + len(codec.serializer.name)  # unsigned: "AB", V, S, the name, K = 0
    body = codec.serializer.decode(data[header:])
    body["trace"] = trace
    if codec.serializer.name == "json":  # (json.dumps escapes what JSON can carry, surrogates too)
        return data[:header] + json.dumps(body).encode()
    # msgpack: text written as it comes, a lone surrogate as the invalid UTF-8 it makes
    packer = msgpack.Packer(unicode_errors="surrogatepass")
    packed: bytes = packer.pack(body)
    return data[:header] + packed


@pytest.mark.parametrize(
    "trace",
    [
        [{f"h{i}": "v" for i in range(9)}, 1],  # too many headers
        [{"traceparent": "x" * 513}, 1],  # a value too long
        [{"x" * 65: "v"}, 1],  # a name too long
        [{"traceparent": 7}, 1],  # not text
        [{"traceparent": TRACEPARENT}, -1],  # a negative time
        [{"traceparent": TRACEPARENT}],  # no time
        {"traceparent": TRACEPARENT},  # not [headers, sent_ns]
        "00-abc",
        [{"baggage": "k=\udcff"}, 1],  # not ASCII: a lone surrogate (msgpack: invalid UTF-8)
        [{"baggage": "k=caf\u00e9"}, 1],  # not ASCII
        [{"traceparent": "00-\n-01"}, 1],  # a control character
        [{"": "v"}, 1],  # an empty name
        [{"traceparent": TRACEPARENT}, 2**63],  # a time past 2262
        [{"traceparent": TRACEPARENT}, 1.5],  # not an int
        [[["traceparent", TRACEPARENT]], 1],  # headers not a map
    ],
    ids=[
        "headers",
        "value",
        "name",
        "type",
        "time",
        "short",
        "dict",
        "str",
        "surrogate",
        "non-ascii",
        "control",
        "empty-name",
        "huge-time",
        "float-time",
        "pairs",
    ],
)
@pytest.mark.parametrize(
    "serializer",
    [JSONSerializer(), MsgpackSerializer(), _PlainJSON()],
    ids=["json", "msgpack", "own"],
)
def test_a_hostile_trace_context_is_rejected_as_malformed(
    trace: Any, serializer: Serializer
) -> None:
    codec = WireCodec(serializer, registry)
    error = rejected(codec, _with_trace(codec, trace))
    assert error.reason == "malformed"


# --- the network buses ----------------------------------------------------------------------


@asynccontextmanager
async def bus_pair(
    kind: str, redis_url: str, postgres_dsn: str
) -> AsyncIterator[tuple[WorkerBus, WorkerBus]]:
    """A sender and a receiver on one channel of ``kind``."""
    sender: WorkerBus
    receiver: WorkerBus
    if kind == "postgres":
        channel = unique_channel()
        sender = PostgresBus(postgres_dsn, channel=channel, name="sender")
        receiver = PostgresBus(postgres_dsn, channel=channel, name="receiver")
    elif kind == "stream":
        stream = unique_name()
        sender = RedisStreamBus(redis_url, stream=stream, name="sender")
        receiver = RedisStreamBus(redis_url, stream=stream, name="receiver")
    else:
        channel = unique_name()
        sender = RedisBus(redis_url, channel=channel, name="sender")
        receiver = RedisBus(redis_url, channel=channel, name="receiver")
    async with receiver, sender:
        yield sender, receiver


@pytest.fixture
def dsn_if_postgres(request: pytest.FixtureRequest) -> str:
    """The shared Postgres's dsn, for the postgres cells only (the others need none)."""
    if "postgres" not in request.node.name:
        return ""
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["pubsub", "stream", "postgres"])
async def test_a_trace_crosses_each_network_bus(
    kind: str, redis_url: str, dsn_if_postgres: str, telemetry: Telemetry
) -> None:
    recorder = RecordingSubscriber("far", accepts=lambda m: isinstance(m, BusDataMessage))
    tracer = telemetry.tracer_provider.get_tracer("test")
    async with bus_pair(kind, redis_url, dsn_if_postgres) as (sender, receiver):
        await receiver.subscribe(recorder)
        with tracer.start_as_current_span("outer") as outer:
            await sender.send(message := BusDataMessage(source="test"))
        with anyio.fail_after(TIMEOUT):
            await recorder.wait_for_count(1)
            await receiver.wait_idle()
    (received,) = recorder.messages
    assert received == message
    assert received is not message  # it came over the wire
    carried = trace_of(received)
    assert carried is not None
    assert carried.headers["traceparent"].split("-")[1] == format(
        outer.get_span_context().trace_id, "032x"
    )
    (producer,) = telemetry.spans(SpanKind.PRODUCER)
    (consumer,) = [
        s
        for s in telemetry.spans(SpanKind.CONSUMER)
        if attribute(s, "messaging.consumer.group.name") == "far"
    ]
    assert parent_id(producer) == outer.get_span_context().span_id
    assert parent_id(consumer) == span_id(producer)
    assert consumer.context.trace_id == outer.get_span_context().trace_id
    where = receiver.transport.channel if kind != "stream" else receiver.transport.stream  # type: ignore[attr-defined]
    assert producer.name == consumer.name.replace("process", "send") == f"send {where}"
    assert attribute(consumer, "messaging.destination.name") == where


@pytest.mark.anyio
async def test_what_a_network_bus_rejects_is_counted_by_reason(
    redis_url: str, telemetry: Telemetry
) -> None:
    from .test_redis_bus import raw_publish

    channel = unique_name()
    recorder = RecordingSubscriber("r")
    async with (
        RedisBus(redis_url, channel=channel) as receiver,
        RedisBus(redis_url, channel=channel) as sender,
    ):
        await receiver.subscribe(recorder)
        for payload in (b"\x00 garbage", b"AB\x01\x04json\x00{}", b"AB\x09\x04json\x00{}"):
            await raw_publish(redis_url, channel, payload)
        await sender.send(after := BusDataMessage(source="t"))
        with anyio.fail_after(TIMEOUT):
            await recorder.wait_for(lambda seen: after in seen)
        statistics = receiver.transport_statistics()
        assert statistics.rejected == {"malformed": 2, "version": 1}
        for reason, count in statistics.rejected.items():
            assert (
                telemetry.value("anybus.messages.rejected", receiver, anybus__reason=reason)
                == count
            )
        assert telemetry.value("anybus.messages.received", receiver) == statistics.received
        assert telemetry.value("anybus.messages.missed", receiver) == statistics.missed == 0
        assert telemetry.value("anybus.messages.duplicates", receiver) == statistics.duplicates


class _Scripted(TextMapPropagator):
    """A propagator that writes ``headers`` (or raises ``failure``), and reads nothing (or
    raises it)."""

    def __init__(self, headers: dict[str, str], failure: Exception | None = None) -> None:
        self._headers = headers
        self._failure = failure

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        if self._failure is not None:
            raise self._failure
        for name, value in self._headers.items():
            setter.set(carrier, name, value)

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Any = None
    ) -> Context:
        if self._failure is not None:
            raise self._failure
        return context if context is not None else Context()

    @property
    def fields(self) -> set[str]:
        return set(self._headers)


@pytest.mark.anyio
async def test_headers_too_large_to_travel_are_left_out_and_logged_once(
    redis_url: str,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.WARNING, logger="anybus.otel")
    # one header too long, one not ASCII: either would make every receiver refuse the message
    oversized = _Scripted({"short": "1", "baggage": "x" * 600, "vendor": "caf\u00e9"})
    monkeypatch.setattr(propagate, "get_global_textmap", lambda: oversized)
    async with RedisBus(redis_url, channel=unique_name()) as bus:
        await bus.send(first := BusDataMessage(source="test"))
        await bus.send(BusDataMessage(source="test"))
    carried = trace_of(first)
    assert carried is not None
    assert dict(carried.headers) == {"short": "1"}
    assert caplog.text.count("left out of a message") == 1


@pytest.mark.anyio
async def test_a_failing_propagator_never_stops_a_message(
    redis_url: str,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from anybus.otel import _context

    caplog.set_level(logging.WARNING, logger="anybus.otel")
    monkeypatch.setattr(_context, "_logged", set())
    channel = unique_name()
    recorder = RecordingSubscriber("far", accepts=lambda m: isinstance(m, BusDataMessage))
    async with RedisBus(redis_url, channel=channel) as receiver:
        await receiver.subscribe(recorder)
        async with RedisBus(redis_url, channel=channel) as sender:
            broken = _Scripted({}, RuntimeError("the propagator broke"))
            monkeypatch.setattr(propagate, "get_global_textmap", lambda: broken)
            for _ in range(2):
                await sender.send(BusDataMessage(source="test"))
            with anyio.fail_after(TIMEOUT):
                await recorder.wait_for_count(2)
    assert caplog.text.count("could not write a trace context") == 1
    assert caplog.text.count("could not read a trace context") == 1
    producers = telemetry.spans(SpanKind.PRODUCER)
    assert len(producers) == 2  # ended, though injecting failed
    consumers = telemetry.spans(SpanKind.CONSUMER)
    assert [attribute(s, "messaging.consumer.group.name") for s in consumers] == ["far", "far"]


# --- two processes --------------------------------------------------------------------------


@pytest.mark.parametrize(("caller", "worker"), [("asyncio", "trio"), ("trio", "asyncio")])
def test_one_trace_crosses_two_processes(
    caller: str, worker: str, redis_url: str, tmp_path: Path
) -> None:
    spans_file = tmp_path / "spans.json"
    command = [sys.executable, "-W", "error", str(EXAMPLE), "--redis-url", redis_url]
    command += ["--backend", caller, "--worker-backend", worker, "--spans-out", str(spans_file)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "caller: resized to {'width': 960, 'height': 540}" in result.stdout
    spans: list[dict[str, Any]] = json.loads(spans_file.read_text())
    assert len({span["trace_id"] for span in spans}) == 1
    by_id = {span["span_id"]: span for span in spans}
    process = {span["span_id"]: span["process"] for span in spans}
    assert set(process.values()) == {f"caller · {caller}", f"worker · {worker}"}
    (job,) = [s for s in spans if s["name"] == "job resize"]
    (run,) = [s for s in spans if s["name"] == "run job resize"]
    assert job["parent_id"] is None
    assert job["kind"] == "CLIENT"
    assert job["attributes"]["anybus.job.outcome"] == "completed"
    # The worker's job runs under the caller's request send...
    request_send = by_id[run["parent_id"]]
    assert request_send["parent_id"] == job["span_id"]
    assert request_send["attributes"]["anybus.message.type"] == "BusJobRequestMessage"
    assert process[run["span_id"]] != process[request_send["span_id"]]
    # ...and the caller handles the worker's answers under the worker's sends.
    answered = [
        s
        for s in spans
        if s["kind"] == "CONSUMER"
        and process[s["span_id"]] == f"caller · {caller}"
        and by_id.get(s["parent_id"], {}).get("parent_id") == run["span_id"]
    ]
    types = sorted(by_id[s["parent_id"]]["attributes"]["anybus.message.type"] for s in answered)
    assert types == ["BusJobResponseMessage", "BusJobUpdateMessage", "BusJobUpdateMessage"]
