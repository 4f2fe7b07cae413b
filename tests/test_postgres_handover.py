"""The writer's hand-over: a send that finds the writer idle sends its ``publish`` itself, and
the writer collects the answer (``anybus/postgres/_outbox.py``). On both backends, against the
shared server: it is taken, it keeps order, and cancelling the sender, stopping the bus or
losing the connection in between loses nothing and says what it did."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from typing import Any

import anyio
import psycopg
import pytest

from anybus import BusDataMessage, BusMessage, TransportError
from anybus.postgres import PostgresBus
from anybus.postgres._client import PgConnection
from anybus.postgres._connections import Connections
from anybus.testing import RecordingSubscriber

from .postgres_roles import dsn_as
from .postgres_support import unique_channel

pytestmark = pytest.mark.anyio

TIMEOUT = 20


class HandOvers:
    """Counts the ``publish`` statements sent by a sender's task (``PgConnection.start``);
    ``then`` runs right after one was sent."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.taken = 0
        self.then: Callable[[], object] | None = None
        original = PgConnection.start

        def start(conn: PgConnection, query: str, params: Sequence[object]) -> bool:
            sent = original(conn, query, params)
            if sent and ".publish(" in query:
                self.taken += 1
                if self.then is not None:
                    then, self.then = self.then, None
                    then()
            return sent

        monkeypatch.setattr(PgConnection, "start", start)


class Opened:
    """Records the connections ``PgConnection.open`` gives, and counts the opens that failed;
    ``refused`` is set at the third failure."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.connections: list[PgConnection] = []
        self.failed = 0
        self.refused = anyio.Event()
        original = PgConnection.open.__func__  # type: ignore[attr-defined]

        async def opening(cls: type[PgConnection], dsn: str, /, **options: Any) -> PgConnection:
            try:
                conn: PgConnection = await original(cls, dsn, **options)
            except TransportError:
                self.failed += 1
                if self.failed == 3:
                    self.refused.set()
                raise
            self.connections.append(conn)
            return conn

        monkeypatch.setattr(PgConnection, "open", classmethod(opening))


@contextlib.asynccontextmanager
async def sending(
    dsn: str, **sender_options: Any
) -> AsyncIterator[tuple[PostgresBus, PostgresBus, RecordingSubscriber]]:
    """A receiver bus with a recording subscriber, and a sender bus, on a new channel."""
    channel = unique_channel()
    far = RecordingSubscriber("far")
    async with (
        PostgresBus(dsn, channel=channel, name="receiver") as receiver,
        PostgresBus(dsn, channel=channel, name="sender", **sender_options) as sender,
    ):
        await receiver.subscribe(far)
        yield receiver, sender, far


async def terminate(dsn: str, application_name: str) -> None:
    def work() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE %s",
                [application_name],
            )

    await anyio.to_thread.run_sync(work)


@pytest.mark.parametrize("durability", ["stored", "queued"])
async def test_sends_to_an_idle_writer_are_handed_over_and_arrive_in_order(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch, durability: Any
) -> None:
    handovers = HandOvers(monkeypatch)
    messages = [BusDataMessage(source="t") for _ in range(30)]
    async with sending(postgres_dsn, durability=durability) as (_receiver, sender, far):
        with anyio.fail_after(TIMEOUT):
            for message in messages:  # one at a time: the writer is idle for each
                await sender.send(message)
                await sender.flush()
            await far.wait_for_count(len(messages))
        stats = sender.transport_statistics()
    assert far.messages == messages
    assert (stats.published, stats.publish_failures) == (30, 0)
    # The first publish of a connection prepares it, through the writer; then each is handed
    # over (a queued send's writer may be woken late, and take one itself).
    assert handovers.taken >= (29 if durability == "stored" else 20)


async def test_a_sender_cancelled_after_its_hand_over_is_told_it_may_be_stored(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    handovers = HandOvers(monkeypatch)
    caplog.set_level(logging.INFO, "anybus.postgres")
    async with sending(postgres_dsn) as (_receiver, sender, far):
        with anyio.fail_after(TIMEOUT):
            await sender.send(first := BusDataMessage(source="t"))  # prepares publish
        with anyio.CancelScope() as scope:
            handovers.then = scope.cancel
            await sender.send(cancelled := BusDataMessage(source="t"))
        assert scope.cancelled_caught
        assert handovers.taken == 1
        with anyio.fail_after(TIMEOUT):
            await sender.send(last := BusDataMessage(source="t"))
            await far.wait_for_count(3)
    # Its statement was on the server when it was cancelled: the writer collected the
    # answer, and the message is stored, once and in order, as the log says it may be (or,
    # when the answer came before the cancellation reached the sender, says it was).
    assert far.messages == [first, cancelled, last]
    assert (
        "cancelled while its message was being stored: it may have been stored" in caplog.text
        or "was cancelled after its message was stored" in caplog.text
    )


@pytest.mark.parametrize("durability", ["stored", "queued"])
async def test_a_bus_stopped_right_after_a_hand_over_stops_at_once(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch, durability: Any
) -> None:
    handovers = HandOvers(monkeypatch)
    channel = unique_channel()
    far = RecordingSubscriber("far")
    sent: list[BusMessage] = []
    async with PostgresBus(postgres_dsn, channel=channel, name="receiver") as receiver:
        await receiver.subscribe(far)
        opened = Opened(monkeypatch)  # the sender's connections, from here on
        sender = PostgresBus(postgres_dsn, channel=channel, name="sender", durability=durability)
        stopped_at: list[float] = []

        def stop() -> None:
            stopped_at.append(anyio.current_time())
            scope.cancel()

        with anyio.fail_after(TIMEOUT), anyio.CancelScope() as scope:
            async with sender:
                await sender.send(first := BusDataMessage(source="t"))
                await sender.flush()
                # Stopped before the writer can collect the answer (as a rule: an answer
                # already read when the writer runs is taken without a scheduling point).
                handovers.then = stop
                await sender.send(handed := BusDataMessage(source="t"))
                sent.append(handed)  # queued: it returned once queued
                await anyio.sleep_forever()
        assert scope.cancelled_caught
        assert anyio.current_time() - stopped_at[0] < 3  # no statement's timeout waited out
        assert handovers.taken == 1
        assert len(opened.connections) == 2  # write (it listens), read: all closed on the way out
        assert all(conn._conn.closed for conn in opened.connections)
        stats = sender.transport_statistics()
        if durability == "queued":
            # What was queued is stored on the way out: the writer collected the answer.
            assert sent == [handed]
            assert (stats.published, stats.publish_failures) == (2, 0)
            with anyio.fail_after(TIMEOUT):
                await far.wait_for_count(2)
            assert far.messages == [first, handed]
        else:
            # The sender was cancelled with it (and the log says it may be stored); its
            # answer was dropped with the connection: whether it was stored is the server's.
            assert sent == []
            assert stats.published in (1, 2)  # 2: its answer was in before the stop
            with anyio.fail_after(TIMEOUT):
                await far.wait_for_count(stats.published)
            await receiver.wait_idle()
            assert far.messages[:1] == [first]
            assert far.messages[1:] in ([], [handed])


async def test_a_hand_over_to_a_lost_connection_is_stored_through_a_new_one(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    handovers = HandOvers(monkeypatch)
    async with sending(postgres_dsn) as (receiver, sender, far):
        with anyio.fail_after(TIMEOUT):
            await sender.send(first := BusDataMessage(source="t"))
            await terminate(postgres_dsn, "anybus-write-sender/%")
            # Sent on the lost connection (libpq writes to the socket, or already knows):
            # the answer is an error, and the writer stores it again on a new connection.
            await sender.send(second := BusDataMessage(source="t"))
            await sender.send(third := BusDataMessage(source="t"))
            await far.wait_for_count(3)
            await receiver.wait_idle()
        stats = sender.transport_statistics()
    assert far.messages == [first, second, third]  # once each, in order
    assert (stats.published, stats.publish_failures) == (3, 0)
    assert handovers.taken >= 1


async def test_a_started_statement_holds_the_connection_until_collected(
    postgres_dsn: str,
) -> None:
    conn = await PgConnection.open(
        postgres_dsn, application_name="anybus-test", connect_timeout=10, statement_timeout=10
    )
    try:
        query = "SELECT %s::integer + 1"
        assert not conn.start(query, [1])  # not prepared on this connection yet
        with anyio.fail_after(TIMEOUT):
            assert await conn.fetch(query, [1]) == [(2,)]
        assert conn.start(query, [2])
        assert not conn.start(query, [3])  # one statement at a time
        order: list[str] = []

        async def fetch_next() -> None:
            order.append(f"fetched {await conn.fetch(query, [4])}")

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(fetch_next)
                await anyio.wait_all_tasks_blocked()
                assert order == []  # it waits for the started statement's turn to end
                order.append(f"collected {await conn.collect()}")
        assert order == ["collected [(3,)]", "fetched [(5,)]"]
        with pytest.raises(RuntimeError, match="without a statement"):
            await conn.collect()
        assert conn.start(query, [9])
    finally:
        with anyio.fail_after(TIMEOUT):
            await conn.close()  # started, never collected: dropped, and closed at once
    assert conn.broken


async def test_a_cancelled_collect_waits_for_its_statement_then_frees_the_connection(
    postgres_dsn: str,
) -> None:
    conn = await PgConnection.open(
        postgres_dsn, application_name="anybus-test", connect_timeout=10, statement_timeout=10
    )
    try:
        query = "SELECT pg_sleep(%s::float8), 1"
        with anyio.fail_after(TIMEOUT):
            await conn.fetch(query, [0.0])  # prepared for a float (an int is another type)
            assert conn.start(query, [0.2])
            scope = anyio.CancelScope()

            async def collect() -> None:
                with scope:
                    await conn.collect()

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(collect)
                await anyio.wait_all_tasks_blocked()  # waiting for the server's answer
                scope.cancel()
            assert scope.cancelled_caught
            assert not conn.broken  # it waited for the statement (within the grace)
            assert await conn.fetch("SELECT %s::integer", [7]) == [(7,)]
    finally:
        await conn.close()


async def test_a_refusal_is_said_at_start_but_a_reconnecting_bus_keeps_trying(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Refused for good is said at once only when a bus starts; a running bus reconnecting
    # (patient) keeps trying, for a refusal may end: a role renamed back, a password
    # rotated, CONNECT granted again.
    opened = Opened(monkeypatch)
    role = f"nosuchrole_{secrets.token_hex(4)}"
    conns = Connections(dsn_as(role), owner="t", connect_timeout=10, statement_timeout=10)
    with anyio.fail_after(TIMEOUT):
        with pytest.raises(TransportError, match=f'refused the connection: role "{role}"'):
            await conns.open("write", patient=False)
        assert opened.failed == 1  # at once, not retried for connect_timeout
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(partial(conns.open, "write", patient=True))
            await opened.refused.wait()  # refused twice more, and still trying
            task_group.cancel_scope.cancel()
    await conns.close()
