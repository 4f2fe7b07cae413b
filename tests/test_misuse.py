"""The mistakes of a first hour, refused at once with a message that says what to do, and
leaving the bus as it was: a bus called from another thread, jobs on a bus that is not
running, sync job handlers and filters, waiting for idle from a handler, a wrong password.
On both backends; the network cases against the shared servers or a private one."""

from __future__ import annotations

import asyncio
import functools
import math
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from anybus import (
    BusDataMessage,
    BusMessage,
    BusStateError,
    BusSubscriber,
    JobContext,
    JobError,
    JobWorker,
    JSONSerializer,
    MemoryBus,
    MessageRejected,
    PipecatWireCodec,
    SerializationError,
    TransportError,
    WireCodec,
    job_handler,
    open_job,
    open_thread_portal,
    register_message,
    request,
    wait_for_worker,
    worker_directory,
)
from anybus.redis import RedisBus
from anybus.testing import RecordingSubscriber

from .redis_support import RedisServer

pytestmark = pytest.mark.anyio

TIMEOUT = 10


# --- a bus used from another thread -------------------------------------------------------


@pytest.mark.parametrize("bounded", [False, True], ids=["fast-path", "bounded"])
async def test_a_send_from_another_thread_is_refused_and_the_bus_goes_on(bounded: bool) -> None:
    seen = RecordingSubscriber("seen")
    async with MemoryBus(max_buffer=10 if bounded else None) as bus:
        await bus.subscribe(seen)
        await bus.send(first := BusDataMessage(source="main"))
        await bus.wait_idle()  # the worker waits for the next message: a send must wake it

        def in_its_own_loop() -> BaseException | None:
            try:
                asyncio.run(bus.send(BusDataMessage(source="thread")))
            except BaseException as exc:
                return exc
            return None

        error = await anyio.to_thread.run_sync(in_its_own_loop)
        with anyio.fail_after(TIMEOUT):
            await bus.send(last := BusDataMessage(source="main"))
            await bus.wait_idle()
    assert isinstance(error, RuntimeError)
    assert "runs in another thread's event loop" in str(error)
    assert "open_thread_portal(bus)" in str(error)
    assert seen.messages == [first, last]  # the bus delivers as before


async def test_a_call_from_another_thread_does_not_move_the_bus_to_it() -> None:
    seen = RecordingSubscriber("seen")
    async with MemoryBus() as bus:
        await bus.subscribe(seen)
        await bus.subscribe(RecordingSubscriber("other"))

        def in_its_own_loop() -> None:
            asyncio.run(bus.unsubscribe("other"))  # not checked, but it must not re-home send

        await anyio.to_thread.run_sync(in_its_own_loop)
        with anyio.fail_after(TIMEOUT):
            await bus.send(message := BusDataMessage(source="main"))
            await bus.wait_idle()
    assert seen.messages == [message]


async def test_the_thread_portal_raises_what_its_block_raises() -> None:
    async with MemoryBus() as bus:
        with pytest.raises(ValueError, match="the block's own") as raised:
            async with open_thread_portal(bus):
                raise ValueError("the block's own") from KeyError("its cause")
        assert isinstance(raised.value.__cause__, KeyError)
        with pytest.raises(RuntimeError):  # called from the event loop's thread
            async with open_thread_portal(bus) as portal:
                portal.send(BusDataMessage(source="t"))


# --- jobs on a bus that is not running ----------------------------------------------------


def worker_with_a_job() -> JobWorker:
    worker = JobWorker("w")

    @worker.job("ok")
    async def ok(job: JobContext) -> dict[str, Any]:
        return {}

    return worker


async def test_jobs_and_waits_on_a_bus_not_running_are_refused_at_once() -> None:
    bus = MemoryBus()  # never entered
    await bus.subscribe(worker_with_a_job())
    with anyio.fail_after(TIMEOUT):
        with pytest.raises(BusStateError, match="is not running: run jobs in 'async with bus:'"):
            await request(bus, "w", job_name="ok")
        with pytest.raises(BusStateError, match="is not running: run jobs"):
            async with open_job(bus, "w", job_name="ok"):
                pass
        with pytest.raises(BusStateError, match="is not running: wait for workers"):
            await wait_for_worker(bus, "w")


async def test_a_job_that_was_never_entered_says_so() -> None:
    async with MemoryBus() as bus:
        await bus.subscribe(worker_with_a_job())
        job = open_job(bus, "w", job_name="ok")  # no 'async with': never sent
        with anyio.fail_after(TIMEOUT), pytest.raises(RuntimeError, match="was never sent"):
            await job.result()
        with anyio.fail_after(TIMEOUT):
            assert (await request(bus, "w", job_name="ok")).response == {}


# --- handlers and filters that are not coroutine functions, and the like -------------------


def test_sync_job_handlers_are_refused_when_registered() -> None:
    worker = JobWorker("w")

    def sync(job: JobContext) -> dict[str, Any]:
        return {}

    with pytest.raises(TypeError, match="for jobs named 'sync' is not a coroutine function"):
        worker.job("sync")(sync)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="job handlers must be 'async def handler\\(job\\)'"):
        JobWorker("w", handlers={"s": lambda job: {}})  # type: ignore[dict-item]

    with pytest.raises(TypeError, match="for jobs named 'm' is not a coroutine function"):

        class Worker(JobWorker):
            @job_handler("m")
            def m(self, job: JobContext) -> None:
                pass


async def test_an_async_filter_and_a_lone_type_are_refused_when_subscribed() -> None:
    class Filtering(BusSubscriber):
        name = "f"

        async def accepts_bus_message(self, message: BusMessage) -> bool:  # type: ignore[override]
            return False

        async def on_bus_message(self, message: BusMessage) -> None:
            pass

    async with MemoryBus() as bus:
        with pytest.raises(TypeError, match="accepts_bus_message is a coroutine function"):
            await bus.subscribe(Filtering())
        with pytest.raises(TypeError, match="write types=\\[BusDataMessage\\]"):
            await bus.subscribe(RecordingSubscriber("r"), types=BusDataMessage)  # type: ignore[call-overload]
        assert bus.subscribers == []


async def test_wait_idle_from_a_handler_is_refused() -> None:
    raised: list[BaseException] = []
    async with MemoryBus() as bus:

        async def handler(message: BusMessage) -> None:
            try:
                await bus.wait_idle()
            except RuntimeError as exc:
                raised.append(exc)

        await bus.subscribe(handler, name="h")
        await bus.send(BusDataMessage(source="t"))
        with anyio.fail_after(TIMEOUT):
            await bus.wait_idle()
    assert len(raised) == 1
    assert "wait_idle() called from a handler of" in str(raised[0])


def test_create_schema_must_be_a_bool() -> None:
    from anybus.postgres import PostgresBus

    with pytest.raises(TypeError, match="create_schema must be True or False, got 'false'"):
        PostgresBus("postgresql://127.0.0.1/test", channel="c", create_schema="false")  # type: ignore[arg-type]


# --- a message that cannot be encoded leaves no gap ----------------------------------------


@register_message(name="tests.misuse.Carrying")
@dataclass(kw_only=True)
class Carrying(BusDataMessage):
    value: object = None


async def test_a_send_that_cannot_be_encoded_leaves_no_gap_at_the_receivers(
    redis_url: str,
) -> None:
    channel = f"misuse-{socket.gethostname()}-{id(object())}"
    far = RecordingSubscriber("far")
    refused: list[BaseException] = []
    async with (
        RedisBus(redis_url, channel=channel, name="sender") as sender,
        RedisBus(redis_url, channel=channel, name="receiver") as receiver,
    ):
        await receiver.subscribe(far)

        async def handler(message: BusMessage) -> None:
            if message.source == "trigger":
                try:
                    await sender.send(Carrying(source="handler", value=object()))
                except SerializationError as exc:
                    refused.append(exc)
                await sender.send(Carrying(source="handler", value=1))

        await sender.subscribe(handler, name="h", types=[Carrying])
        await sender.send(Carrying(source="trigger"))
        with anyio.fail_after(TIMEOUT):
            await far.wait_for_count(2)
            await receiver.wait_idle()
        stats = receiver.transport_statistics()
    assert len(refused) == 1
    assert (stats.gaps, stats.missed) == (0, 0)


# --- credentials the server refuses -------------------------------------------------------


@pytest.fixture
def guarded_redis() -> Iterator[RedisServer]:
    """A private redis-server that asks for the password ``s3cret``."""
    server = RedisServer()
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
            conn.sendall(b"CONFIG SET requirepass s3cret\r\n")
            assert conn.recv(100).startswith(b"+OK")
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("credentials", [":wrong@", "", "bob:s3cret@"])
async def test_a_refused_password_fails_at_once_and_says_so(
    guarded_redis: RedisServer, credentials: str
) -> None:
    url = f"redis://{credentials}127.0.0.1:{guarded_redis.port}"
    with anyio.fail_after(TIMEOUT), pytest.raises(TransportError) as raised:
        async with RedisBus(url, connect_timeout=None):  # it would wait forever before
            pass
    assert f"redis at 127.0.0.1:{guarded_redis.port} refused this client (" in str(raised.value)
    assert "check the url's user and password" in str(raised.value)
    async with RedisBus(f"redis://:s3cret@127.0.0.1:{guarded_redis.port}") as bus:
        assert bus.transport_statistics().connected


@pytest.mark.parametrize(
    ("dsn_part", "reason"),
    [
        ("nosuchrole@127.0.0.1:5432/test", 'role "nosuchrole" does not exist'),
        ("postgres@127.0.0.1:5432/nosuchdb", 'database "nosuchdb" does not exist'),
    ],
)
async def test_a_role_or_database_the_server_refuses_fails_at_once(
    postgres_dsn: str, dsn_part: str, reason: str
) -> None:
    from anybus.postgres import PostgresBus

    with anyio.fail_after(TIMEOUT), pytest.raises(TransportError) as raised:
        async with PostgresBus(f"postgresql://{dsn_part}", channel="c", connect_timeout=60):
            pass
    assert f"refused the connection: {reason}; check the dsn (its user, password" in str(
        raised.value
    )


# --- options refused when the bus is made ---------------------------------------------------


async def sync_hook(name: str, message: BusMessage, error: Exception) -> None:
    pass


def bad(value: object) -> Any:
    """``value``, typed as anything: what a caller without a type checker may pass."""
    return value


def _postgres_bus(**options: Any) -> Any:
    from anybus.postgres import PostgresBus

    return PostgresBus("postgresql://127.0.0.1/test", channel="c", **options)


def _stream_bus(**options: Any) -> Any:
    from anybus.redis import RedisStreamBus

    return RedisStreamBus(**options)


@pytest.mark.parametrize(
    ("make", "error", "says"),
    [
        (lambda: RedisBus(connect_timeout=0), ValueError, "connect_timeout must be a number of"),
        (lambda: RedisBus(connect_timeout=-1), ValueError, "(or None: no limit); got -1"),
        (
            lambda: RedisBus(connect_timeout=bad("5")),
            ValueError,
            "connect_timeout must be a number",
        ),
        (lambda: RedisBus(request_timeout=-1), ValueError, "request_timeout must be a number"),
        (
            lambda: RedisBus(channel=bad(5)),
            ValueError,
            "channel must be a non-empty string, got 5",
        ),
        (lambda: RedisBus(channel=""), ValueError, "channel must be a non-empty string"),
        (
            lambda: RedisBus(bad(6379)),
            TypeError,
            "url must be a redis:// url (str) or RedisSettings",
        ),
        (lambda: RedisBus(codec=bad(JSONSerializer())), TypeError, "codec=WireCodec(serializer="),
        (lambda: _stream_bus(send_deadline=0), ValueError, "send_deadline must be a number"),
        (lambda: _stream_bus(stream=""), ValueError, "stream must be a non-empty string"),
        (lambda: MemoryBus(exit_drain=math.nan), ValueError, "exit_drain must be a number of"),
        (
            lambda: MemoryBus(on_handler_error=bad(5)),
            TypeError,
            "on_handler_error must be an 'async",
        ),
        (
            lambda: MemoryBus(on_handler_error=bad(lambda name, message, error: None)),
            TypeError,
            "on_handler_error must be an 'async def hook(subscriber_name, message, error)'",
        ),
        (lambda: _postgres_bus(codec=JSONSerializer()), TypeError, "codec must be a WireCodec"),
    ],
)
def test_bad_options_are_refused_when_the_bus_is_made(
    make: Callable[[], object], error: type[Exception], says: str
) -> None:
    with pytest.raises(error) as raised:
        make()
    assert says in str(raised.value)


def test_good_options_are_taken() -> None:
    @functools.wraps(sync_hook)
    def wrapped(name: str, message: BusMessage, error: Exception) -> Awaitable[None]:
        return sync_hook(name, message, error)

    MemoryBus(exit_drain=0, on_handler_error=sync_hook)
    MemoryBus(exit_drain=math.inf, on_handler_error=wrapped)  # a wrapper of an async def
    RedisBus(connect_timeout=None, codec=WireCodec())
    RedisBus(connect_timeout=math.inf, codec=PipecatWireCodec())
    _postgres_bus(codec=WireCodec())

    class Delegating:  # a codec that passes its keyword arguments on
        def __init__(self) -> None:
            self.inner = WireCodec()

        def encode(self, message: BusMessage, **options: Any) -> bytes:
            return self.inner.encode(message, **options)

        def decode(self, data: bytes) -> Any:
            return self.inner.decode(data)

    RedisBus(codec=bad(Delegating()))


async def test_bad_job_arguments_are_refused_at_once() -> None:
    async with MemoryBus() as bus:
        await bus.subscribe(worker_with_a_job())
        with anyio.fail_after(TIMEOUT):
            with pytest.raises(TypeError, match="payload must be a mapping"):
                await request(bus, "w", [1, 2], job_name="ok")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="timeout must be a number of seconds"):
                await request(bus, "w", job_name="ok", timeout=-1)
            with pytest.raises(ValueError, match="timeout must be a number of seconds"):
                await request(bus, "w", job_name="ok", timeout=math.nan)
            with pytest.raises(ValueError, match="worker must name a worker or pool"):
                await request(bus, 5, job_name="ok")  # type: ignore[arg-type]


async def test_a_handler_that_returns_no_dict_is_told_what_to_return() -> None:
    worker = JobWorker("w")

    @worker.job("list")
    async def returns_a_list(job: JobContext) -> Any:
        return [1, 2]

    async with MemoryBus() as bus:
        await bus.subscribe(worker)
        with anyio.fail_after(TIMEOUT), pytest.raises(JobError) as raised:
            await request(bus, "w", job_name="list")
    assert "a job handler returns a dict (its response) or None" in str(raised.value)


async def test_receiving_from_a_closed_listener_says_why() -> None:
    async with MemoryBus() as bus:
        async with bus.listen(name="late") as messages:
            pass
        with pytest.raises(anyio.ClosedResourceError, match="the listener 'late' was closed"):
            await messages.receive()


async def test_what_is_not_a_bus_is_refused_where_a_bus_is_taken() -> None:
    says = r"bus must be an anybus bus \(a WorkerBus: MemoryBus, .*\), got None"
    with anyio.fail_after(TIMEOUT):
        with pytest.raises(TypeError, match=says):
            await request(None, "w", job_name="ok")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=says):
            open_job(None, "w")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=says):
            async with open_thread_portal(None):  # type: ignore[arg-type]
                pass
        with pytest.raises(TypeError, match=says):
            await wait_for_worker(None, "w")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=says):
            await worker_directory(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("codec", [WireCodec(), PipecatWireCodec()], ids=["anybus", "pipecat"])
def test_a_codec_given_text_to_decode_says_it_takes_bytes(codec: Any) -> None:
    with pytest.raises(TypeError, match="data must be the bytes off the wire, got str"):
        codec.decode('{"__type__": "x"}')
    with pytest.raises(MessageRejected, match="malformed"):
        codec.decode(bytearray(b"not a message"))  # bytes-like is taken, and checked
