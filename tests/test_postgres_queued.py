"""PostgresBus with ``durability="queued"``: sends return once queued, the writer batches."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from anybus import BusDataMessage, TransportError
from anybus.postgres import PostgresBus
from anybus.postgres._client import DatabaseError, PgConnection
from anybus.testing import RecordingSubscriber
from anybus.testing.conformance import BusFactory, NetworkBusConformance

from .postgres_support import unique_channel

pytestmark = pytest.mark.anyio

TIMEOUT = 20


class PublishGate:
    """Holds every ``publish`` statement until opened; counts them and their messages. The
    hand-over is off meanwhile (a send to an idle writer would send its statement itself)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open = anyio.Event()
        self.statements = 0
        self.messages = 0
        self.refuse_next = False
        original = PgConnection.fetch

        async def fetch(
            conn: PgConnection, query: str, params: Sequence[object], **options: Any
        ) -> list[tuple[Any, ...]]:
            if ".publish(" in query:
                await self.open.wait()
                if self.refuse_next:
                    self.refuse_next = False
                    raise DatabaseError("refused for the test", "23514")
                self.statements += 1
                seqs = params[2]
                assert isinstance(seqs, list)
                self.messages += len(seqs)
            return await original(conn, query, params, **options)

        monkeypatch.setattr(PgConnection, "fetch", fetch)
        monkeypatch.setattr(PgConnection, "start", lambda *args: False)


def queued_bus(dsn: str, channel: str, name: str, **options: Any) -> PostgresBus:
    return PostgresBus(dsn, channel=channel, name=name, durability="queued", **options)


@contextlib.asynccontextmanager
async def receiving(dsn: str) -> AsyncIterator[tuple[str, PostgresBus, RecordingSubscriber]]:
    """A new channel, and a (stored) bus on it with a recording subscriber."""
    channel = unique_channel()
    far = RecordingSubscriber("far")
    async with PostgresBus(dsn, channel=channel, name="receiver") as receiver:
        await receiver.subscribe(far)
        yield channel, receiver, far


async def test_queued_sends_return_at_once_are_stored_in_batches_and_flush_waits(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with receiving(postgres_dsn) as (channel, _receiver, far):
        gate = PublishGate(monkeypatch)
        async with queued_bus(postgres_dsn, channel, "sender") as sender:
            messages = [BusDataMessage(source="t") for _ in range(300)]
            with anyio.fail_after(TIMEOUT):
                for message in messages:  # none of them is stored yet: each returns at once
                    await sender.send(message)
            assert sender.transport_statistics().published == 0
            flushed = anyio.Event()

            async def flush() -> None:
                await sender.flush()
                flushed.set()

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(flush)
                await wait_all_tasks_blocked()
                assert not flushed.is_set()  # the first batch is held
                gate.open.set()
            assert sender.transport_statistics().published == 300
            with anyio.fail_after(TIMEOUT):
                await far.wait_for_count(300)
    assert far.messages == messages  # in order
    assert gate.messages == 300
    assert gate.statements <= 300 // 100 + 2  # batches of up to read_batch (100)


async def test_a_full_outbox_holds_a_queued_send_then_refuses_it_at_the_deadline(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with receiving(postgres_dsn) as (channel, receiver, far):
        gate = PublishGate(monkeypatch)
        async with queued_bus(
            postgres_dsn, channel, "sender", outbox=2, send_deadline=0.3
        ) as sender:
            first, second = BusDataMessage(source="1"), BusDataMessage(source="2")
            await sender.send(first)  # taken by the writer: its statement is held
            await wait_all_tasks_blocked()
            await sender.send(second)
            third = BusDataMessage(source="3")
            with anyio.fail_after(TIMEOUT), pytest.raises(TransportError) as raised:
                await sender.send(third)  # no room: waits for the deadline
            assert str(raised.value) == (
                "the outbox (2 messages) stayed full for 0.3 s: the message was not queued, "
                "and never will be; delivered to local subscribers only"
            )
            assert sender.transport_statistics().publish_failures == 1
            fourth = BusDataMessage(source="4")
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(sender.send, fourth)  # waits for room again
                await wait_all_tasks_blocked()
                gate.open.set()  # the first batch is stored: room for the fourth
            with anyio.fail_after(TIMEOUT):
                await sender.flush()
                await far.wait_for_count(3)
                await receiver.wait_idle()
            assert sender.transport_statistics().publish_failures == 1
    assert far.messages == [first, second, fourth]


async def test_what_is_queued_when_the_bus_stops_is_stored(postgres_dsn: str) -> None:
    async with receiving(postgres_dsn) as (channel, _receiver, far):
        messages = [BusDataMessage(source="t") for _ in range(500)]
        async with queued_bus(postgres_dsn, channel, "sender") as sender:
            for message in messages:
                await sender.send(message)
        # Left at once: the bus stored what was queued on its way out.
        assert sender.transport_statistics().published == 500
        with anyio.fail_after(TIMEOUT):
            await far.wait_for_count(500)
    assert far.messages == messages


async def test_what_a_stopping_bus_cannot_store_in_time_is_counted_and_flush_says_so(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    PublishGate(monkeypatch)  # never opened: the server "never answers" a publish
    bus = queued_bus(postgres_dsn, unique_channel(), "sender", statement_timeout=0.3)
    with anyio.fail_after(TIMEOUT):
        async with bus:
            for _ in range(5):
                await bus.send(BusDataMessage(source="t"))
        with pytest.raises(TransportError) as raised:
            await bus.flush()
    # Their statement had been sent (as far as the bus knows): they may have been stored.
    assert str(raised.value) == (
        f"the bus stopped before 5 queued message(s) were stored in postgres at "
        f"{bus._postgres._where} (5 of them were being stored, so they may have been, then "
        f"in order): they reached local subscribers only"
    )
    stats = bus.transport_statistics()
    assert (stats.published, stats.publish_failures) == (0, 5)
    assert [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "queued message(s) not stored" in r.getMessage()
    ] == [
        f"5 queued message(s) not stored in postgres at {bus._postgres._where} (5 of them "
        f"were being stored, so they may have been, then in order): the bus stopped first; "
        f"they reached local subscribers only"
    ]
    await bus.flush()  # said once


async def test_a_refused_queued_batch_is_counted_and_the_next_ones_are_stored(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with receiving(postgres_dsn) as (channel, _receiver, far):
        gate = PublishGate(monkeypatch)
        gate.refuse_next = True
        async with queued_bus(postgres_dsn, channel, "sender") as sender:
            refused = BusDataMessage(source="refused")
            await sender.send(refused)  # its statement is held, then refused
            await wait_all_tasks_blocked()
            later = [BusDataMessage(source="t") for _ in range(3)]
            for message in later:
                await sender.send(message)
            gate.open.set()
            with anyio.fail_after(TIMEOUT):
                await sender.flush()
                await far.wait_for_count(3)
            stats = sender.transport_statistics()
    assert far.messages == later
    assert (stats.published, stats.publish_failures) == (3, 1)
    assert any("postgres refused to store 1 message(s)" in r.getMessage() for r in caplog.records)


async def test_flush_does_not_wait_for_a_stored_send_that_raised(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = PublishGate(monkeypatch)  # its statement is held past its sender's deadline
    async with PostgresBus(
        postgres_dsn, channel=unique_channel(), name="s", send_deadline=0.2
    ) as bus:
        with anyio.fail_after(TIMEOUT), pytest.raises(TransportError, match="may be"):
            await bus.send(BusDataMessage(source="t"))
        with anyio.fail_after(TIMEOUT):
            await bus.flush()  # what raised is not waited for
        gate.open.set()


def test_the_durability_options_are_checked() -> None:
    dsn = "postgresql://postgres@127.0.0.1:5432/test"
    with pytest.raises(ValueError, match=r"durability must be 'stored' or 'queued', got 'later'"):
        PostgresBus(dsn, durability="later")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"outbox must be an integer of at least 1, got 0"):
        PostgresBus(dsn, durability="queued", outbox=0)


class TestQueuedPostgresBusConformance(NetworkBusConformance):
    @pytest.fixture
    def bus_factory(self, postgres_dsn: str) -> BusFactory:
        channel = unique_channel()
        names = iter(range(1000))
        return lambda: queued_bus(postgres_dsn, channel, f"bus-{next(names)}")
