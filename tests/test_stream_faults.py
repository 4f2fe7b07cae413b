"""RedisStreamBus's writer and lease under faults, against private redis-server processes the
tests kill and restart (and a proxy that partitions one bus from its server).

* A send that raised is never stored after a later one, and what the receivers count as
  missed is exact: a send found not stored leaves no gap; one stored after all is counted by
  its sender (``failed_but_stored``), and arrives in order.
* One name, one running instance: a second instance under a name in use is refused; an
  instance whose lease ran out and was taken stops with an error.
* ``durability="queued"``: sends return at once, are stored in order, and what the bus
  could not store when it stopped is counted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import fail_after, to_thread
from anyio.abc import TaskStatus

from anybus import BusJobRequestMessage, BusMessage, TransportError
from anybus.redis import RedisSettings, RedisStreamBus
from anybus.redis._client import RedisClient
from anybus.redis._fence import FENCED_ADD, same_slot_key, skipped_key
from anybus.redis._lease import LeaseLostError

from .redis_proxy import pausable_proxy
from .redis_support import RedisServer, private_server, unique_name

pytestmark = pytest.mark.anyio

SENDER = Path(__file__).with_name("stream_fault_sender.py")
#: Restarts of the server during the cross-process run, and the sender's deadline (the
#: figures in docs/transports.md were measured with 3 and 10, and 0.3 and 10 s).
RESTARTS = int(os.environ.get("ANYBUS_FAULT_RESTARTS", "3"))
SENDER_DEADLINE = os.environ.get("ANYBUS_FAULT_DEADLINE", "0.3")
COUNT = 3000


@pytest.fixture
def server() -> Iterator[RedisServer]:
    yield from private_server(persistent=True)


class Received:
    """The numbers of the job requests (``n0`` ...) a receiver got, in the order it got them."""

    def __init__(self) -> None:
        self.numbers: list[int] = []
        self._changed = anyio.Event()

    async def __call__(self, message: BusMessage) -> None:
        if isinstance(message, BusJobRequestMessage) and message.source == "sender":
            self.numbers.append(int(message.job_id[1:]))
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_for(self, count: int) -> None:
        """Wait until ``count`` different messages arrived."""
        while len(set(self.numbers)) < count:
            await self._changed.wait()

    async def wait_for_more(self, more: int) -> None:
        await self.wait_for(len(set(self.numbers)) + more)


def request(n: int) -> BusJobRequestMessage:
    return BusJobRequestMessage(source="sender", target="receiver", job_id=f"n{n}")


async def receiving(url: str, stream: str, received: Received) -> RedisStreamBus:
    bus = RedisStreamBus(url, stream=stream, name="receiver")
    await bus.subscribe(received, name="record")
    return bus


def check_delivery(received: Received, sent: int, raised: set[int], stats: dict[str, Any]) -> None:
    """Every send that returned arrived, once, in order; of those that raised, exactly the
    ones the sender counts as stored after all arrived, in their place."""
    numbers = received.numbers
    assert numbers == sorted(numbers), f"reordered: {numbers}"
    assert len(numbers) == len(set(numbers)), "a message was handled twice"
    lost = set(range(sent)) - raised - set(numbers)
    assert lost == set(), f"{len(lost)} sends that returned were lost"
    assert stats["publish_failures"] == len(raised)
    assert stats["failed_but_stored"] == len(set(numbers) & raised)
    assert stats["published"] == len(numbers)


# --- 1. a send that raised is never stored later, out of order --------------------------


async def test_sends_that_raised_during_outages_are_never_stored_out_of_order(
    server: RedisServer,
) -> None:
    """Three kill -9 outages of 0.6 to 1.2 s, sends with ``send_deadline=0.3``: the client
    holds what it was given while it reconnects, and sends it when it is back."""
    stream = unique_name()
    received = Received()
    raised: set[int] = set()
    sent = 0
    stop = anyio.Event()

    async with (
        await receiving(server.url, stream, received) as receiver,
        RedisStreamBus(server.url, stream=stream, name="sender", send_deadline=0.3) as sender,
    ):

        async def send_until_stopped() -> None:
            nonlocal sent
            while not stop.is_set():
                try:
                    await sender.send(request(sent))
                except TransportError:
                    raised.add(sent)
                sent += 1
                await anyio.sleep(0.002)  # the pace of the workload, not a synchronisation

        with fail_after(60):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(send_until_stopped)
                for outage in (0.6, 0.9, 1.2):
                    await received.wait_for_more(20)
                    await to_thread.run_sync(server.kill)
                    await anyio.sleep(outage)  # the outage's length, not a synchronisation
                    await to_thread.run_sync(server.start)
                await received.wait_for_more(20)
                stop.set()
            await sender.flush()
            stats = sender.transport_statistics()
            await received.wait_for(stats.published)
            await receiver.wait_idle()
        seen = receiver.transport_statistics()
    assert raised, "no send raised: the outages were too short to test anything"
    check_delivery(received, sent, raised, dataclasses.asdict(stats))
    assert (seen.gaps, seen.missed) == (0, 0)


async def test_a_send_given_up_before_it_was_sent_is_never_stored_and_leaves_no_gap(
    server: RedisServer,
) -> None:
    """Partitioned from Redis, one send is on its way and the next waits behind it: both
    raise, saying what may have happened; when the partition heals, the first is stored (in
    order), the second never, and the receiver counts nothing missed."""
    stream = unique_name()
    received = Received()
    async with (
        pausable_proxy(server.port) as proxy,
        await receiving(server.url, stream, received) as receiver,
        RedisStreamBus(proxy.url, stream=stream, name="sender", send_deadline=0.3) as sender,
    ):
        await sender.send(request(0))
        proxy.pause()
        errors: dict[int, TransportError] = {}

        async def send(n: int) -> None:
            try:
                await sender.send(request(n))
            except TransportError as exc:
                errors[n] = exc

        with fail_after(20):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(send, 1)
                await anyio.wait_all_tasks_blocked()
                task_group.start_soon(send, 2)
            proxy.resume()
            await sender.send(request(3))
            await received.wait_for(3)
            await receiver.wait_idle()
        stats, seen = sender.transport_statistics(), receiver.transport_statistics()
    assert "it was being stored when the deadline passed, so it may be" in str(errors[1])
    assert "and never will; delivered to local subscribers only" in str(errors[2])
    assert received.numbers == [0, 1, 3]
    assert (stats.publish_failures, stats.failed_but_stored, stats.published) == (2, 1, 3)
    assert (seen.gaps, seen.missed) == (0, 0)


async def test_a_late_copy_is_refused_once_a_later_send_is_stored(redis_url: str) -> None:
    """The fence, as a copy that arrives late (after a partition) meets it."""
    stream = unique_name()
    admin = await RedisClient.create(RedisSettings.from_url(redis_url), name="anybus-test")
    try:
        async with RedisStreamBus(redis_url, stream=stream, name="sender") as bus:
            for n in range(3):
                await bus.send(request(n))
            fence = same_slot_key(stream, f":anybus:sent:{bus.instance}", cluster=False)
            skipped = skipped_key(stream, bus.group, cluster=False)
            late = await admin.command(
                "EVAL",
                FENCED_ADD,
                "4",
                stream,
                fence,
                skipped,
                same_slot_key(stream, ":anybus:lease:sender", cluster=False),
                "2",
                "100",
                "60000",
                "9",
                "",
                "",
                b"late",
            )
            assert [int(value) for value in late] == [0, 3]
            assert int(await admin.command("XLEN", stream)) == 3
    finally:
        lease = same_slot_key(stream, ":anybus:lease:sender", cluster=False)
        await admin.command("DEL", stream, lease)
        await admin.close()


async def test_sends_from_another_process_across_server_restarts(
    server: RedisServer, anyio_backend: str
) -> None:
    """3,000 sends from a process on the other backend, the server killed and restarted
    meanwhile: nothing that returned is lost, nothing is handled twice or out of order, and
    the receiver's count of what was missed is exact."""
    other = "trio" if anyio_backend == "asyncio" else "asyncio"
    stream = unique_name()
    received = Received()
    command = [sys.executable, str(SENDER), other, server.url, stream, str(COUNT)]
    async with await receiving(server.url, stream, received) as receiver:
        process = await anyio.open_process([*command, SENDER_DEADLINE])
        try:
            assert process.stdout is not None
            with fail_after(120):
                for _ in range(RESTARTS):
                    await received.wait_for_more(COUNT // (RESTARTS + 2))
                    await to_thread.run_sync(server.restart)
                output = b"".join([chunk async for chunk in process.stdout])
                report = json.loads(output)
                await process.wait()
                stats = report["stats"]
                await received.wait_for(stats["published"])
                await receiver.wait_idle()
        finally:
            if process.returncode is None:
                process.kill()
            await process.aclose()
        seen = receiver.transport_statistics()
    check_delivery(received, COUNT, set(report["raised"]), stats)
    assert (seen.gaps, seen.missed) == (0, 0)


# --- 3. one name, one running instance ---------------------------------------------------


async def test_a_second_instance_under_a_name_in_use_is_refused(redis_url: str) -> None:
    stream = unique_name()
    received = Received()
    first = await receiving(redis_url, stream, received)
    async with first, RedisStreamBus(redis_url, stream=stream, name=unique_name()) as sender:
        second = RedisStreamBus(redis_url, stream=stream, name="receiver")
        with pytest.raises(TransportError) as info:
            async with second:
                pass  # pragma: no cover
        text = str(info.value)
        assert "the name 'receiver' is in use by another running instance" in text
        assert f"({first.instance!r}; its lease runs out in " in text
        assert "give this one another name, or stop the other" in text
        with fail_after(20):
            for n in range(20):
                await sender.send(request(n))
            await received.wait_for(20)  # the first still gets every message
    # Stopped, it gave its lease up: the name may run again at once.
    async with RedisStreamBus(redis_url, stream=stream, name="receiver"):
        pass


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


async def test_an_instance_whose_lease_ran_out_and_was_taken_stops(server: RedisServer) -> None:
    """Partitioned from Redis for longer than its lease, an instance cannot renew it; another
    takes the name; when the partition heals, the first stops with an error rather than
    share the name, and the other gets every message."""
    stream = unique_name()
    received = Received()
    failures: list[BaseException] = []
    refusals: list[str] = []
    stopped, done = anyio.Event(), anyio.Event()

    async def hold(proxy_url: str, *, task_status: TaskStatus[None]) -> None:
        try:
            async with RedisStreamBus(proxy_url, stream=stream, name="worker", lease=1.0):
                task_status.started()
                await anyio.sleep_forever()
        except BaseException as exc:
            failures.append(exc)
        finally:
            stopped.set()

    async def take(*, task_status: TaskStatus[None]) -> None:
        taker = RedisStreamBus(server.url, stream=stream, name="worker", lease=1.0)
        await taker.subscribe(received, name="record")
        while True:  # until the holder's lease has run out on the server
            try:
                async with taker:
                    task_status.started()
                    await done.wait()
                    return
            except TransportError as exc:
                refusals.append(str(exc))
            await anyio.sleep(0.1)  # polling the server's state: nothing signals it

    async with pausable_proxy(server.port) as proxy, anyio.create_task_group() as task_group:
        with fail_after(30):
            await task_group.start(hold, proxy.url)
            proxy.pause()
            await task_group.start(take)
            proxy.resume()
            await stopped.wait()
            async with RedisStreamBus(server.url, stream=stream, name=unique_name()) as sender:
                for n in range(20):
                    await sender.send(request(n))
                await received.wait_for(20)
            done.set()
    assert all("is in use by another running instance" in text for text in refusals)
    lost = [leaf for error in failures for leaf in _leaves(error)]
    assert len(lost) == 1, repr(failures)
    assert isinstance(lost[0], LeaseLostError), repr(failures)
    assert "lost its lease on the name 'worker'" in str(lost[0])
    assert "this one stopped rather than share it" in str(lost[0])


# --- durability="queued" -----------------------------------------------------------------


async def test_queued_sends_are_stored_in_order_and_flush_waits_for_them(
    redis_url: str,
) -> None:
    stream = unique_name()
    received = Received()
    async with (
        await receiving(redis_url, stream, received),
        RedisStreamBus(redis_url, stream=stream, name=unique_name(), durability="queued") as q,
    ):
        with fail_after(20):
            for n in range(1000):
                await q.send(request(n))
            await q.flush()
            assert q.transport_statistics().published == 1000
            await received.wait_for(1000)
    assert received.numbers == list(range(1000))


async def test_what_a_queued_bus_could_not_store_when_it_stopped_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Sends that return while Redis is known to be away are counted as at risk; what is
    still queued when the bus stops is counted and logged as lost, and ``flush()`` says so."""
    server = RedisServer()
    server.start()
    try:
        bus = RedisStreamBus(
            server.url,
            stream=unique_name(),
            name="q",
            durability="queued",
            request_timeout=0.2,
            health_interval=0.05,
        )
        with fail_after(20):
            async with bus:
                await to_thread.run_sync(server.kill)
                await bus.wait_connected(False)
                for n in range(5):
                    await bus.send(request(n))
            stats = bus.transport_statistics()
            with pytest.raises(TransportError, match="stopped before 5 queued message"):
                await bus.flush()
    finally:
        server.close()
    assert (stats.at_risk, stats.publish_failures, stats.published) == (5, 5, 0)
    assert "5 queued message(s) not stored" in caplog.text


def test_durability_is_stored_or_queued() -> None:
    with pytest.raises(ValueError, match="durability must be 'stored' or 'queued'"):
        RedisStreamBus(durability="later")  # type: ignore[arg-type]


def test_the_keys_beside_a_stream_share_its_cluster_slot() -> None:
    assert same_slot_key("jobs", ":x", cluster=True) == "{jobs}:x"
    assert same_slot_key("{tag}jobs", ":x", cluster=True) == "{tag}jobs:x"
    assert same_slot_key("a}b", ":x", cluster=False) == "a}b:x"
    with pytest.raises(ValueError, match="holds '}' but no hash tag"):
        same_slot_key("a}b", ":x", cluster=True)
