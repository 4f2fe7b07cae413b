"""PostgresBus against the shared Postgres server: conformance, durability, leases."""

from __future__ import annotations

import hashlib
from typing import cast

import anyio
import psycopg
import pytest
from anyio import wait_all_tasks_blocked

from anybus import BusCancelMessage, BusDataMessage, BusMessage, TransportError
from anybus._transport import DeliveryMark, TransportHost
from anybus.postgres import PostgresBus
from anybus.postgres._client import PgConnection
from anybus.postgres._cursor import Cursor
from anybus.testing import RecordingSubscriber
from anybus.testing.conformance import BusFactory, NetworkBusConformance

from .postgres_support import unique_channel

pytestmark = pytest.mark.anyio

TIMEOUT = 20


class TestPostgresBusConformance(NetworkBusConformance):
    @pytest.fixture
    def bus_factory(self, postgres_dsn: str) -> BusFactory:
        channel = unique_channel()
        names = iter(range(1000))
        return lambda: PostgresBus(postgres_dsn, channel=channel, name=f"bus-{next(names)}")


def numbered(count: int) -> list[BusMessage]:
    return [
        BusCancelMessage(source="t") if i % 10 == 9 else BusDataMessage(source="t")
        for i in range(count)
    ]


async def test_a_restarted_instance_resumes_where_it_left_off(postgres_dsn: str) -> None:
    channel = unique_channel()
    first, second = RecordingSubscriber("r"), RecordingSubscriber("r")
    sent = numbered(30)
    async with PostgresBus(postgres_dsn, channel=channel, name="sender") as sender:
        async with PostgresBus(postgres_dsn, channel=channel, name="receiver") as receiver:
            await receiver.subscribe(first)
            for message in sent[:10]:
                await sender.send(message)
            with anyio.fail_after(TIMEOUT):
                await first.wait_for_count(10)
        for message in sent[10:]:
            await sender.send(message)
        # Subscribed before it starts: the backlog may be read as soon as it does.
        resumed = PostgresBus(postgres_dsn, channel=channel, name="receiver")
        await resumed.subscribe(second)
        async with resumed as receiver:
            with anyio.fail_after(TIMEOUT):
                await second.wait_for_count(20)
                await receiver.wait_idle()
    assert sorted(m.id for m in first.messages + second.messages) == sorted(m.id for m in sent)


async def test_a_new_name_starts_from_now(postgres_dsn: str) -> None:
    channel = unique_channel()
    recorder = RecordingSubscriber("r")
    async with PostgresBus(postgres_dsn, channel=channel, name="sender") as sender:
        await sender.send(BusDataMessage(source="before"))
        async with PostgresBus(postgres_dsn, channel=channel, name="late") as late:
            await late.subscribe(recorder)
            await sender.send(after := BusDataMessage(source="after"))
            with anyio.fail_after(TIMEOUT):
                await recorder.wait_for(lambda seen: after in seen)
    assert [m.id for m in recorder.messages] == [after.id]


async def test_a_second_instance_under_a_name_in_use_is_refused(postgres_dsn: str) -> None:
    channel = unique_channel()
    async with PostgresBus(postgres_dsn, channel=channel, name="only"):
        with pytest.raises(TransportError, match="in use by another running instance"):
            async with PostgresBus(postgres_dsn, channel=channel, name="only"):
                pass  # pragma: no cover
    # Stopped, it gave its lease up: the name may run again at once.
    async with PostgresBus(postgres_dsn, channel=channel, name="only") as again:
        assert again.running


async def test_a_reader_too_far_behind_reports_exactly_what_it_lost(postgres_dsn: str) -> None:
    channel = unique_channel()
    recorder = RecordingSubscriber("r")
    async with PostgresBus(postgres_dsn, channel=channel, name="slow") as slow:
        await slow.subscribe(recorder)
    async with PostgresBus(
        postgres_dsn, channel=channel, name="sender", max_len=10, housekeeping_interval=1000
    ) as sender:
        for _ in range(25):
            await sender.send(BusDataMessage(source="t"))
    # Housekeeping runs as a bus starts: this one deletes all but the last 10.
    async with PostgresBus(postgres_dsn, channel=channel, name="keeper", max_len=10):
        pass
    # Subscribed before it runs: its reader may read (and acknowledge) the rows as soon as
    # the bus has started, before a subscribe() in the block would have run.
    slow = PostgresBus(postgres_dsn, channel=channel, name="slow")
    await slow.subscribe(recorder)
    async with slow:
        try:
            with anyio.fail_after(TIMEOUT):
                await recorder.wait_for_count(10)
                await slow.wait_idle()
        except TimeoutError:
            state = table_state(postgres_dsn, channel)
            pytest.fail(f"{len(recorder.messages)} of 10 messages came: {state}")
        stats = slow.transport_statistics()
    # Say what the table held, should it fail again (it failed twice under load, reading
    # before its subscriber was there: 0 of 10 messages, the consumer past all 25).
    state = table_state(postgres_dsn, channel)
    assert stats.missed == 15, state
    assert stats.gaps == 1, state
    assert len(recorder.messages) == 10, state


def table_state(dsn: str, channel: str) -> list[tuple[object, ...]]:
    """The channel's consumers (name, position, max_len) and its message ids, to explain a
    failure."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT name, position, max_len FROM anybus.consumers WHERE channel = %s "
            "ORDER BY name",
            [channel],
        ).fetchall()
        ids = conn.execute(
            "SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM anybus.messages "
            "WHERE channel = %s",
            [channel],
        ).fetchall()
    return [*rows, ("ids", *ids[0])]


async def test_a_send_that_overtook_another_on_its_way_to_the_outbox_does_not_hide_it(
    postgres_dsn: str,
) -> None:
    # publish() stores only the numbers above the sender's highest stored one, so the outbox
    # numbers a message as it enters: a send held up by its local delivery (a full inbox),
    # overtaken by a later one, is stored after it all the same.
    channel = unique_channel()
    recorder = RecordingSubscriber("r")
    taken, release = anyio.Event(), anyio.Event()

    async def busy(message: BusMessage) -> None:
        if message.source == "first":
            taken.set()
            await release.wait()

    async with PostgresBus(postgres_dsn, channel=channel, name="receiver") as receiver:
        await receiver.subscribe(recorder)
        async with PostgresBus(
            postgres_dsn, channel=channel, name="sender", max_buffer=1
        ) as sender:
            await sender.subscribe(busy, name="busy")
            with anyio.fail_after(TIMEOUT):
                await sender.send(first := BusDataMessage(source="first"))
                await taken.wait()  # the handler holds it
                await sender.send(fill := BusDataMessage(source="fill"))  # the inbox is full
                async with anyio.create_task_group() as task_group:
                    held = BusDataMessage(source="held")
                    task_group.start_soon(sender.send, held)  # waits for room in the inbox
                    await wait_all_tasks_blocked()
                    # A system message takes its own lane: it overtakes the held send.
                    await sender.send(overtaking := BusCancelMessage(source="overtaking"))
                    release.set()
                await recorder.wait_for_count(4)
    # (The receiver delivers the system message before data that has not started.)
    assert sorted(m.source for m in recorder.messages) == ["fill", "first", "held", "overtaking"]
    # ... and it was stored before the held send, which was not taken for a repeat.
    bodies = await anyio.to_thread.run_sync(stored_bodies, postgres_dsn, channel)
    sent = [first, fill, overtaking, held]
    order = [next(m.source for m in sent if m.id.encode() in body) for body in bodies]
    assert order == ["first", "fill", "overtaking", "held"]


async def test_a_bus_is_not_woken_by_its_own_messages_and_stopping_acknowledges_past_them(
    postgres_dsn: str,
) -> None:
    channel = unique_channel()
    listener = await PgConnection.open(
        postgres_dsn, application_name="test", connect_timeout=5, statement_timeout=5
    )
    try:
        await listener.fetch("SELECT anybus.listen(%s)", [channel])
        async with PostgresBus(postgres_dsn, channel=channel, name="talker") as talker:
            own = hashlib.md5(talker.instance.encode()).hexdigest().encode()
            for _ in range(3):
                await talker.send(BusDataMessage(source="talker"))
            # Each publish notifies with its sender's (hashed) instance: ...
            with anyio.fail_after(TIMEOUT):
                seen = (0, 0)
                while seen[1] < 3:
                    counts = await listener.wait_notifies(own=own)
                    seen = (seen[0] + len(counts[0]), seen[1] + counts[1])
            assert seen == (0, 3)  # ... which the bus's own reader does not wake for.
        # Stopping at once, its reader had not read its rows: it acknowledged past them, so
        # the next run of the name does not get them.
        rows = await anyio.to_thread.run_sync(consumers, postgres_dsn, channel)
        assert rows == [("talker", 3)]
    finally:
        await listener.close()


def consumers(dsn: str, channel: str) -> list[tuple[str, int]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT name, position FROM anybus.consumers WHERE channel = %s ORDER BY name",
            [channel],
        ).fetchall()
    return [(str(name), int(position)) for name, position in rows]


def stored_bodies(dsn: str, channel: str) -> list[bytes]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT body FROM anybus.messages WHERE channel = %s ORDER BY id", [channel]
        ).fetchall()
    return [bytes(row[0]) for row in rows]


def test_a_dsn_libpq_cannot_read_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match=r"dsn is not a libpq connection string or URL .*port"):
        PostgresBus("host=db port")
    with pytest.raises(TypeError, match="dsn must be a libpq connection string or URL"):
        PostgresBus(5432)  # type: ignore[arg-type]


class _Marks:
    """A host whose deliveries are numbered marks, handled when the test says."""

    def __init__(self) -> None:
        self.handled_up_to = 0

    def handled(self, mark: object) -> bool:
        assert isinstance(mark, int)
        return mark <= self.handled_up_to

    def lost(self, mark: object) -> bool:
        return False


def test_what_the_cursor_settled_stays_settled_until_it_is_acknowledged() -> None:
    # Acknowledgements are coalesced: what settle() found handled may go out later, after
    # more was read, and must not be forgotten meanwhile (nor at the last acknowledgement).
    host = _Marks()
    cursor = Cursor()
    cursor.start(10)
    for entry_id in (11, 12, 13):
        cursor.read(entry_id, cast(DeliveryMark, entry_id))
    host.handled_up_to = 12
    assert cursor.settle(cast(TransportHost, host)) == 12  # not acknowledged (coalesced)
    cursor.read(14, cast(DeliveryMark, 14))
    assert cursor.settle(cast(TransportHost, host)) == 12  # 13 is not handled: still 12
    assert cursor.acknowledged == 10
    host.handled_up_to = 14
    assert cursor.settle(cast(TransportHost, host)) == 14
