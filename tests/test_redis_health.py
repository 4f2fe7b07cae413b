"""The Redis buses watch their connection: every outage is noticed when it happens, however
short, and counted; a send that returns while the connection is down is counted as at risk;
and both buses are back within a second of the server's return, however long it was away.

Each test runs its own ``redis-server`` and kills it with SIGKILL.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import anyio
import pytest
from anyio import to_thread

pytest.importorskip("glide")

from anybus import BusDataMessage, BusMessage, TransportError, WireCodec
from anybus.redis import RedisBus
from anybus.redis._base import RedisBusBase
from anybus.redis._client import RedisClient, RedisSettings
from anybus.testing import RecordingSubscriber

from .redis_support import RedisServer, network_bus, private_server, unique_name, wait_until

pytestmark = pytest.mark.anyio

TIMEOUT = 15


@pytest.fixture
def server() -> Iterator[RedisServer]:
    yield from private_server(persistent=True)


def outages_reach(bus: RedisBusBase[Any], count: int) -> bool:
    return bus.transport_statistics().outages >= count


def contains(message: BusMessage, seen: Sequence[BusMessage]) -> bool:
    return message in seen


@pytest.mark.parametrize("kind", ["pubsub", "stream"])
async def test_three_restarts_of_under_half_a_second_are_each_noticed(
    server: RedisServer, kind: str
) -> None:
    """With a check every 0.5 s, three kill -9 restarts of about 0.4 s went unseen."""
    async with network_bus(kind, server.url, unique_name(), name="watched") as bus:
        for outage in range(1, 4):
            await to_thread.run_sync(server.kill)
            await anyio.sleep(0.3)  # the length of the outage, not a synchronisation
            await to_thread.run_sync(server.start)
            with anyio.fail_after(TIMEOUT):
                await wait_until(partial(outages_reach, bus, outage))
                await bus.wait_connected()
        stats = bus.transport_statistics()
    assert stats.outages == 3
    assert stats.connected


async def test_sends_that_returned_during_a_pubsub_outage_are_counted_at_risk(
    server: RedisServer,
) -> None:
    """In a 1 s outage no send raised, and 281 sends that had returned were lost unseen.

    A send lost after the sender is back (the receiver's subscription came back later) is
    the receiver's loss, not the sender's risk: the receiver reports it as missed.
    """
    channel = unique_name()
    heard = RecordingSubscriber("heard")
    returned: list[BusMessage] = []
    unnoticed: set[str] = set()  # sends that returned before the sender saw the outage
    raised = 0
    async with (
        RedisBus(server.url, channel=channel, name="sender") as sender,
        RedisBus(server.url, channel=channel, name="receiver") as receiver,
    ):
        await receiver.subscribe(heard)

        async def send_until(done: anyio.Event) -> None:
            nonlocal raised
            while not done.is_set():
                try:
                    await sender.send(message := BusDataMessage(source="t"))
                except TransportError:
                    raised += 1
                else:
                    returned.append(message)
                    if sender.transport_statistics().outages == 0:
                        unnoticed.add(message.id)
                await anyio.sleep(0.002)  # the pace of the workload, not a synchronisation

        done = anyio.Event()
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(send_until, done)
            with anyio.fail_after(TIMEOUT):
                await wait_until(lambda: len(returned) >= 50)
            await to_thread.run_sync(server.kill)
            await anyio.sleep(1)  # the length of the outage
            await to_thread.run_sync(server.start)
            with anyio.fail_after(TIMEOUT):
                await sender.wait_connected()
                count = len(returned)
                # Sent after the recovery, heard: messages flow again.
                await wait_until(lambda: bool(returned[count:]) and returned[-1] in heard.messages)
            done.set()
        last = returned[-1]
        with anyio.fail_after(TIMEOUT):
            await heard.wait_for(lambda seen: last in seen)
        stats = sender.transport_statistics()
        missed = receiver.transport_statistics().missed
    got = {message.id for message in heard.messages}
    lost = [message.id for message in returned if message.id not in got]
    assert raised > 0  # the outage was known while it lasted: sends said so
    assert lost, "the outage lost nothing: the test did not test"
    assert len(unnoticed.intersection(lost)) <= stats.at_risk <= len(unnoticed)
    assert stats.outages == 1
    assert missed >= len(lost) + raised  # every one lost is reported where it was missed


async def receive_within(kind: str, url: str, name: str, heard: RecordingSubscriber) -> float:
    """Seconds until ``bus`` receives what a fresh client sends now on ``name``."""
    codec = WireCodec()
    client = await RedisClient.create(RedisSettings.from_url(url), name="anybus-test-raw")
    started = time.monotonic()
    try:
        for seq in range(1, 10_000):
            message = BusDataMessage(source="raw")
            payload = codec.encode(message, sender="raw", seq=seq)
            with contextlib.suppress(TransportError):
                if kind == "stream":
                    await client.command("XADD", name, "*", "m", payload)
                else:
                    await client.publish(name, payload)
            with anyio.move_on_after(0.02 if kind == "pubsub" else 5):
                await heard.wait_for(partial(contains, message))
                return time.monotonic() - started
    finally:
        await client.close()
    raise AssertionError("never received")


@pytest.mark.parametrize("outage", [1, 4])
@pytest.mark.parametrize("kind", ["pubsub", "stream"])
async def test_a_bus_is_back_within_a_second_of_the_server(
    server: RedisServer, kind: str, outage: float
) -> None:
    """It took 2.5-3.8 s after a 3 s outage (the reconnect delay grew to 3.2 s)."""
    name, heard = unique_name(), RecordingSubscriber("heard")
    bus = network_bus(kind, server.url, name, name="receiver")
    await bus.subscribe(heard)
    async with bus:
        await to_thread.run_sync(server.kill)
        await anyio.sleep(outage)  # the length of the outage
        await to_thread.run_sync(server.start)
        with anyio.fail_after(TIMEOUT):
            took = await receive_within(kind, server.url, name, heard)
    assert took < 1.0, f"back {took:.2f} s after the server"
