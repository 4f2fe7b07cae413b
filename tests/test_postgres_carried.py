"""PostgresBus's notifications carry small messages: a reader takes them without reading the
table, passes its own bus's ids as the writer learned them, and reads the table for
everything else (too large to carry, not the next id, hostile)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Any

import anyio
import psycopg
import pytest

from anybus import BusDataMessage, BusMessage, MessageRejected, WireCodec
from anybus._sequence import SequenceTracker
from anybus.postgres import PostgresBus, _upkeep
from anybus.postgres._client import PgConnection
from anybus.postgres._schema import CARRY_BYTES
from anybus.postgres._transport import PostgresTransport
from anybus.postgres._upkeep import CARRY_PAUSE, Upkeep
from anybus.testing import RecordingSubscriber

from .postgres_support import notification_name, unique_channel

pytestmark = pytest.mark.anyio

TIMEOUT = 20


class Reads:
    """Counts the reads of the table for messages (not those sent to acknowledge), per
    transport."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: dict[int, int] = {}
        original = PostgresTransport._read

        async def read(
            transport: PostgresTransport, conn: PgConnection, ack: int | None, after: int
        ) -> list[Any]:
            if ack is None:  # not an acknowledgement (which reads what follows as well)
                self.counts[id(transport)] = self.counts.get(id(transport), 0) + 1
            return await original(transport, conn, ack, after)

        monkeypatch.setattr(PostgresTransport, "_read", read)

    def of(self, bus: PostgresBus) -> int:
        return self.counts.get(id(bus._transport), 0)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    return Reads(monkeypatch)


@contextlib.asynccontextmanager
async def pair(
    dsn: str, **options: Any
) -> AsyncIterator[tuple[str, PostgresBus, PostgresBus, RecordingSubscriber]]:
    """A new channel, a sender and a receiver bus on it (the receiver with a recording
    subscriber), carrying messages in notifications as they do by default unless
    ``options`` say otherwise (and polling rarely: any read is one the test caused), and one
    message delivered: both readers are past their first read."""
    options = {"poll_interval": 60.0, "lease": 600.0, **options}
    channel = unique_channel()
    seen = RecordingSubscriber("seen")
    async with (
        PostgresBus(dsn, channel=channel, name="receiver", **options) as receiver,
        PostgresBus(dsn, channel=channel, name="sender", **options) as sender,
    ):
        await receiver.subscribe(seen)
        first = BusDataMessage(source="first")
        await sender.send(first)
        with anyio.fail_after(TIMEOUT):
            await seen.wait_for(lambda messages: first in messages)
        yield channel, sender, receiver, seen


def contains(message: BusMessage, messages: Sequence[BusMessage]) -> bool:
    return message in messages


def sender_hash(bus: PostgresBus) -> bytes:
    """What ``bus``'s notifications begin with."""
    return hashlib.md5(bus.instance.encode()).hexdigest().encode()


@contextlib.asynccontextmanager
async def listening(dsn: str, channel: str) -> AsyncIterator[PgConnection]:
    """A connection of the test's own, listening to ``channel``'s notifications."""
    listener = await PgConnection.open(
        dsn, application_name="test", connect_timeout=5, statement_timeout=5
    )
    try:
        await listener.fetch("SELECT anybus.listen(%s)", [channel])
        yield listener
    finally:
        await listener.close()


def notify(dsn: str, channel: str, payloads: Sequence[str]) -> None:
    """Send ``payloads`` on the channel's notifications, as a granted role that knows the
    channel may."""
    name = notification_name(dsn, channel)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for payload in payloads:
            conn.execute("SELECT pg_notify(%s, %s)", [name, payload])


async def test_small_messages_arrive_in_their_notifications_without_a_read(
    postgres_dsn: str, reads: Reads
) -> None:
    async with pair(postgres_dsn) as (_, sender, receiver, seen):
        before = (reads.of(sender), reads.of(receiver))
        sent = [BusDataMessage(source=f"m{i}") for i in range(20)]
        for message in sent:  # one at a time, as a ping-pong does
            await sender.send(message)
            with anyio.fail_after(TIMEOUT):
                await seen.wait_for(partial(contains, message))
        assert (reads.of(sender), reads.of(receiver)) == before
        stats = receiver.transport_statistics()
        assert seen.messages[1:] == sent
        assert stats.received == 21
        assert stats.position == 21  # ids have no holes: 21 messages, 21 ids
        assert (stats.gaps, stats.missed, stats.rejected) == (0, 0, {})


async def test_a_bus_passes_its_own_ids_as_its_writer_learned_them(
    postgres_dsn: str, reads: Reads
) -> None:
    async with pair(postgres_dsn) as (_, sender, receiver, _):
        back = RecordingSubscriber("back")
        await sender.subscribe(back)
        before = reads.of(sender)
        for i in range(5):
            await sender.send(BusDataMessage(source=f"own{i}"))
        # The reply is id 7: carried, it is the next id only once the sender's reader
        # passed its own 2 to 6, which it did not read.
        await receiver.send(reply := BusDataMessage(source="reply"))
        with anyio.fail_after(TIMEOUT):
            await back.wait_for(lambda messages: reply in messages)
        assert back.messages[-1] == reply  # after its own five, delivered locally
        assert sender.transport_statistics().position == 7
        assert reads.of(sender) == before


async def test_a_message_too_large_to_carry_is_read_from_the_table(
    postgres_dsn: str, reads: Reads
) -> None:
    async with pair(postgres_dsn) as (channel, sender, _, seen):
        async with listening(postgres_dsn, channel) as listener:
            large = BusDataMessage(source="x" * CARRY_BYTES)
            small = BusDataMessage(source="small")
            await sender.send(large)
            await sender.send(small)
            with anyio.fail_after(TIMEOUT):
                await seen.wait_for(lambda messages: small in messages)
                payloads: list[bytes] = []
                while len(payloads) < 2:
                    payloads += (await listener.wait_notifies())[0]
        assert seen.messages[1:] == [large, small]
        assert payloads[0] == sender_hash(sender)  # a wake-up only: the receiver read the table
        hash_, first, body = payloads[1].split(b" ")
        assert (hash_, first) == (sender_hash(sender), b"3")
        assert small.source.encode() in bytes.fromhex(body.decode())


async def test_hostile_notifications_are_counted_and_dropped(
    postgres_dsn: str, reads: Reads, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pair(postgres_dsn) as (channel, sender, receiver, seen):
        next_id = receiver.transport_statistics().position + 1
        rejections = receiver._transport._rows.rejections  # type: ignore[attr-defined]
        parsed = anyio.Event()
        record = rejections.record

        def counted(exc: MessageRejected, *, origin: str) -> None:
            record(exc, origin=origin)
            if rejections.total == 2:
                parsed.set()

        monkeypatch.setattr(rejections, "record", counted)
        await anyio.to_thread.run_sync(
            notify,
            postgres_dsn,
            channel,
            [
                f"0123 {next_id} {b'not an envelope'.hex()}",  # a lie about the next id
                "0123",  # a wake-up, carrying nothing: it reads the table (nothing new)
                f"0123 {next_id + 1000} 00",  # not the next id: it reads the table
                f"0123 {next_id} zz",  # not hex: malformed
                "0123 -5 00",  # no such id: malformed
            ],
        )
        with anyio.fail_after(TIMEOUT):
            await parsed.wait()  # so the lie was heard before the real message is sent
        real = BusDataMessage(source="real")
        await sender.send(real)  # stored as next_id: its row says what the lie did not
        with anyio.fail_after(TIMEOUT):
            await seen.wait_for(lambda messages: real in messages)
        assert seen.messages[1:] == [real]
        stats = receiver.transport_statistics()
        assert stats.rejected == {"malformed": 3}
        assert (stats.position, stats.gaps, stats.missed) == (next_id, 0, 0)
        assert reads.of(receiver) >= 1


def rows(dsn: str, query: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


async def test_ids_continue_after_housekeeping_deleted_every_row(postgres_dsn: str) -> None:
    channel = unique_channel()
    seen = RecordingSubscriber("seen")
    async with (
        PostgresBus(postgres_dsn, channel=channel, name="receiver") as receiver,
        PostgresBus(postgres_dsn, channel=channel, name="sender") as sender,
    ):
        await receiver.subscribe(seen)
        for i in range(3):
            await sender.send(BusDataMessage(source=f"m{i}"))
        with anyio.fail_after(TIMEOUT):
            await seen.wait_for(lambda messages: len(messages) == 3)
    # Both consumers acknowledged id 3 as they stopped: housekeeping deletes every row.
    deleted = await anyio.to_thread.run_sync(
        rows, postgres_dsn, "SELECT * FROM anybus.housekeep(%s, '1 day', 100000)", [channel]
    )
    assert deleted == [(3, 0)]
    again = RecordingSubscriber("again")
    async with (
        PostgresBus(postgres_dsn, channel=channel, name="receiver") as receiver,
        PostgresBus(postgres_dsn, channel=channel, name="newcomer") as newcomer,
    ):
        await receiver.subscribe(again)
        later = BusDataMessage(source="later")
        await newcomer.send(later)
        with anyio.fail_after(TIMEOUT):
            await again.wait_for(lambda messages: later in messages)
        assert receiver.transport_statistics().position == 4  # not 1: no id is given out twice
        assert (receiver.transport_statistics().missed, again.messages) == (0, [later])


def publish_one_at_a_time(dsn: str, channel: str) -> list[tuple[Any, ...]]:
    """Calls of ``publish`` as a test's own role (blocking): what each returned, and the
    payload of the notification it sent (None: none)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT anybus.listen(%s)", [channel])
        calls: list[tuple[list[int], list[bytes], int]] = [
            ([1], [b"\x01\x02"], 3000),  # one message: carried
            ([1], [b"\x01\x02"], 3000),  # a retry: stores nothing, notifies nobody
            ([0], [b"\x03"], 3000),  # below the highest stored: nothing
            ([2], [b"\x04"], 0),  # not to be carried
            ([3], [b"\x05\x06"], 1),  # too large to carry
            ([4], [b""], 3000),  # an empty body is carried as such
            ([5, 6], [b"\x07", b"\x08"], 3000),  # a batch: the general statements
        ]
        outcome: list[tuple[Any, ...]] = []
        for seqs, bodies, carry in calls:
            row = conn.execute(
                "SELECT o_stored, o_last FROM anybus.publish(%s, 'one', %s, %s, %s)",
                [channel, seqs, bodies, carry],
            ).fetchone()
            assert row is not None
            payloads = [n.payload for n in conn.notifies(timeout=0.2, stop_after=1)]
            outcome.append((*row, payloads[0] if payloads else None))
        return outcome


async def test_a_publish_of_one_message_does_what_a_batch_does(postgres_dsn: str) -> None:
    """``publish`` stores a lone message with statements of its own (the latency-bound
    case); what it stores, returns and notifies is what the general ones do for a batch."""
    channel = unique_channel()
    async with PostgresBus(postgres_dsn, channel=channel, name="schema-maker"):
        pass  # the schema, made
    outcome = await anyio.to_thread.run_sync(publish_one_at_a_time, postgres_dsn, channel)
    one = hashlib.md5(b"one").hexdigest()
    assert outcome == [
        (1, 1, f"{one} 1 0102"),
        (0, 1, None),
        (0, 1, None),
        (1, 2, one),
        (1, 3, one),
        (1, 4, f"{one} 4 "),
        (2, 6, f"{one} 5 07 08"),
    ]
    stored = await anyio.to_thread.run_sync(
        rows,
        postgres_dsn,
        "SELECT id, seq, body FROM anybus.messages WHERE channel = %s ORDER BY id",
        [channel],
    )
    bodies = [b"\x01\x02", b"\x04", b"\x05\x06", b"", b"\x07", b"\x08"]
    assert stored == [(i, i, body) for i, body in enumerate(bodies, 1)]


async def test_with_carry_messages_off_a_notification_carries_nothing(
    postgres_dsn: str, reads: Reads
) -> None:
    async with pair(postgres_dsn, carry_messages=False) as (channel, sender, _, seen):
        async with listening(postgres_dsn, channel) as listener:
            await sender.send(message := BusDataMessage(source="small"))
            with anyio.fail_after(TIMEOUT):
                await seen.wait_for(partial(contains, message))
                payloads = (await listener.wait_notifies())[0]
        # A wake-up only: the receiver read the message from the table.
        assert payloads == [sender_hash(sender)]


async def test_while_the_notification_queue_fills_a_bus_carries_nothing(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", "anybus.postgres")
    async with pair(postgres_dsn) as (channel, sender, _, seen):
        upkeep = sender._postgres._upkeep
        async with listening(postgres_dsn, channel) as listener:
            upkeep.watch(CARRY_PAUSE)  # how full housekeeping found the queue
            upkeep.watch(CARRY_PAUSE * 0.6)  # (less full, not yet half)
            assert upkeep.paused
            await sender.send(paused := BusDataMessage(source="paused"))
            with anyio.fail_after(TIMEOUT):
                await seen.wait_for(partial(contains, paused))
                plain = (await listener.wait_notifies())[0]
            upkeep.watch(CARRY_PAUSE * 0.4)
            assert not upkeep.paused
            await sender.send(resumed := BusDataMessage(source="resumed"))
            with anyio.fail_after(TIMEOUT):
                await seen.wait_for(partial(contains, resumed))
                carried = (await listener.wait_notifies())[0]
    assert plain == [sender_hash(sender)]  # a wake-up only: the receiver read the table
    assert len(carried) == 1
    assert carried[0].startswith(sender_hash(sender) + b" ")  # the message, carried
    said = [r.getMessage() for r in caplog.records if "notification queue" in r.getMessage()]
    assert len(said) == 2, said  # once as it paused, once as it resumed
    assert "queue is 5.0% full (a session that listens is not reading" in said[0]
    assert "carrying messages in notifications is paused until it is under 2.5%" in said[0]
    assert said[1].endswith("queue is 2.0% full: carrying messages again")


async def test_a_role_that_may_not_read_the_queue_is_told_once_and_carries_on(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the server answers a role from which EXECUTE on pg_notification_queue_usage() was
    # revoked (a superuser, as the tests run, may execute everything).
    denied = (
        "DO $$ BEGIN RAISE EXCEPTION 'permission denied for function "
        "pg_notification_queue_usage' USING ERRCODE = '42501'; END $$"
    )
    monkeypatch.setattr(_upkeep, "_USAGE", denied)
    rounds, done = 0, anyio.Event()
    run = Upkeep.run

    async def counted(upkeep: Upkeep, conn: PgConnection) -> None:
        nonlocal rounds
        await run(upkeep, conn)
        rounds += 1
        if rounds == 6:  # three rounds or more of a bus
            done.set()

    monkeypatch.setattr(Upkeep, "run", counted)
    async with pair(postgres_dsn, housekeeping_interval=0.01) as (channel, sender, _, seen):
        with anyio.fail_after(TIMEOUT):
            await done.wait()
        async with listening(postgres_dsn, channel) as listener:
            await sender.send(message := BusDataMessage(source="carried"))
            with anyio.fail_after(TIMEOUT):
                await seen.wait_for(partial(contains, message))
                [payload] = (await listener.wait_notifies())[0]
    assert payload.startswith(sender_hash(sender) + b" ")  # carried still
    said = [r.getMessage() for r in caplog.records if "may not read" in r.getMessage()]
    assert len(said) == 2, said  # once a bus
    assert "is not paused if the queue fills up; grant it EXECUTE" in said[0]


async def test_a_replayed_signed_message_does_not_take_the_place_of_the_next(
    postgres_dsn: str, reads: Reads, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = {"k1": b"a secret of the buses"}
    channel = unique_channel()
    seen = RecordingSubscriber("seen")
    options: dict[str, Any] = {"carry_messages": True, "poll_interval": 60.0, "lease": 600.0}
    async with (
        PostgresBus(
            postgres_dsn, channel=channel, name="r", codec=WireCodec(signing_keys=keys), **options
        ) as receiver,
        PostgresBus(
            postgres_dsn, channel=channel, name="s", codec=WireCodec(signing_keys=keys), **options
        ) as sender,
    ):
        await receiver.subscribe(seen)
        async with listening(postgres_dsn, channel) as listener:
            await sender.send(first := BusDataMessage(source="first"))
            with anyio.fail_after(TIMEOUT):
                await seen.wait_for(partial(contains, first))
                captured = (await listener.wait_notifies())[0][0]  # signed, carried
        refused = anyio.Event()
        is_new = SequenceTracker.is_new

        def spied(tracker: SequenceTracker, envelope: Any) -> bool:
            new = is_new(tracker, envelope)
            if not new:
                refused.set()
            return new

        monkeypatch.setattr(SequenceTracker, "is_new", spied)
        sender_hash, _, body = captured.split(b" ")
        next_id = receiver.transport_statistics().position + 1
        await anyio.to_thread.run_sync(
            notify, postgres_dsn, channel, [f"{sender_hash.decode()} {next_id} {body.decode()}"]
        )
        with anyio.fail_after(TIMEOUT):
            await refused.wait()  # the replay was heard, and refused
        await sender.send(real := BusDataMessage(source="real"))
        with anyio.fail_after(TIMEOUT):
            await seen.wait_for(partial(contains, real))
        assert seen.messages == [first, real]
        stats = receiver.transport_statistics()
        assert stats.position == next_id
        assert stats.duplicates + stats.replayed == 1
