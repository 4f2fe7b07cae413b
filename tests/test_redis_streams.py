"""RedisStreamBus against real Redis servers: conformance, durability, faults."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import anyio
import pytest
from anyio import to_thread, wait_all_tasks_blocked

from anybus import BusCancelMessage, BusDataMessage, BusMessage, TransportError
from anybus.redis import RedisSettings, RedisStreamBus
from anybus.redis._client import RedisClient
from anybus.testing import RecordingSubscriber
from anybus.testing.conformance import BusFactory, NetworkBusConformance

from .redis_support import RedisServer, free_port, kill_clients, private_server, unique_name

pytestmark = pytest.mark.anyio

TIMEOUT = 20


@pytest.fixture
def persistent_server() -> Iterator[RedisServer]:
    yield from private_server(persistent=True)


@pytest.fixture
def volatile_server() -> Iterator[RedisServer]:
    yield from private_server(persistent=False)


class TestRedisStreamBusConformance(NetworkBusConformance):
    @pytest.fixture
    def bus_factory(self, redis_url: str) -> BusFactory:
        stream = unique_name()
        names = iter(range(1000))
        return lambda: RedisStreamBus(redis_url, stream=stream, name=f"bus-{next(names)}")


def numbered(count: int) -> list[BusMessage]:
    return [
        BusCancelMessage(source="t") if i % 10 == 9 else BusDataMessage(source="t")
        for i in range(count)
    ]


async def test_a_restarted_instance_resumes_where_it_left_off(redis_url: str) -> None:
    stream = unique_name()
    first, second = RecordingSubscriber("r"), RecordingSubscriber("r")
    sent = numbered(30)
    async with RedisStreamBus(redis_url, stream=stream, name="sender") as sender:
        async with RedisStreamBus(redis_url, stream=stream, name="receiver") as receiver:
            await receiver.subscribe(first)
            for message in sent[:10]:
                await sender.send(message)
            with anyio.fail_after(TIMEOUT):
                await first.wait_for_count(10)
        # The receiver is gone; what is sent now waits in its consumer group.
        for message in sent[10:]:
            await sender.send(message)
        # Subscribed before it starts: the backlog may be read as soon as it does.
        resumed = RedisStreamBus(redis_url, stream=stream, name="receiver")
        await resumed.subscribe(second)
        async with resumed as receiver:
            with anyio.fail_after(TIMEOUT):
                await second.wait_for_count(20)
                await receiver.wait_idle()
    assert sorted(m.id for m in first.messages + second.messages) == sorted(m.id for m in sent)


async def test_the_stream_is_trimmed(redis_url: str) -> None:
    stream = unique_name()
    async with RedisStreamBus(redis_url, stream=stream, name="s", max_len=50) as bus:
        for _ in range(500):
            await bus.send(BusDataMessage(source="t"))
        admin = await RedisClient.create(RedisSettings.from_url(redis_url), name="anybus-admin")
        try:
            length = int(await admin.command("XLEN", stream))
            await admin.command("DEL", stream)
        finally:
            await admin.close()
    assert length < 500  # trimmed approximately (Redis trims whole nodes of the stream)


async def test_nothing_is_lost_across_a_restart_with_persistence(
    persistent_server: RedisServer,
) -> None:
    stream = unique_name()
    received = RecordingSubscriber("r")
    sent = numbered(60)
    async with (
        RedisStreamBus(persistent_server.url, stream=stream, name="receiver") as receiver,
        RedisStreamBus(
            persistent_server.url, stream=stream, name="sender", send_deadline=TIMEOUT
        ) as sender,
    ):
        await receiver.subscribe(received)
        for message in sent[:20]:
            await sender.send(message)
        await to_thread.run_sync(persistent_server.kill)
        async with anyio.create_task_group() as tg:
            # Sends during the outage wait and retry until the server is back.
            async def send_rest() -> None:
                for message in sent[20:]:
                    await sender.send(message)

            tg.start_soon(send_rest)
            await to_thread.run_sync(persistent_server.start)
        with anyio.fail_after(TIMEOUT):
            await received.wait_for_count(len(sent))
            await receiver.wait_idle()
    assert sorted(m.id for m in received.messages) == sorted(m.id for m in sent)
    stats = receiver.transport_statistics()
    assert stats.groups_recreated == 0


async def test_a_send_never_reports_success_for_what_redis_did_not_store(
    volatile_server: RedisServer,
) -> None:
    async with RedisStreamBus(
        volatile_server.url, stream=unique_name(), name="s", send_deadline=0.3
    ) as bus:
        local = RecordingSubscriber("local")
        await bus.subscribe(local)
        await to_thread.run_sync(volatile_server.kill)
        # Not stored within the deadline, or not confirmed (then it says it may be stored).
        with pytest.raises(
            TransportError, match=r"did not (store|confirm) the message within 0\.3 s"
        ):
            await bus.send(message := BusDataMessage(source="t"))
        await bus.wait_idle()
        assert local.messages == [message]  # local delivery does not need Redis
        assert bus.transport_statistics().publish_failures == 1
        await to_thread.run_sync(volatile_server.start)


async def test_a_restart_without_persistence_recreates_the_group_and_reports_the_loss(
    volatile_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    stream = unique_name()
    received = RecordingSubscriber("r")
    async with (
        RedisStreamBus(volatile_server.url, stream=stream, name="receiver") as receiver,
        RedisStreamBus(
            volatile_server.url, stream=stream, name="sender", send_deadline=0.5
        ) as sender,
    ):
        await receiver.subscribe(received)
        await sender.send(first := BusDataMessage(source="t"))
        with anyio.fail_after(TIMEOUT):
            await received.wait_for_count(1)
        await to_thread.run_sync(volatile_server.kill)
        with pytest.raises(TransportError):
            await sender.send(lost := BusDataMessage(source="t"))
        await to_thread.run_sync(volatile_server.start)  # empty: no stream, no groups
        await sender.send(after := BusDataMessage(source="t"))
        with anyio.fail_after(TIMEOUT):
            await received.wait_for(lambda seen: after in seen)
        stats = receiver.transport_statistics()
        stored_after_all = sender.transport_statistics().failed_but_stored
    assert stats.groups_recreated == 1
    assert "recreated it" in caplog.text
    received_ids = [m.id for m in received.messages]
    assert received_ids[0] == first.id
    assert after.id in received_ids
    # The send that raised is not missed: either it was never stored (its number went to the
    # next send), or it was stored after all, in order, and its sender counts it.
    assert stats.missed == 0
    assert (lost.id in received_ids) == (stored_after_all == 1)


async def test_a_server_absent_at_start_is_a_clear_error() -> None:
    port = free_port()
    bus = RedisStreamBus(f"redis://127.0.0.1:{port}", stream=unique_name(), connect_timeout=0.3)
    with pytest.raises(TransportError, match=f"redis at 127.0.0.1:{port} is unreachable after"):
        async with bus:
            pass  # pragma: no cover


async def test_a_slow_receiver_holds_messages_back_in_the_stream(redis_url: str) -> None:
    # The reader waits for room in the bounded inbox, so the rest waits in Redis, not in
    # memory, and nothing is dropped.
    release = anyio.Event()

    async def stuck(message: BusMessage) -> None:
        await release.wait()

    stream = unique_name()
    far = RecordingSubscriber("far", handler=stuck)
    sent = numbered(50)
    async with (
        RedisStreamBus(redis_url, stream=stream, name="receiver", max_buffer=2) as receiver,
        RedisStreamBus(redis_url, stream=stream, name="sender") as sender,
    ):
        await receiver.subscribe(far)
        for message in sent:
            await sender.send(message)
        with anyio.fail_after(TIMEOUT):
            await far.wait_for_count(1)
        assert receiver.statistics().subscriptions[0].queued_data <= 2
        release.set()
        with anyio.fail_after(TIMEOUT):
            await far.wait_for_count(len(sent))
    assert sorted(m.id for m in far.messages) == sorted(m.id for m in sent)


async def test_a_killed_reader_resumes_without_losing_anything(redis_url: str) -> None:
    stream = unique_name()
    far = RecordingSubscriber("far")
    sent = numbered(40)
    async with (
        RedisStreamBus(redis_url, stream=stream, name="receiver") as receiver,
        RedisStreamBus(redis_url, stream=stream, name="sender") as sender,
    ):
        await receiver.subscribe(far)
        for message in sent[:20]:
            await sender.send(message)
        assert await kill_clients(redis_url, receiver.instance) == 2
        for message in sent[20:]:
            await sender.send(message)
        with anyio.fail_after(TIMEOUT):
            await far.wait_for_count(len(sent))
            await receiver.wait_idle()
    assert sorted(m.id for m in far.messages) == sorted(m.id for m in sent)


async def test_two_default_named_instances_in_one_process_each_get_every_message(
    redis_url: str,
) -> None:
    stream = unique_name()
    first, second = (
        RedisStreamBus(redis_url, stream=stream),
        RedisStreamBus(redis_url, stream=stream),
    )
    assert first.group != second.group  # each has a consumer group of its own
    a, b = RecordingSubscriber("a"), RecordingSubscriber("b")
    async with first, second:
        await first.subscribe(a)
        await second.subscribe(b)
        with anyio.fail_after(10):
            for _ in range(10):
                await first.send(BusDataMessage(source="t"))
            await a.wait_for_count(10)
            await b.wait_for_count(10)
    assert a.messages == b.messages


async def test_an_entry_whose_handler_stop_cancelled_comes_again(redis_url: str) -> None:
    """A handler cancelled by ``stop()`` did not handle its message: after ``start()`` the
    bus still does not acknowledge the entry, and the next instance of the name gets it."""
    stream, name = unique_name(), unique_name()
    running = anyio.Event()

    async def block(message: BusMessage) -> None:
        running.set()
        await anyio.sleep_forever()

    async with RedisStreamBus(redis_url, stream=stream, name=name):
        pass  # the group exists from now on
    receiver = RedisStreamBus(redis_url, stream=stream, name=name)
    await receiver.subscribe(block, name="block")
    async with (
        RedisStreamBus(redis_url, stream=stream, name=unique_name()) as sender,
        receiver,
    ):
        await sender.send(sent := BusDataMessage(source="t"))
        with anyio.fail_after(TIMEOUT):
            await running.wait()
        await receiver.stop()  # cancels the handler: the message is not handled
        await receiver.start()
        await receiver.wait_idle()
    again = RecordingSubscriber("again")
    resumed = RedisStreamBus(redis_url, stream=stream, name=name)
    await resumed.subscribe(again)
    async with resumed:
        with anyio.fail_after(TIMEOUT):
            await again.wait_for(lambda seen: any(m.id == sent.id for m in seen))


async def test_running_a_stopped_bus_again_at_once_keeps_its_transport(redis_url: str) -> None:
    """``stop()`` under ``bus.run``, then ``bus.run`` again straight away: the closing
    transport of the first run leaves the second one's host alone."""
    stream = unique_name()
    received = RecordingSubscriber("r")
    bus = RedisStreamBus(redis_url, stream=stream, name=unique_name())
    await bus.subscribe(received)
    async with (
        RedisStreamBus(redis_url, stream=stream, name=unique_name()) as sender,
        anyio.create_task_group() as task_group,
    ):
        await task_group.start(bus.run)
        await bus.stop()
        await task_group.start(bus.run)
        await wait_all_tasks_blocked()
        await sender.send(remote := BusDataMessage(source="remote"))
        await bus.send(local := BusDataMessage(source="local"))
        with anyio.fail_after(TIMEOUT):
            await received.wait_for(lambda seen: {remote.id, local.id} <= {m.id for m in seen})
        await bus.stop()


async def _command_calls(admin: RedisClient) -> dict[str, int]:
    """``INFO commandstats`` as ``{command: calls}``."""
    reply = await admin.command("INFO", "commandstats")
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    calls: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("cmdstat_"):
            name, _, stats = line[len("cmdstat_") :].partition(":")
            calls[name] = int(stats.split(",")[0].removeprefix("calls="))
    return calls


async def test_a_caught_up_reader_reads_once_per_wake_up_and_acknowledges_in_batches(
    volatile_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reader that has caught up blocks again at once (it used to run the catch-up script,
    # which asks XINFO GROUPS, after every read), and what is handled is acknowledged within
    # 50 ms in one XACK (it used to be one awaited XACK per read), even with no more traffic.
    url = volatile_server.url
    stream = unique_name()
    far = RecordingSubscriber("far")
    sent = numbered(200)
    # The receiver's acknowledgements, as they are sent: the test waits for the last one.
    acknowledged: set[str] = set()
    all_acknowledged = anyio.Event()
    ack = RedisClient.ack

    async def spy(self: RedisClient, stream: str, group: str, entry_ids: Sequence[str]) -> None:
        await ack(self, stream, group, entry_ids)
        if group == "receiver":
            acknowledged.update(entry_ids)
            if len(acknowledged) == len(sent):
                all_acknowledged.set()

    monkeypatch.setattr(RedisClient, "ack", spy)
    admin = await RedisClient.create(RedisSettings.from_url(url), name="anybus-admin")
    try:
        async with (
            RedisStreamBus(url, stream=stream, name="receiver") as receiver,
            RedisStreamBus(url, stream=stream, name="sender") as sender,
        ):
            await receiver.subscribe(far)
            await admin.command("CONFIG", "RESETSTAT")
            with anyio.fail_after(TIMEOUT):
                for count, message in enumerate(sent, 1):
                    await sender.send(message)
                    # One at a time, so that the reader has caught up before each send
                    # (a reader that falls behind catches up with the script, rightly).
                    await far.wait_for_count(count)
                await receiver.wait_idle()
            with anyio.fail_after(TIMEOUT):  # with no more traffic
                await all_acknowledged.wait()
            pending = int((await admin.command("XPENDING", stream, "receiver"))[0])
            calls = await _command_calls(admin)
    finally:
        await admin.close()
    assert sorted(m.id for m in far.messages) == sorted(m.id for m in sent)
    assert pending == 0
    # One per read was 400 and more (each bus read every entry); the sender's stores ask it
    # once each (to move its own group past its own entries while its reader is caught up).
    assert calls.get("xinfo|groups", 0) <= len(sent) + 20, calls
    assert 1 <= calls.get("xack", 0) <= len(sent) // 2, calls  # one per read: 200


async def test_a_cancelled_send_stored_after_all_counts_as_a_failed_publish(
    redis_url: str,
) -> None:
    # Cancelled at its first checkpoint, a send is often on its way already (it stores its
    # own message when the writer is idle), sometimes done, sometimes not sent yet (then never
    # stored): one stored after all is counted in failed_but_stored and, as for a send that
    # raised, in publish_failures too.
    async with RedisStreamBus(redis_url, stream=unique_name(), name="tx", exit_drain=0) as tx:
        with anyio.fail_after(TIMEOUT):
            for _ in range(20):
                with anyio.move_on_after(0):
                    await tx.send(BusDataMessage(source="a"))
            await tx.send(BusDataMessage(source="b"))
            await tx.flush()
        stats = tx.transport_statistics()
    assert 1 <= stats.failed_but_stored <= stats.publish_failures
    assert stats.published >= stats.failed_but_stored + 1
