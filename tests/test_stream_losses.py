"""RedisStreamBus: what a trimmed stream loses is reported exactly, and large entries do not
stall the reader.

A receiver that comes back after the stream was trimmed past it learns from the stream's own
counters (Redis 7) how many entries it will never see, and reports them as missed, once. Its
reads are bounded by bytes as well as by count, and an entry over the codec's size limit is
left in Redis unread, rejected without holding the others up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import anyio
import pytest

pytest.importorskip("glide")

from anybus import BusActivateWorkerMessage, BusDataMessage, WireCodec
from anybus.redis import RedisStreamBus
from anybus.redis._client import RedisClient, RedisSettings
from anybus.testing import RecordingSubscriber

from .redis_support import RedisServer, private_server, unique_name

pytestmark = pytest.mark.anyio

TIMEOUT = 30
TRIMMED = "were trimmed before this instance read them"


@pytest.fixture
def server() -> Iterator[RedisServer]:
    yield from private_server()


async def command(url: str, *args: str | bytes) -> object:
    client = await RedisClient.create(RedisSettings.from_url(url), name="anybus-test-admin")
    try:
        return await client.command(*args)
    finally:
        await client.close()


async def info_field(url: str, section: str, name: str) -> int:
    info = await command(url, "INFO", section)
    text = info.decode() if isinstance(info, bytes) else str(info)
    return int(text.split(f"{name}:")[1].split()[0])


async def bytes_sent(url: str) -> int:
    """How many bytes the server has sent to its clients so far."""
    return await info_field(url, "stats", "total_net_output_bytes")


async def test_a_receiver_back_after_a_trim_reports_exactly_what_it_lost(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="anybus.redis")
    stream, sent = unique_name(), 1011
    try:
        async with RedisStreamBus(redis_url, stream=stream, name="receiver", max_len=100):
            pass  # its group exists: what is sent from now on is the receiver's
        async with RedisStreamBus(redis_url, stream=stream, name="sender", max_len=100) as sender:
            for _ in range(sent):
                await sender.send(BusDataMessage(source="t"))
        kept = int(str(await command(redis_url, "XLEN", stream)))
        assert kept < sent
        received = RecordingSubscriber("r")
        receiver = RedisStreamBus(redis_url, stream=stream, name="receiver", max_len=100)
        await receiver.subscribe(received)
        async with receiver:
            with anyio.fail_after(TIMEOUT):
                await received.wait_for_count(kept)
                await receiver.wait_idle()
            stats = receiver.transport_statistics()
    finally:
        await command(redis_url, "DEL", stream)
    assert len(received.messages) == kept
    assert (stats.missed, stats.gaps) == (sent - kept, 1)
    assert caplog.text.count(TRIMMED) == 1
    assert f"{sent - kept} entries of the stream {TRIMMED}" in caplog.text


async def test_a_live_receiver_left_behind_counts_each_loss_once(redis_url: str) -> None:
    """The trim is counted from the stream's counters, and the sender's sequence gap that it
    leaves is not counted again."""
    stream, sent = unique_name(), 600
    release = anyio.Event()

    async def hold(message: object) -> None:
        await release.wait()

    received = RecordingSubscriber("r", handler=hold)
    receiver = RedisStreamBus(
        redis_url, stream=stream, name="receiver", max_len=100, max_buffer=1, read_batch=10
    )
    await receiver.subscribe(received)
    try:
        async with (
            receiver,
            RedisStreamBus(redis_url, stream=stream, name="sender", max_len=100) as sender,
        ):
            await sender.send(BusDataMessage(source="t"))  # the receiver knows the sender
            with anyio.fail_after(TIMEOUT):
                await received.wait_for_count(1)
            for _ in range(sent - 1):
                await sender.send(BusDataMessage(source="t"))
            release.set()
            with anyio.fail_after(TIMEOUT):
                while len(received.messages) + receiver.transport_statistics().missed < sent:
                    await received.wait_for_count(len(received.messages) + 1)
                await receiver.wait_idle()
            stats = receiver.transport_statistics()
    finally:
        await command(redis_url, "DEL", stream)
    assert stats.missed > 0
    assert len(received.messages) + stats.missed == sent
    assert stats.duplicates == 0


async def test_large_entries_are_read_a_few_at_a_time_without_a_false_outage(
    server: RedisServer,
) -> None:
    """30 entries of 16 MB queued for a receiver took 24 s and three spurious outages when
    it read 100 entries at a time whatever their size."""
    stream, count, size = unique_name(), 30, 16 * 2**20
    codec = WireCodec(max_size=32 * 2**20)
    async with RedisStreamBus(server.url, stream=stream, name="receiver", codec=codec):
        pass
    async with RedisStreamBus(server.url, stream=stream, name="sender", codec=codec) as sender:
        for n in range(count):
            await sender.send(BusActivateWorkerMessage(source="t", args={"n": n, "b": "x" * size}))
    received = RecordingSubscriber("r")
    receiver = RedisStreamBus(
        server.url, stream=stream, name="receiver", codec=codec, health_interval=0.1
    )
    await receiver.subscribe(received)
    async with receiver:
        started = time.monotonic()
        with anyio.fail_after(TIMEOUT):
            await received.wait_for_count(count)
        took = time.monotonic() - started
        stats = receiver.transport_statistics()
        # The largest reply Redis built for a client lately (the last few seconds): one read.
        largest = await info_field(server.url, "clients", "client_recent_max_output_buffer")
    assert [m.args["n"] for m in received.messages] == list(range(count))  # type: ignore[attr-defined]
    assert largest < 2 * size, f"a read of {largest} bytes"
    assert stats.outages == 0
    assert took < 10, f"took {took:.1f} s"


async def test_an_entry_over_the_size_limit_is_left_in_redis_and_does_not_stall(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="anybus.wire")
    stream, big = unique_name(), b"x" * (16 * 2**20)
    async with RedisStreamBus(server.url, stream=stream, name="receiver"):
        pass
    codec = WireCodec()
    sent = [BusDataMessage(source="t") for _ in range(20)]
    # Runs of large entries after runs of small ones, and the other way round.
    for n, message in enumerate(sent):
        payload = codec.encode(message, sender="x", seq=n + 1)
        await command(server.url, "XADD", stream, "*", "m", payload)
        if n in (4, 14):
            for _ in range(10):
                await command(server.url, "XADD", stream, "*", "m", big)  # over 1 MiB
    received = RecordingSubscriber("r")
    receiver = RedisStreamBus(server.url, stream=stream, name="receiver", health_interval=0.1)
    await receiver.subscribe(received)
    before = await bytes_sent(server.url)
    async with receiver:
        started = time.monotonic()
        with anyio.fail_after(TIMEOUT):
            await received.wait_for_count(len(sent))
            await receiver.wait_idle()
        took = time.monotonic() - started
        stats = receiver.transport_statistics()
    assert [m.id for m in received.messages] == [m.id for m in sent]
    assert stats.rejected == {"oversized": 20}
    assert stats.outages == 0
    # None of the 20 entries of 16 MB crossed the network.
    assert await bytes_sent(server.url) - before < len(big)
    assert "left unread in redis" in caplog.text
    assert took < 5, f"took {took:.1f} s"
