"""Options and arguments a caller without a type checker gets wrong — a float where a count
goes, a name Redis would refuse, a decorator used without its call, a hook of the wrong kind —
each refused at once with a message naming the option, or (a name Redis refuses as a client
name) taken as it is. On both backends; the Redis cases against the shared server."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from click.testing import CliRunner

from anybus import (
    BusDataMessage,
    BusMessage,
    BusSubscriber,
    JobContext,
    JobWorker,
    MemoryBus,
    TransportError,
    WireCodec,
    job_handler,
    open_job,
)
from anybus.redis import RedisBus, RedisSettings, RedisStreamBus
from anybus.testing import RecordingSubscriber

from .redis_support import shared_redis_url, unique_name

pytestmark = pytest.mark.anyio

TIMEOUT = 10


def bad(value: object) -> Any:
    """``value``, typed as anything: what a caller without a type checker may pass."""
    return value


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda: RedisStreamBus(max_len=bad(1.5)), "max_len must be an integer of at least 1"),
        (lambda: RedisStreamBus(max_len=bad(math.nan)), "max_len must be an integer"),
        (lambda: RedisStreamBus(read_batch=bad(None)), "read_batch must be an integer"),
        (lambda: RedisStreamBus(outbox=bad("5")), "outbox must be an integer of at least 1"),
        (lambda: RedisStreamBus(lease=math.nan), "lease must be a number of seconds"),
        (lambda: RedisStreamBus(lease=math.inf), "lease must be a finite number"),
        (lambda: RedisStreamBus(dedupe=bad(True)), "dedupe must be an integer of at least 0"),
        (lambda: RedisStreamBus(name=bad(5)), "name must be a non-empty string"),
        (lambda: RedisStreamBus(name=""), "name must be a non-empty string"),
        (lambda: RedisBus(inbound_buffer=bad(None)), "inbound_buffer must be an integer"),
        (lambda: RedisBus(dedupe=bad(1.5)), "dedupe must be an integer of at least 0"),
        (lambda: RedisBus(name=bad(b"x")), "name must be a non-empty string"),
        (lambda: RedisSettings(port=bad("6379")), "port must be an integer from 1 to 65535"),
        (lambda: RedisSettings(request_timeout=-1), "request_timeout must be a number of"),
        (lambda: RedisSettings(request_timeout=math.nan), "request_timeout must be a number"),
        (lambda: RedisSettings(reconnect_growth=bad(1.5)), "reconnect_growth must be an integer"),
        (lambda: RedisSettings(tls=bad("yes")), "tls must be True or False"),
        (lambda: RedisBus(request_timeout=math.inf), "request_timeout must be a finite"),
        (lambda: RedisBus(codec=bad(WireCodec)), "write codec=WireCodec()"),
        (lambda: WireCodec(serializer=bad(5)), "serializer must be a serializer"),
        (lambda: WireCodec(registry=bad("x")), "registry must be a MessageRegistry"),
        (lambda: WireCodec(signing_keys=bad("k")), "signing_keys takes a mapping"),
        (lambda: WireCodec(clock=bad(5)), "clock must be a function"),
        (lambda: JobWorker("w", heartbeat=math.nan), "heartbeat must be a positive number"),
        (lambda: JobWorker("w", heartbeat=math.inf), "heartbeat must be a positive number"),
        (lambda: JobWorker("w", presence=bad("no")), "presence must be True or False"),
        (lambda: JobWorker("w", handlers=bad([len])), "handlers takes a mapping"),
        (lambda: JobWorker("w", handlers=bad({5: _job})), "a job name must be a str or None"),
        (lambda: JobWorker("w").job(bad(5)), "a job name must be a str or None, got 5"),
        (lambda: job_handler(bad(5)), "a job name must be a str or None"),
    ],
)
def test_bad_options_are_refused_naming_them(make: Callable[[], object], says: str) -> None:
    with pytest.raises((ValueError, TypeError)) as raised:
        make()
    assert says in str(raised.value)


async def _job(job: JobContext) -> None:
    pass


def test_a_job_decorator_without_its_call_is_refused() -> None:
    worker = JobWorker("w")
    with pytest.raises(TypeError, match=r"write @job_handler\(\) \(or @worker.job\(\)\)"):
        worker.job(bad(_job))
    with pytest.raises(TypeError, match="got the function"):

        class Worker(JobWorker):
            async def resize(self, job: JobContext) -> None:
                pass

            resize = job_handler(bad(resize))  # type: ignore[assignment] # @job_handler without ()


def test_a_nan_timeout_on_the_command_line_is_refused() -> None:
    from anybus._cli import cli

    result = CliRunner().invoke(cli, ["sub", "--connect-timeout", "nan"], prog_name="anybus")
    assert result.exit_code == 2
    assert "Invalid value for '--connect-timeout': 'nan' is not a number of seconds" in (
        result.output
    )


class AsyncBusy(BusSubscriber):
    name = "a"

    async def on_bus_message(self, message: BusMessage) -> None:
        pass

    async def is_busy(self) -> bool:  # type: ignore[override]
        return False


class SyncRunInBus(BusSubscriber):
    name = "b"

    async def on_bus_message(self, message: BusMessage) -> None:
        pass

    def run_in_bus(self, bus: Any) -> None:  # type: ignore[override]
        pass


async def test_a_class_checked_once_is_checked_again_when_a_method_is_replaced() -> None:
    """Subscribing checks a subscriber class once, not on every subscribe; a method replaced
    on the class after that (made sync, say) is found at the next subscribe."""

    class Replaced(BusSubscriber):
        async def on_bus_message(self, message: BusMessage) -> None:
            pass

    def sync_handler(self: Replaced, message: BusMessage) -> None:
        pass

    async def async_busy(self: Replaced) -> bool:
        return False

    first, second, third = Replaced(), Replaced(), Replaced()
    first.name, second.name, third.name = "first", "second", "third"
    async with MemoryBus() as bus:
        await bus.subscribe(first)
        Replaced.on_bus_message = sync_handler  # type: ignore[assignment,method-assign]
        with pytest.raises(TypeError, match=r"Replaced.on_bus_message is not a coroutine"):
            await bus.subscribe(second)
        del Replaced.on_bus_message  # back to BusSubscriber's, which is async
        Replaced.is_busy = async_busy  # type: ignore[assignment,method-assign]
        with pytest.raises(TypeError, match=r"Replaced.is_busy is a coroutine function"):
            await bus.subscribe(third)
        assert bus.subscribers == [first]


async def test_hooks_of_the_wrong_kind_and_bad_arguments_are_refused_at_once() -> None:
    async with MemoryBus() as bus:
        with pytest.raises(TypeError, match=r"AsyncBusy.is_busy is a coroutine function"):
            await bus.subscribe(AsyncBusy())
        with pytest.raises(TypeError, match=r"SyncRunInBus.run_in_bus is not a coroutine"):
            await bus.subscribe(SyncRunInBus())
        with pytest.raises(ValueError, match="name must be a non-empty string"):
            await bus.subscribe(_handler, name="")
        with pytest.raises(ValueError, match="name must be a non-empty string"):
            async with bus.listen(name=""):
                pass
        with pytest.raises(TypeError, match="types takes a list of message classes, got 5"):
            await bus.subscribe(_handler, types=bad(5))
        with pytest.raises(TypeError, match="targets takes a collection of names"):
            await bus.subscribe(_handler, targets=bad(5))
        with pytest.raises(TypeError, match=r"unsubscribe\(\) takes a subscriber or its name"):
            await bus.unsubscribe(bad(None))
        with pytest.raises(ValueError, match="drain must be a number of seconds"):
            await bus.stop(drain=-1)
        with pytest.raises(ValueError, match="drain must be a number of seconds"):
            await bus.stop(drain=math.nan)
        assert bus.statistics().subscriptions == ()
        assert bus.running  # nothing refused stopped it


async def _handler(message: BusMessage) -> None:
    pass


async def test_bad_job_options_and_answers_are_refused_at_once() -> None:
    answered: list[str] = []

    async def answers(job: JobContext) -> dict[str, Any]:
        try:
            await job.update(bad([1]))
        except TypeError as exc:
            answered.append(str(exc))
        try:
            await job.stream_data(bad("chunk"))
        except TypeError as exc:
            answered.append(str(exc))
        return {}

    async with MemoryBus() as bus:
        await bus.subscribe(JobWorker("w", handlers={None: answers}))
        with anyio.fail_after(TIMEOUT):
            for job_id in (bad(5), ""):
                with pytest.raises(ValueError, match="job_id must be a non-empty string"):
                    open_job(bus, "w", job_id=job_id)
            for timeout, says in (
                (math.nan, "a number of"),
                (-1, "a number of"),
                (math.inf, "finite"),
            ):
                with pytest.raises(ValueError, match=f"cancel_timeout must be {says}"):
                    open_job(bus, "w", cancel_timeout=timeout)
            async with open_job(bus, "w", cancel_timeout=0) as job:
                await job.result()
    assert answered == [
        "update must be a mapping (a dict) or None, got [1]",
        "chunk must be a mapping (a dict) or None, got 'chunk'",
    ]


# --- Redis -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pubsub", "stream"])
@pytest.mark.parametrize("name", ["worker 1", "a\nb", "café"])
async def test_a_name_redis_refuses_for_a_client_is_taken(kind: str, name: str) -> None:
    # Redis refuses spaces, newlines and non-ASCII in a client name; the bus names its
    # connections with the name made safe, so it starts (it used to report Redis unreachable).
    url, channel = shared_redis_url(), unique_name()
    bus = (
        RedisStreamBus(url, stream=channel, name=name)
        if kind == "stream"
        else RedisBus(url, channel=channel, name=name)
    )
    peer = (
        RedisStreamBus(url, stream=channel) if kind == "stream" else RedisBus(url, channel=channel)
    )
    seen = RecordingSubscriber("seen")
    with anyio.fail_after(TIMEOUT):
        async with bus, peer:
            await peer.subscribe(seen)
            await bus.send(BusDataMessage(source=name))
            await seen.wait_for_count(1)
    assert seen.messages[0].source == name


class Brittle:
    """A codec of one's own whose decode raises ValueError on what it cannot read."""

    def __init__(self) -> None:
        self.inner = WireCodec()

    def encode(self, message: BusMessage, *, sender: str, seq: int) -> bytes:
        return self.inner.encode(message, sender=sender, seq=seq)

    def decode(self, data: bytes) -> Any:
        if data.startswith(b"junk"):
            raise ValueError("not mine")
        return self.inner.decode(data)


async def test_a_codec_that_raises_something_else_is_counted_as_malformed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, channel = shared_redis_url(), unique_name()
    seen = RecordingSubscriber("seen")
    with anyio.fail_after(TIMEOUT):
        async with RedisBus(url, channel=channel, codec=bad(Brittle())) as bus:
            await bus.subscribe(seen)
            from anybus.redis._client import RedisClient

            raw = await RedisClient.create(RedisSettings.from_url(url), name="anybus-test-raw")
            try:
                await raw.command("PUBLISH", channel, "junk")
                async with RedisBus(url, channel=channel) as sender:
                    await sender.send(BusDataMessage(source="after"))
                    await seen.wait_for_count(1)
            finally:
                await raw.close()
            assert bus.transport_statistics().rejected == {"malformed": 1}
    assert "the codec's decode raised ValueError('not mine')" in caplog.text


async def test_a_store_the_server_refuses_says_why(caplog: pytest.LogCaptureFixture) -> None:
    # The stream's key holds a string: every store is refused (WRONGTYPE). The sender is
    # told why (it used to read "the connection broke"), and the log says so once.
    url, stream = shared_redis_url(), unique_name()
    from anybus.redis._client import RedisClient

    raw = await RedisClient.create(RedisSettings.from_url(url), name="anybus-test-raw")
    try:
        with anyio.fail_after(TIMEOUT):
            async with RedisStreamBus(url, stream=stream, send_deadline=0.5) as bus:
                await raw.command("DEL", stream)
                await raw.command("SET", stream, "not a stream")
                with (
                    caplog.at_level(logging.WARNING, "anybus.redis"),
                    pytest.raises(
                        TransportError, match=r"storing it failed .*another type"
                    ) as raised,
                ):
                    await bus.send(BusDataMessage(source="x"))
                await raw.command("DEL", stream)
    finally:
        await raw.close()
    assert "may have been" in str(raised.value)
    warnings = [r for r in caplog.records if "failed, trying again" in r.getMessage()]
    assert len(warnings) == 1
    assert "the key holds another type of value" in warnings[0].getMessage()


# --- Postgres ----------------------------------------------------------------------------


def _postgres_bus(**options: Any) -> Any:
    from anybus.postgres import PostgresBus

    return PostgresBus("postgresql://127.0.0.1/test", channel="c", **options)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"statement_timeout": math.inf}, "statement_timeout must be at most 2.14748e+06"),
        ({"statement_timeout": 30 * 86_400}, "statement_timeout must be at most"),
        ({"connect_timeout": math.inf}, "connect_timeout must be at most 86400 seconds"),
        ({"lease": math.inf}, "lease must be at most"),
        ({"retention": 1e12}, "retention must be at most"),
        ({"send_deadline": 0}, "send_deadline must be a number of seconds, more than 0"),
        ({"max_len": 2**70}, "max_len must be at most 2**63 - 1 (a bigint)"),
        ({"read_batch": 1.5}, "read_batch must be an integer"),
    ],
)
def test_bad_postgres_options_are_refused_naming_them(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        _postgres_bus(**options)


@pytest.mark.parametrize(
    ("query", "says"),
    [
        # The dsn's own options reach the server (they were dropped for the bus's own).
        ("options=-c%20work_mem%3Dlots", 'invalid value for parameter "work_mem"'),
        ("sslmode=bogus", "invalid sslmode value"),
    ],
)
async def test_a_dsn_the_server_or_libpq_refuses_fails_at_once(
    postgres_dsn: str, query: str, says: str
) -> None:
    from anybus.postgres import PostgresBus

    separator = "&" if "?" in postgres_dsn else "?"
    bus = PostgresBus(
        f"{postgres_dsn}{separator}{query}", channel="c", schema="anybus_misuse", connect_timeout=5
    )
    with anyio.fail_after(3), pytest.raises(TransportError) as raised:  # not after 5 s
        async with bus:
            pass
    assert "refused the connection" in str(raised.value)
    assert says in str(raised.value)
