"""RedisBus against real Redis servers: the conformance suite, hostile input, and faults."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import anyio
import pytest
from anyio import to_thread
from glide import GlideClient

from anybus import (
    BusCancelMessage,
    BusCancelWorkerMessage,
    BusDataMessage,
    BusEndWorkerMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobUpdateMessage,
    BusMessage,
    BusWorkerReadyMessage,
    SerializationError,
    TransportError,
    WireCodec,
)
from anybus.redis import RedisBus, _handover
from anybus.redis._client import RedisClient, RedisSettings, StartedPublish
from anybus.testing import RecordingSubscriber
from anybus.testing.conformance import BusFactory, NetworkBusConformance

from .redis_support import (
    RedisServer,
    free_port,
    kill_clients,
    network_bus,
    private_server,
    unique_name,
    wait_until,
)

pytestmark = pytest.mark.anyio

TIMEOUT = 15


@pytest.fixture
def server() -> Iterator[RedisServer]:
    yield from private_server()


class TestRedisBusConformance(NetworkBusConformance):
    @pytest.fixture
    def bus_factory(self, redis_url: str) -> BusFactory:
        channel = unique_name()
        return lambda: RedisBus(redis_url, channel=channel)


async def raw_publish(url: str, channel: str, payload: bytes) -> None:
    client = await RedisClient.create(RedisSettings.from_url(url), name="anybus-test-raw")
    try:
        await client.publish(channel, payload)
    finally:
        await client.close()


async def test_hostile_input_is_counted_and_dropped(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="anybus")
    channel = unique_name()
    recorder = RecordingSubscriber("r")
    async with (
        RedisBus(redis_url, channel=channel) as receiver,
        RedisBus(redis_url, channel=channel) as sender,
    ):
        await receiver.subscribe(recorder)
        for payload in (b"", b"\x00\xff garbage", b'{"v": 1, "type": "os.system"}', b"{" * 10):
            await raw_publish(redis_url, channel, payload)
        await sender.send(after := BusDataMessage(source="t"))
        with anyio.fail_after(TIMEOUT):
            await recorder.wait_for(lambda seen: after in seen)
        rejected = receiver.transport_statistics().rejected
        assert sum(rejected.values()) == 4
    assert [m.id for m in recorder.messages] == [after.id]
    assert "rejected 1 message(s) as malformed" in caplog.text


async def test_forged_messages_are_rejected_when_signing(redis_url: str) -> None:
    channel = unique_name()
    recorder = RecordingSubscriber("r")
    trusted = WireCodec(signing_keys={"k1": b"s" * 32}, signing_key_id="k1")
    forger = WireCodec(signing_keys={"k1": b"x" * 32}, signing_key_id="k1")
    unsigned = WireCodec()
    async with RedisBus(redis_url, channel=channel, codec=trusted) as receiver:
        await receiver.subscribe(recorder)
        for codec in (forger, unsigned):
            payload = codec.encode(BusDataMessage(source="evil"), sender="evil/1", seq=1)
            await raw_publish(redis_url, channel, payload)
        async with RedisBus(redis_url, channel=channel, codec=trusted) as sender:
            await sender.send(good := BusDataMessage(source="t"))
            with anyio.fail_after(TIMEOUT):
                await recorder.wait_for(lambda seen: good in seen)
        rejected = receiver.transport_statistics().rejected
    assert [m.id for m in recorder.messages] == [good.id]
    assert rejected == {"forged": 1, "unsigned": 1}


async def test_a_message_that_cannot_be_encoded_is_refused_before_delivery(
    redis_url: str,
) -> None:
    class Unregistered(BusDataMessage):
        pass

    recorder = RecordingSubscriber("r")
    async with RedisBus(redis_url, channel=unique_name()) as bus:
        await bus.subscribe(recorder)
        with pytest.raises(SerializationError):
            await bus.send(Unregistered(source="t"))
        await bus.wait_idle()
    assert recorder.messages == []


async def test_a_server_absent_at_start_is_a_clear_error() -> None:
    port = free_port()
    bus = RedisBus(f"redis://127.0.0.1:{port}", channel=unique_name(), connect_timeout=0.5)
    with pytest.raises(TransportError, match=f"redis at 127.0.0.1:{port} is unreachable after"):
        async with bus:
            pass  # pragma: no cover
    assert not bus.running


async def test_the_bus_can_wait_for_a_server_that_comes_later() -> None:
    server = RedisServer()
    try:
        bus = RedisBus(server.url, channel=unique_name(), connect_timeout=None)
        recorder = RecordingSubscriber("r")
        await bus.subscribe(recorder)
        async with anyio.create_task_group() as tg:
            tg.start_soon(to_thread.run_sync, server.start)
            with anyio.fail_after(TIMEOUT):
                async with bus:
                    await bus.send(message := BusDataMessage(source="t"))
                    await bus.wait_idle()
        assert recorder.messages == [message]
    finally:
        server.close()


async def test_local_delivery_survives_an_outage_and_the_gap_is_reported(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    channel = unique_name()
    near, far = RecordingSubscriber("near"), RecordingSubscriber("far")
    async with (
        RedisBus(server.url, channel=channel, health_interval=0.05) as sender,
        RedisBus(server.url, channel=channel, health_interval=0.05) as receiver,
    ):
        await sender.subscribe(near)
        await receiver.subscribe(far)
        await sender.send(before := BusDataMessage(source="t"))
        with anyio.fail_after(TIMEOUT):
            await far.wait_for(lambda seen: before in seen)

        await to_thread.run_sync(server.kill)
        with anyio.fail_after(TIMEOUT):
            await sender.wait_connected(False)  # a known outage: send() says so at once
        lost = BusDataMessage(source="t")
        with pytest.raises(TransportError, match="delivered to local subscribers only"):
            await sender.send(lost)
        await sender.wait_idle()
        assert lost in near.messages  # local delivery does not need Redis

        await to_thread.run_sync(server.start)
        with anyio.fail_after(TIMEOUT):
            # Keep sending until the receiver hears again (its subscription comes back).
            while True:
                with contextlib.suppress(TransportError):
                    await sender.send(after := BusDataMessage(source="t"))
                with anyio.move_on_after(0.2):
                    await far.wait_for(lambda seen: after in seen)
                    break
        stats = receiver.transport_statistics()
        assert stats.gaps >= 1
        assert stats.missed >= 1
        assert sender.transport_statistics().publish_failures >= 1
    assert lost not in far.messages
    assert "missed" in caplog.text


async def test_outages_are_detected_and_counted(server: RedisServer) -> None:
    async with RedisBus(server.url, channel=unique_name(), health_interval=0.05) as bus:
        assert bus.transport_statistics().connected
        await to_thread.run_sync(server.kill)
        with anyio.fail_after(TIMEOUT):
            await bus.wait_connected(False)
        await to_thread.run_sync(server.start)
        with anyio.fail_after(TIMEOUT):
            await bus.wait_connected()
        assert bus.transport_statistics().outages == 1


async def test_a_killed_client_reconnects_and_resubscribes(redis_url: str) -> None:
    channel = unique_name()
    far = RecordingSubscriber("far")
    async with (
        RedisBus(redis_url, channel=channel) as receiver,
        RedisBus(redis_url, channel=channel) as sender,
    ):
        await receiver.subscribe(far)
        # Every client of the receiver (its publisher and its subscriber) is cut off.
        assert await kill_clients(redis_url, receiver.instance) == 2
        with anyio.fail_after(TIMEOUT):
            while True:
                with contextlib.suppress(TransportError):
                    await sender.send(message := BusDataMessage(source="t"))
                with anyio.move_on_after(0.2):
                    await far.wait_for(lambda seen: message in seen)
                    break


async def test_a_slow_receiver_drops_what_overflows_its_reader(redis_url: str) -> None:
    channel = unique_name()
    release = anyio.Event()

    async def stuck(message: BusMessage) -> None:
        await release.wait()

    far = RecordingSubscriber("far", handler=stuck)
    async with (
        RedisBus(redis_url, channel=channel, inbound_buffer=5, max_buffer=1) as receiver,
        RedisBus(redis_url, channel=channel) as sender,
    ):
        await receiver.subscribe(far)
        for _ in range(50):
            await sender.send(BusDataMessage(source="t"))
        await sender.send(last := BusCancelMessage(source="t"))
        with anyio.fail_after(TIMEOUT):
            await wait_until(lambda: receiver.transport_statistics().inbound_overflow > 0)
        release.set()
        await receiver.stop(drain=TIMEOUT)
    stats = receiver.transport_statistics()
    assert stats.inbound_overflow > 0
    assert len(far.messages) + stats.inbound_overflow <= 51
    del last


PEER = Path(__file__).with_name("peer_worker.py")


@pytest.mark.parametrize("kind", ["pubsub", "stream"])
async def test_two_processes_on_different_backends(
    redis_url: str, anyio_backend: str, kind: str
) -> None:
    other = "trio" if anyio_backend == "asyncio" else "asyncio"
    channel = unique_name()
    bus = network_bus(kind, redis_url, channel, name="runner")
    runner = RecordingSubscriber("runner", accepts=lambda m: m.target == "runner")

    def responses(seen: Sequence[BusMessage]) -> list[BusJobResponseMessage]:
        return [m for m in seen if isinstance(m, BusJobResponseMessage)]

    async with bus:
        await bus.subscribe(runner)
        process = await anyio.open_process(
            [sys.executable, str(PEER), other, redis_url, channel, kind]
        )
        try:
            with anyio.fail_after(60):
                await runner.wait_for(
                    lambda seen: any(isinstance(m, BusWorkerReadyMessage) for m in seen)
                )
                first = BusJobRequestMessage(source="runner", target="peer", job_id="job-1")
                await bus.send(first)
                await runner.wait_for(
                    lambda seen: any(isinstance(m, BusJobUpdateMessage) for m in seen)
                )
                # job-1 is blocked in the peer; queue two more behind it, then the cancel.
                for job_id in ("job-2", "job-3"):
                    await bus.send(
                        BusJobRequestMessage(source="runner", target="peer", job_id=job_id)
                    )
                await bus.send(BusCancelWorkerMessage(source="runner", target="peer"))
                await runner.wait_for(lambda seen: len(responses(seen)) == 3)
                await bus.send(BusEndWorkerMessage(source="runner", target="peer"))
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
            await process.aclose()
    final = {m.job_id: m.response for m in responses(runner.messages)}
    assert final["job-3"] == {
        "order": ["job-1", "cancel", "job-2", "job-3"],  # the cancel overtook job-2 and job-3
        "backend": other,
    }


async def test_a_ready_configuration_can_replace_the_url(redis_url: str) -> None:
    settings = RedisSettings.from_url(redis_url, request_timeout=2.0)
    recorder = RecordingSubscriber("r")
    async with RedisBus(settings, channel=unique_name()) as bus:
        await bus.subscribe(recorder)
        await bus.send(message := BusDataMessage(source="t"))
        await bus.wait_idle()
    assert recorder.messages == [message]
    with pytest.raises(ValueError, match="url must start with redis:// or rediss://"):
        RedisBus("http://127.0.0.1:6379")


@pytest.mark.parametrize("kind", ["pubsub", "stream"])
async def test_concurrent_senders_leave_no_false_gaps(redis_url: str, kind: str) -> None:
    # Sequence numbers are given in the order messages go out, whichever task sends them.
    name = unique_name()

    far = RecordingSubscriber("far")
    async with (
        network_bus(kind, redis_url, name, name="receiver") as receiver,
        network_bus(kind, redis_url, name, name="sender") as sender,
    ):
        await receiver.subscribe(far)

        async def send_some() -> None:
            for _ in range(25):
                await sender.send(BusDataMessage(source="t"))

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(send_some)
        with anyio.fail_after(TIMEOUT):
            await far.wait_for_count(200)
            await receiver.wait_idle()
        stats = receiver.transport_statistics()
    assert (stats.gaps, stats.missed, stats.duplicates) == (0, 0, 0)
    assert len({m.id for m in far.messages}) == 200


@pytest.mark.parametrize("count", [1, 50])
async def test_what_was_sent_before_leaving_the_block_is_published(
    redis_url: str, count: int
) -> None:
    channel = unique_name()
    for _ in range(3):
        recorder = RecordingSubscriber("r")
        async with RedisBus(redis_url, channel=channel) as receiver:
            await receiver.subscribe(recorder)
            async with RedisBus(redis_url, channel=channel) as sender:
                for _ in range(count):
                    await sender.send(BusDataMessage(source="t"))
            # The sender has left its block: its outbox, and any batch in flight, went out.
            with anyio.fail_after(TIMEOUT):
                await recorder.wait_for_count(count)


@contextlib.asynccontextmanager
async def receiver_and_sender(
    redis_url: str,
) -> AsyncIterator[tuple[RedisBus, RedisBus, RecordingSubscriber]]:
    """Two buses on a new channel: a receiver with a recording subscriber, and a sender."""
    channel = unique_name()
    far = RecordingSubscriber("far")
    async with (
        RedisBus(redis_url, channel=channel, name="receiver") as receiver,
        RedisBus(redis_url, channel=channel, name="sender") as sender,
    ):
        await receiver.subscribe(far)
        yield receiver, sender, far


async def test_a_send_to_an_idle_bus_hands_its_publish_over_at_once(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sending task itself hands PUBLISH to the client when the writer has nothing to
    # do (no task switch to the writer first); sends meanwhile queue behind it, in order.
    handed: list[tuple[object, bool]] = []
    original = RedisClient.start_publish

    def spy(client: RedisClient, channel: str, payload: bytes) -> StartedPublish | None:
        started = original(client, channel, payload)
        handed.append((anyio.get_current_task().id, started is not None))
        return started

    monkeypatch.setattr(RedisClient, "start_publish", spy)
    async with receiver_and_sender(redis_url) as (receiver, sender, far):
        await sender.send(first := BusDataMessage(source="t"))
        # This glide's internals are the ones start_publish was written against: the
        # hand-over happened, in this task.
        assert handed == [(anyio.get_current_task().id, True)]
        with anyio.fail_after(TIMEOUT):
            await far.wait_for_count(1)
            # Redis may write to the subscriber before it answers the publisher: once the
            # writer has the answer, it is parked again.
            await wait_until(lambda: sender.transport_statistics().published == 1)
        sent: dict[int, list[str]] = {}

        async def send_some(number: int) -> None:
            for _ in range(50):
                message = BusDataMessage(source=f"t{number}")
                sent.setdefault(number, []).append(message.id)
                await sender.send(message)

        async with anyio.create_task_group() as tg:
            for number in range(4):
                tg.start_soon(send_some, number)
        with anyio.fail_after(TIMEOUT):
            await far.wait_for_count(201)
            await receiver.wait_idle()
        stats = receiver.transport_statistics()
    assert far.messages[0] == first
    for number, ids in sent.items():
        assert [m.id for m in far.messages if m.source == f"t{number}"] == ids
    assert (stats.gaps, stats.missed, stats.duplicates) == (0, 0, 0)
    # Most of the burst went out in pipelined batches, behind whatever was handed over.
    assert 1 < len(handed) < 201


async def test_without_the_hand_over_the_writer_publishes_everything(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cluster client, glide's tracing, or another glide: start_publish declines.
    handed: list[bytes] = []

    def decline(client: RedisClient, channel: str, payload: bytes) -> None:
        handed.append(payload)

    monkeypatch.setattr(RedisClient, "start_publish", decline)
    async with receiver_and_sender(redis_url) as (_receiver, sender, far):
        messages = [BusDataMessage(source="t") for _ in range(30)]
        for message in messages[:10]:
            await sender.send(message)
        async with anyio.create_task_group() as tg:
            for message in messages[10:]:
                tg.start_soon(sender.send, message)
        with anyio.fail_after(TIMEOUT):
            await far.wait_for_count(30)
            # (Redis may write to the subscriber before it answers the publisher.)
            await wait_until(lambda: sender.transport_statistics().published == 30)
        assert far.messages[:10] == messages[:10]
        assert {m.id for m in far.messages} == {m.id for m in messages}
        assert handed  # asked, and declined: the writer published them all


async def test_a_hand_over_that_fails_leaves_the_writer_to_publish(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A glide whose internals changed under the same names: the step fails, nothing was
    # handed over, and the writer publishes this message and every later one.
    monkeypatch.setattr(_handover, "DIRECT", True)
    original = GlideClient._to_c_strings
    armed: list[str] = []

    def broken(client: GlideClient, args: list[object]) -> object:
        if armed:  # once, when the buses run
            armed.clear()
            raise TypeError("a changed glide internal")
        return original(client, args)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(GlideClient, "_to_c_strings", broken)
    async with receiver_and_sender(redis_url) as (_receiver, sender, far):
        messages = [BusDataMessage(source="t") for _ in range(5)]
        armed.append("the next conversion fails")
        for message in messages:
            await sender.send(message)
        with anyio.fail_after(TIMEOUT):
            await far.wait_for_count(5)
            await wait_until(lambda: sender.transport_statistics().published == 5)
        stats = sender.transport_statistics()
    assert far.messages == messages
    assert stats.publish_failures == 0
    assert _handover.DIRECT is False  # off for the process (monkeypatch restores it)
    assert [r.getMessage() for r in caplog.records if "handing PUBLISH" in r.getMessage()] == [
        "handing PUBLISH to glide's core failed (TypeError('a changed glide internal')): "
        "this glide's internals differ; the writer publishes every message from now on"
    ]


async def test_a_send_cancelled_at_a_full_local_inbox_says_it_was_published(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Queued for Redis before the local delivery (so that payloads go out in sequence order):
    # a send cancelled while it waits for room in a local inbox is on its way all the same,
    # and a line says so.
    channel, gate = unique_name(), anyio.Event()

    async def slow(message: BusMessage) -> None:
        await gate.wait()

    remote, local = RecordingSubscriber("remote"), RecordingSubscriber("local", handler=slow)
    caplog.set_level(logging.INFO, "anybus.redis")
    with anyio.fail_after(TIMEOUT):
        async with (
            RedisBus(redis_url, channel=channel) as rx,
            RedisBus(redis_url, channel=channel, max_buffer=1) as tx,
        ):
            await rx.subscribe(remote)
            await tx.subscribe(local)
            for source in ("taken", "waiting"):
                await tx.send(BusDataMessage(source=source))
                await anyio.wait_all_tasks_blocked()
            async with anyio.create_task_group() as task_group:
                scope = anyio.CancelScope()

                async def blocked_send() -> None:
                    with scope:
                        await tx.send(BusDataMessage(source="cancelled"))

                task_group.start_soon(blocked_send)
                await anyio.wait_all_tasks_blocked()
                scope.cancel()
            gate.set()
            await remote.wait_for(lambda seen: any(m.source == "cancelled" for m in seen))
            await tx.wait_idle()
    assert [m.source for m in local.messages] == ["taken", "waiting"]
    assert "a send cancelled as it waited for room in a local inbox" in caplog.text
